"""The CLI as a client of Sluice's own HTTP API (`sluice schemas`).

Most commands work on PostgreSQL or Kafka directly; the ones that speak HTTP go through
this module, so they see what any client sees: the key's tenant and scopes, the API's
rules and its error messages. Where to send requests, and with which key:

* the URL: `--url`, else `SLUICE_API_URL`, else the API of the running `sluice dev` of
  this folder (its `dev.json`), else `http://127.0.0.1:SLUICE_HTTP_PORT`;
* the key: `--key`, else `SLUICE_API_KEY` (never printed).

Every failure is a `ClientFailure`: one line on stderr, exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlencode

import click

from runtime.settings import Settings, load_settings
from sluice.devstate import environ_with_dev_stack, find_dev_stack
from sluice.listing import printable
from sluice.unreachable import hide_password

F = TypeVar("F", bound=Callable[..., Any])

TIMEOUT_SECONDS = 30.0
FAILURE_EXIT = 2
"""The exit status of a request that failed (1 is left to a command's own "no", such as
`sluice schemas check` finding a schema incompatible)."""


class ClientFailure(click.ClickException):
    """A request that failed: the API's own message, or why it could not be sent."""

    exit_code = FAILURE_EXIT

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The registry's `error_code` (or the HTTP status) when the API answered."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"sluice: {printable(self.message)}", err=True)


def api_options(command: F) -> F:
    """`--url` and `--key` on a command that calls the API."""
    command = click.option(
        "--key", "api_key", default=None, metavar="KEY",
        help="API key (default: SLUICE_API_KEY).",
    )(command)  # fmt: skip
    return click.option(
        "--url", "api_url", default=None, metavar="URL",
        help="The API's base URL (default: SLUICE_API_URL, else the running `sluice dev`).",
    )(command)  # fmt: skip


def _default_url(settings: Settings) -> str:
    if settings.api_url.strip():
        return settings.api_url.strip()
    stack = find_dev_stack(settings.state_dir)
    return stack.api if stack is not None else f"http://127.0.0.1:{settings.http_port}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class ApiClient:
    """Requests to one API with one key; JSON in, JSON out."""

    def __init__(self, url: str, key: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self._key = key
        self._timeout = timeout

    @classmethod
    def from_options(cls, api_url: str | None, api_key: str | None) -> ApiClient:
        """The client the options, the environment or a running dev stack point at."""
        settings = load_settings(environ_with_dev_stack())
        url = api_url or _default_url(settings)
        key = api_key or settings.api_key
        if not key.strip():
            raise ClientFailure("no API key: set SLUICE_API_KEY or pass --key")
        if not url.startswith(("http://", "https://")):
            raise ClientFailure(f"SLUICE_API_URL={hide_password(url)}: not an http(s) URL")
        return cls(url, key.strip())

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Answer:
        """Send one request; a 2xx answer's JSON, else `ClientFailure` with its message."""
        target = self.url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as resp:
                return Answer(resp.status, _json(resp.read()))
        except urllib.error.HTTPError as err:
            raise _refusal(err.code, err.read()) from err
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientFailure(
                f"cannot reach the API at SLUICE_API_URL={hide_password(self.url)}: "
                f"{getattr(reason, 'strerror', None) or reason}"
            ) from exc


def segment(value: str) -> str:
    """`value` as one path segment (a subject may hold any printable character)."""
    return quote(value, safe="")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise ClientFailure(f"the API answered something that is not JSON: {raw[:80]!r}") from exc


def _refusal(status: int, raw: bytes) -> ClientFailure:
    """An error answer as one line: its message and code, in whichever shape it came (the
    registry's `{"error_code", "message"}`, the native `{"error": {"code", "message"}}`)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        message, code = body.get("message"), body.get("error_code")
        nested = body.get("error")
        if message is None and isinstance(nested, dict):
            message, code = nested.get("message"), nested.get("code")
        if isinstance(message, str):
            shown = code if code is not None else status
            return ClientFailure(f"{message} ({shown})", code if isinstance(code, int) else status)
    text = raw.decode("utf-8", "replace").strip().splitlines()
    return ClientFailure(f"HTTP {status}" + (f": {text[0][:200]}" if text else ""), status)

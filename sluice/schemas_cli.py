"""`sluice schemas`: the Schema Registry (`/schema-registry`) from a terminal.

A client of the HTTP registry (`sluice.api_client`: `--url`/`SLUICE_API_URL`,
`--key`/`SLUICE_API_KEY`), so it sees exactly what the key's tenant sees: its own subjects,
data contracts included (`native.<type>`, `baselime.<dataset>`, `dakkio.<dataSourceId>`,
`dynatrace.<type>`), and Sluice's read-only ones. The rules (compatibility, which subjects
take which schemas) are the registry's; a refusal prints the registry's message.

Exit status: 0 done; 1 `check` found the schema incompatible; 2 the registry refused the
request or could not be reached.
"""

from __future__ import annotations

import json
from typing import Any

import click

from sluice.api_client import ApiClient, ClientFailure, api_options, segment
from sluice.listing import Column, emit, json_option, printable

REGISTRY = "/schema-registry"
SCHEMA_TYPES = ("JSON", "AVRO")

_type_option = click.option(
    "--type", "schema_type", type=click.Choice(SCHEMA_TYPES, case_sensitive=False), default=None,
    help="The schema's type (default: AVRO for a .avsc file, else JSON).",
)  # fmt: skip
_file_argument = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)


def _client(api_url: str | None, api_key: str | None) -> ApiClient:
    return ApiClient.from_options(api_url, api_key)


def _version_segment(raw: str) -> str:
    """A `--version` value: a positive number or `latest` (the registry checks the range)."""
    if raw.lower() == "latest":
        return "latest"
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise click.BadParameter(
            "a version is a positive number or 'latest'", param_hint="--version"
        )
    return str(int(raw))


def schema_body(file: str, schema_type: str | None) -> dict[str, Any]:
    """The registry's `{"schema", "schemaType"}` body for the schema in `file` ('-': stdin)."""
    with click.open_file(file, "r", encoding="utf-8") as handle:
        text = handle.read()
    if not text.strip():
        raise click.BadParameter(f"{file} is empty", param_hint="FILE")
    kind = (schema_type or ("AVRO" if file.endswith(".avsc") else "JSON")).upper()
    return {"schema": text, "schemaType": kind}


@click.group()
def schemas() -> None:
    """Register, list, show, check and delete schemas in the Schema Registry.

    Talks to the API (SLUICE_API_URL or --url; a running `sluice dev` by default) with an
    API key (SLUICE_API_KEY or --key): reads need schemas:read, changes schemas:write."""


@schemas.command("register")
@click.argument("subject")
@_file_argument
@_type_option
@api_options
@json_option
def register(
    subject: str, file: str, schema_type: str | None, api_url: str | None, api_key: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Register the schema in FILE under SUBJECT; print its id and version.

    The same schema again answers its existing version; an incompatible one is refused
    with every reason."""
    body = schema_body(file, schema_type)
    done = (
        _client(api_url, api_key)
        .call("POST", f"{REGISTRY}/subjects/{segment(subject)}/versions", body)
        .body
    )
    if as_json:
        emit([{"subject": subject, **done}], (), as_json=True)
        return
    heals = ""
    if done.get("would_heal") is not None:
        heals = f"; heals {done['would_heal']} pending dead letters (sluice replay heal)"
    elif done.get("would_heal_job"):
        heals = f"; dead letters it heals: counted by job {done['would_heal_job']}"
    click.echo(f"{printable(subject)}: version {done['version']}, schema id {done['id']}{heals}")


LIST_COLUMNS = (
    Column("subject", "subject"),
    Column("version", "version"),
    Column("id", "id"),
    Column("type", "schemaType"),
)


@schemas.command("list")
@click.option("--prefix", default="", help="Only subjects that start with this.")
@click.option("--deleted", is_flag=True, help="Also soft-deleted subjects and versions.")
@api_options
@json_option
def list_(prefix: str, deleted: bool, api_url: str | None, api_key: str | None,
          as_json: bool) -> None:  # fmt: skip
    """List the subjects the key sees, each with its latest version, id and type."""
    client = _client(api_url, api_key)
    flags = {"deleted": "true"} if deleted else {}
    query = {**flags, **({"subjectPrefix": prefix} if prefix else {})}
    names = client.call("GET", f"{REGISTRY}/subjects", query=query).body
    rows = [_latest(client, name, flags) for name in sorted(names)]
    emit(rows, LIST_COLUMNS, as_json=as_json)


def _latest(client: ApiClient, subject: str, flags: dict[str, str]) -> dict[str, Any]:
    found = client.call(
        "GET", f"{REGISTRY}/subjects/{segment(subject)}/versions/latest", query=flags
    ).body
    return {"subject": subject, "version": found["version"], "id": found["id"],
            "schemaType": found.get("schemaType", "AVRO")}  # fmt: skip


@schemas.command("show")
@click.argument("subject")
@click.option("--version", "version", default="latest", show_default=True,
              help="A version number, or latest.")  # fmt: skip
@api_options
@json_option
def show(subject: str, version: str, api_url: str | None, api_key: str | None,
         as_json: bool) -> None:  # fmt: skip
    """Show one version of SUBJECT: its number, id, type and the schema itself."""
    path = f"{REGISTRY}/subjects/{segment(subject)}/versions/{_version_segment(version)}"
    found = _client(api_url, api_key).call("GET", path).body
    found.setdefault("schemaType", "AVRO")
    if as_json:
        emit([found], (), as_json=True)
        return
    for label, key in (("subject", "subject"), ("version", "version"), ("id", "id"),
                       ("type", "schemaType")):  # fmt: skip
        click.echo(f"{label:<8} {printable(str(found[key]))}")
    click.echo(_pretty(found["schema"]))


def _pretty(text: str) -> str:
    """The schema indented for reading (as stored when it is not JSON)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@schemas.command("check")
@click.argument("subject")
@_file_argument
@_type_option
@api_options
@json_option
def check(
    subject: str, file: str, schema_type: str | None, api_url: str | None, api_key: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Test whether the schema in FILE could be registered under SUBJECT now (against its
    latest version, or every version in a _TRANSITIVE mode). Prints `compatible`, or every
    reason it is not and exits 1."""
    body = schema_body(file, schema_type)
    path = f"{REGISTRY}/compatibility/subjects/{segment(subject)}/versions/latest"
    found = _client(api_url, api_key).call("POST", path, body, {"verbose": "true"}).body
    reasons = [str(r) for r in found.get("messages") or []]
    if as_json:
        emit([{"subject": subject, "is_compatible": found["is_compatible"],
               "messages": reasons}], (), as_json=True)  # fmt: skip
    elif found["is_compatible"]:
        click.echo("compatible")
    else:
        click.echo(f"incompatible with {printable(subject)}:")
        for reason in reasons:
            click.echo(f"  {printable(reason)}")
    if not found["is_compatible"]:
        click.get_current_context().exit(1)


@schemas.command("delete")
@click.argument("subject")
@click.option("--version", "version", default=None, help="Only this version (or latest).")
@click.option("--permanent", is_flag=True,
              help="Remove for good (soft-deleting first what is still live).")  # fmt: skip
@api_options
def delete(subject: str, version: str | None, permanent: bool, api_url: str | None,
           api_key: str | None) -> None:  # fmt: skip
    """Delete SUBJECT, or one version of it: soft (its ids still resolve, a schema can be
    registered again) unless --permanent."""
    client = _client(api_url, api_key)
    path = f"{REGISTRY}/subjects/{segment(subject)}"
    if version is not None:
        path += f"/versions/{_version_segment(version)}"
    if permanent:
        _soft_delete_if_live(client, path, version)
    done = client.call("DELETE", path, query={"permanent": "true"} if permanent else None).body
    numbers = ", ".join(str(n) for n in (done if isinstance(done, list) else [done]))
    how = "permanently deleted" if permanent else "deleted"
    click.echo(f"{how} {printable(subject)} version(s) {numbers}")


_ALREADY_SOFT_DELETED = (40404, 40402)
"""A subject soft-deleted before (40404), or a version that is not live (40402): a
permanent delete then goes on and lets the registry say whether anything is there."""


def _soft_delete_if_live(client: ApiClient, path: str, version: str | None) -> None:
    if version == "latest":
        raise click.BadParameter(
            "name the version to delete permanently (latest is the newest live one)",
            param_hint="--version",
        )
    try:
        client.call("DELETE", path)
    except ClientFailure as exc:
        if exc.code not in _ALREADY_SOFT_DELETED:
            raise

"""API keys never reach a log line, whoever wrote it.

Sluice's own code never logs a key, but aiohttp's parser quotes the offending header line
when it refuses one (a trailing DEL, NUL, vertical tab or bare CR, or a line over 8,190
bytes) and logs it at ERROR, key included. A filter on every root handler rewrites each
record before it is formatted: anything shaped like a key (`ingest.keys`: eight prefix
characters, a dot, a base64url payload) keeps its prefix, which is safe to show and names
the key, and loses its payload. Truncated payloads (a long line cut short by aiohttp) are
redacted too, from 8 characters on.
"""

from __future__ import annotations

import logging
import re

_KEY = re.compile(r"(?<![A-Za-z0-9_.-])([a-z0-9]{8})\.[A-Za-z0-9_-]{8,}={0,2}")
REDACTED = "[redacted]"


def redact_keys(text: str) -> str:
    """`text` with every key-shaped token's payload replaced by `[redacted]`."""
    return _KEY.sub(rf"\1.{REDACTED}", text)


class KeyRedactingFilter(logging.Filter):
    """Rewrites a record's message, traceback and stack with `redact_keys`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_keys(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_keys(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_keys(record.stack_info)
        return True


def install_key_redaction() -> None:
    """Put one `KeyRedactingFilter` on every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, KeyRedactingFilter) for f in handler.filters):
            handler.addFilter(KeyRedactingFilter())

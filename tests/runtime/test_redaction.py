"""Key-shaped tokens never survive a log record (runtime/redaction.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from ingest.keys import generate_key
from runtime.redaction import KeyRedactingFilter, install_key_redaction, redact_keys


def test_a_key_keeps_its_prefix_and_loses_its_payload() -> None:
    key = generate_key()
    text = redact_keys(f"b'X-API-Key: {key.secret}\\x7f' and Bearer {key.secret}")
    assert key.secret.split(".")[1] not in text
    assert text.count(f"{key.prefix}.[redacted]") == 2


def test_a_payload_cut_short_by_a_long_line_is_redacted_too() -> None:
    key = generate_key()
    cut = key.secret[: len(key.prefix) + 1 + 12]
    assert redact_keys(f"reading: b'{cut}...'") == f"reading: b'{key.prefix}.[redacted]...'"


def test_ordinary_text_is_untouched() -> None:
    text = "POST /v1/events HTTP/1.1 202; host sluice.internal; id ev-1.2; 2024-01-01T00:00:00Z"
    assert redact_keys(text) == text


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    install_key_redaction()
    install_key_redaction()  # idempotent
    assert sum(isinstance(f, KeyRedactingFilter) for f in handler.filters) == 1
    yield stream
    root.removeHandler(handler)


def test_every_part_of_a_record_is_redacted_on_the_root_handlers(captured: io.StringIO) -> None:
    key = generate_key()
    log = logging.getLogger("aiohttp.server")
    log.error("header line %r", f"X-API-Key: {key.secret}\x00")
    try:
        raise ValueError(f"Invalid header value char: b'Authorization: Bearer {key.secret}\\x7f'")
    except ValueError:
        log.exception("Error handling request from %s", "127.0.0.1")
    out = captured.getvalue()
    assert "header line" in out and "Invalid header value char" in out
    assert key.secret.split(".")[1] not in out
    assert out.count(f"{key.prefix}.[redacted]") == 2

"""The CLI's listings: a header, aligned columns, `--json` lines, human times, escaped text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from sluice.cli import main
from sluice.listing import Column, emit, json_option, printable

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
COLUMNS = (Column("prefix", "prefix"), Column("created", "created_at", time=True),
           Column("label", "label"))  # fmt: skip


def _listing(rows: list[dict[str, Any]], *args: str) -> str:
    @click.command()
    @json_option
    def show(as_json: bool) -> None:
        emit(rows, COLUMNS, as_json=as_json, now=NOW)

    result = CliRunner().invoke(show, list(args))
    assert result.exit_code == 0, result.output
    return result.output


ROWS = [
    {"prefix": "sk_a", "created_at": NOW - timedelta(minutes=3), "label": "ci"},
    {"prefix": "sk_longer_prefix", "created_at": NOW - timedelta(days=2), "label": "the laptop"},
]


def test_a_listing_has_a_header_and_aligned_columns() -> None:
    output = _listing(ROWS)
    assert all(line == line.rstrip() for line in output.splitlines())
    header, *lines = output.splitlines()
    assert header.split() == ["PREFIX", "CREATED", "LABEL"]
    assert len(lines) == 2
    for name, values in (("CREATED", ["2026-12-03T11:57:00", "2026-12-01T12:00:00"]),
                         ("LABEL", ["ci", "the laptop"])):  # fmt: skip
        column = header.index(name)
        assert [line.index(value) for line, value in zip(lines, values, strict=True)] == [
            column,
            column,
        ]


def test_times_are_iso_beside_how_long_ago() -> None:
    _header, first, second = _listing(ROWS).splitlines()
    assert "2026-12-03T11:57:00+00:00 (3 minutes ago)" in first
    assert "2026-12-01T12:00:00+00:00 (2 days ago)" in second


def test_json_is_one_object_per_line_with_every_field() -> None:
    lines = _listing(ROWS, "--json").splitlines()
    assert [json.loads(line) for line in lines] == [
        {**row, "created_at": row["created_at"].isoformat()} for row in ROWS
    ]


def test_control_characters_in_a_label_cannot_forge_lines_or_colours() -> None:
    evil = "ok\nsk_fake  2026-01-01  forged\x1b[31m red\u202e"
    output = _listing([{**ROWS[0], "label": evil}])
    assert len(output.splitlines()) == 2  # the header and the one row
    assert "\x1b" not in output and "\u202e" not in output
    assert "ok\\nsk_fake  2026-01-01  forged\\x1b[31m red\\u202e" in output
    assert json.loads(_listing([{**ROWS[0], "label": evil}], "--json"))["label"] == evil


def test_printable_text_is_left_alone() -> None:
    assert printable("café ok [bold] ü") == "café ok [bold] ü"
    assert printable("tab\there") == "tab\\there"


def test_breaker_status_is_a_table_of_tripped_keys(tmp_path: Path) -> None:
    state = {"pid": 4242, "at": (datetime.now(UTC) - timedelta(seconds=185)).timestamp(),
             "open": {"t.ingest.raw/3 acme/native": {"reason": "invalid_ratio",
                                                    "seconds_open": 12, "held": 7}}}  # fmt: skip
    (tmp_path / "breaker-w1.json").write_text(json.dumps(state))
    env = {"SLUICE_STATE_DIR": str(tmp_path)}
    shown = CliRunner().invoke(main, ["worker", "breaker", "status"], env=env)
    assert shown.exit_code == 0, shown.output
    header, row = shown.output.splitlines()
    assert header.split()[:4] == ["WORKER", "PID", "REPORTED", "KEY"]
    assert row.index("t.ingest.raw/3 acme/native") == header.index("KEY")
    assert "(3 minutes ago)" in row
    lines = CliRunner().invoke(main, ["worker", "breaker", "status", "--json"], env=env).output
    (only,) = [json.loads(line) for line in lines.splitlines()]
    assert (only["key"], only["held"], only["passed"]) == ("t.ingest.raw/3 acme/native", 7, 0)

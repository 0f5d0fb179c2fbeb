"""How the CLI prints a listing: a header and aligned columns for people, `--json` for scripts.

Every `sluice … list` (and the history commands) builds plain rows (mappings) and hands
them to `emit`. For a person: a table drawn by rich (no borders, a header row, columns
aligned), times shown as ISO 8601 beside how long ago ("3 minutes ago"), and every text
cell with its control and other non-printable characters escaped (`\\x1b`, `\\u202e`), so a
key label or an event id cannot forge lines or colours in a terminal. For a script
(`--json`): one JSON object per row and line, the values as they are (times in ISO 8601).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import humanize
from rich.console import Console
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

WIDE = 100_000
"""Width given to rich when stdout is not a terminal: rows are never wrapped or cut."""


@dataclass(frozen=True)
class Column:
    """One column: its header, the row key it shows, and whether it holds a time."""

    header: str
    key: str
    time: bool = False


def json_option(command: F) -> F:
    """The `--json` flag: one JSON object per line instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="One JSON object per line, for scripts."
    )(command)


def printable(text: str) -> str:
    """`text` with each non-printable character (controls, bidi overrides, line breaks)
    written as its Python escape, so it shows as what it is and does nothing."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def ago(moment: datetime, now: datetime | None = None) -> str:
    """How long before `now` `moment` was, in words ("3 minutes ago", "in 2 hours")."""
    return humanize.naturaltime(moment, when=now or datetime.now(UTC))


def cell(value: Any, *, time: bool = False, now: datetime | None = None) -> str:
    """What a table shows for `value`."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        stamp = value.isoformat(timespec="seconds")
        return f"{stamp} ({ago(value, now)})" if time else stamp
    if isinstance(value, list | tuple | set | frozenset):
        return printable(",".join(str(v) for v in value))
    return printable(str(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value) if not isinstance(value, int | float | str | bool | list | dict) else value


def emit(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    as_json: bool,
    now: datetime | None = None,
) -> None:
    """Print `rows`: as JSON lines (every key of each row), or as a table of `columns`."""
    out = click.get_text_stream("stdout")
    if as_json:
        for row in rows:
            out.write(json.dumps(dict(row), default=_jsonable, ensure_ascii=False) + "\n")
        out.flush()
        return
    moment = now or datetime.now(UTC)
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.header.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(cell(row.get(c.key), time=c.time, now=moment)) for c in columns))
    terminal = out.isatty()
    console = Console(width=None if terminal else WIDE, highlight=False, soft_wrap=False,
                      force_terminal=None if terminal else False)  # fmt: skip
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        out.write(line.rstrip() + "\n")
    out.flush()

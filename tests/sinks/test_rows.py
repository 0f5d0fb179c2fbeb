from __future__ import annotations

from sinks.rows import TombstoneRow, newest_wins


def test_newest_wins_keeps_the_highest_version_per_identity() -> None:
    rows = [
        TombstoneRow("t", "native", "a", 5),
        TombstoneRow("t", "native", "a", 9),
        TombstoneRow("t", "native", "a", 7),
        TombstoneRow("u", "native", "a", 1),
    ]
    kept = {(r.tenant, r.event_id): r.version for r in newest_wins(rows)}
    assert kept == {("t", "a"): 9, ("u", "a"): 1}

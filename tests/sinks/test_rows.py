from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


@given(st.lists(st.tuples(st.sampled_from("tu"), st.sampled_from("abc"), st.integers(0, 9))))
def test_newest_wins_is_the_highest_version_of_each_identity_with_or_without_repeats(
    drawn: list[tuple[str, str, int]],
) -> None:
    rows = [TombstoneRow(t, "native", event_id, version) for t, event_id, version in drawn]
    highest: dict[tuple[str, str, str], int] = {}
    for r in rows:
        highest[r.identity] = max(highest.get(r.identity, r.version), r.version)
    kept = newest_wins(rows)
    assert {r.identity: r.version for r in kept} == highest
    assert len(kept) == len(highest)

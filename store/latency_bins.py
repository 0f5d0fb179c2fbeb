"""The bins of the acceptance → queryable histogram the sink records (`sink_latency`).

A latency in milliseconds falls in bin `floor(8 · log2(ms))` + 1 (bin 0 below 1 ms), so
each bin is 2^(1/8) ≈ 9 % wider than the one before: a percentile read back from the
bins is within ~5 % of the true value, from 1 ms to hours, with at most ~200 bins. Bins
add: the histogram of many sinks, or of a whole window, is the sum of their bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

BINS_PER_DOUBLING = 8
MAX_BIN = 200
"""About 2^25 ms (9 hours); anything slower is counted here."""


def bin_of(milliseconds: float) -> int:
    """The bin a latency falls in."""
    if milliseconds < 1.0:
        return 0
    return min(MAX_BIN, int(BINS_PER_DOUBLING * math.log2(milliseconds)) + 1)


def bin_value(index: int) -> float:
    """What a bin stands for: the geometric middle of its range, in milliseconds."""
    if index <= 0:
        return 0.5
    return float(2 ** ((index - 0.5) / BINS_PER_DOUBLING))


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The latency below which `fraction` of the counted events fall; None when empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = fraction * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(bin_value(index), 1)
    return round(bin_value(max(histogram)), 1)


def merged(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of `histograms`, bin by bin."""
    total: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            total[index] = total.get(index, 0) + count
    return total

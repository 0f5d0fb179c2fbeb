"""The latency histogram's bins: a percentile read back is close to the true one."""

from __future__ import annotations

import random

from store.latency_bins import MAX_BIN, bin_of, bin_value, merged, percentile


def test_every_latency_is_within_its_bin_and_the_bins_are_narrow() -> None:
    for ms in (1.0, 1.5, 7.0, 41.0, 180.0, 999.0, 61_000.0):
        value = bin_value(bin_of(ms))
        assert abs(value - ms) / ms < 0.05, (ms, value)
    assert bin_of(0.2) == 0 and bin_of(10.0**12) == MAX_BIN
    assert [bin_of(ms) for ms in (1, 2, 4, 8)] == [1, 9, 17, 25]


def test_percentiles_of_the_bins_match_the_samples() -> None:
    rng = random.Random(7)
    samples = sorted(rng.lognormvariate(4.0, 1.0) for _ in range(20_000))
    histogram: dict[int, int] = {}
    for ms in samples:
        histogram[bin_of(ms)] = histogram.get(bin_of(ms), 0) + 1
    for fraction in (0.5, 0.9, 0.99):
        true = samples[int(fraction * len(samples)) - 1]
        found = percentile(histogram, fraction)
        assert found is not None and abs(found - true) / true < 0.06, (fraction, true, found)


def test_histograms_add_bin_by_bin() -> None:
    one, two = {10: 3, 20: 1}, {20: 4, 30: 2}
    assert merged([one, two]) == {10: 3, 20: 5, 30: 2}
    assert percentile({}, 0.5) is None
    assert percentile(merged([one, two]), 0.0) == round(bin_value(10), 1)
    assert percentile(merged([one, two]), 1.0) == round(bin_value(30), 1)

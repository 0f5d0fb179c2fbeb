"""The fast paths taken for performance compute exactly what the reference code computes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.identity import murmur2, murmur2_python, partition_for

JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_pure_python_murmur2_matches_the_java_client() -> None:
    for data, expected in JAVA_VECTORS.items():
        assert murmur2_python(data) == expected


@given(st.binary(max_size=700))
def test_murmur2_in_use_equals_the_pure_python_reference(data: bytes) -> None:
    assert murmur2(data) == murmur2_python(data)
    assert partition_for(data, 12) == (murmur2_python(data) & 0x7FFFFFFF) % 12

"""The bomb corpus against the upload reader: each is refused within a memory and work bound.

Bounds asserted: Python's peak allocation (tracemalloc, which also sees zlib's buffers)
stays under `MEMORY_BOUND` while the reader works, whatever the archive would inflate
to, and the work done before a refusal is bounded by what was decompressed (never more
than the decompressed limit), not by a wall clock, so a loaded machine cannot fail these
tests; a reader that never stopped would hang into pytest's own timeout.
The real defaults apply (128 MiB of CSV after decompression, one member, 64 KiB rows).
"""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator

import pytest

from producer_api.uploads import MAX_CSV_BYTES, UploadRejected, UploadTooLarge, csv_bytes
from producer_api.uploads import csv_records as records

MEMORY_BOUND = 16 * 1024 * 1024
BOMB_BYTES = MAX_CSV_BYTES + 4 * 1024 * 1024
ROW = b"0," * 500 + b"0\n"
"""Rows of 1 KB: the row-count bound (1M rows) does not stop a bomb before its size does."""


def zeros(total: int, piece: bytes = ROW) -> Iterator[bytes]:
    block = piece * (1024 * 1024 // len(piece))
    for _ in range(total // len(block) + 1):
        yield block


def zip_of(members: dict[str, Iterator[bytes] | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in [content] if isinstance(content, bytes) else content:
                    member.write(chunk)
    return out.getvalue()


def gzip_of(chunks: Iterator[bytes]) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(squeeze.compress(c) for c in chunks) + squeeze.flush()


def read_whole(data: bytes) -> None:
    """What the DataHub upload route does with an upload: every record of its CSV."""
    for _record in records(csv_bytes(data)):
        pass


def refused_within_bounds(data: bytes, read: Callable[[bytes], None] = read_whole) -> Exception:
    tracemalloc.start()
    try:
        with pytest.raises(UploadRejected) as refused:
            read(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"
    return refused.value


def drain(data: bytes) -> None:
    """Only decompression, so the size bound itself (not the row bounds) is what stops it:
    the CSV handed out before the refusal never passes the decompressed limit."""
    handed_out = 0
    try:
        for chunk in csv_bytes(data):
            handed_out += len(chunk)
    finally:
        assert handed_out <= MAX_CSV_BYTES, f"{handed_out} bytes handed out before the refusal"


def test_zip_of_zeros_stops_at_the_decompressed_limit() -> None:
    bomb = zip_of({"usage.csv": zeros(BOMB_BYTES)})
    assert len(bomb) < BOMB_BYTES // 100
    assert isinstance(refused_within_bounds(bomb, drain), UploadTooLarge)
    refused_within_bounds(bomb)


def test_zip_of_nul_bytes_is_refused() -> None:
    refused_within_bounds(zip_of({"usage.csv": zeros(BOMB_BYTES, b"\0" * 64)}))


def test_gzip_of_zeros_stops_at_the_decompressed_limit() -> None:
    bomb = gzip_of(zeros(BOMB_BYTES))
    assert len(bomb) < BOMB_BYTES // 100
    assert isinstance(refused_within_bounds(bomb, drain), UploadTooLarge)
    refused_within_bounds(bomb)


def test_concatenated_gzip_members_count_together() -> None:
    member = gzip.compress(b"".join(zeros(8 * 1024 * 1024)), compresslevel=9)
    bomb = member * (BOMB_BYTES // (8 * 1024 * 1024) + 1)
    assert isinstance(refused_within_bounds(bomb, drain), UploadTooLarge)


def test_many_tiny_gzip_members_are_read_in_one_pass() -> None:
    """200 000 one-row members (4.4 MB, well under the upload limit): a CPU bomb. Each member
    is read once, in one pass: the chunks handed out add up to exactly the members' content,
    and the reader never holds more than a few chunks (a member-by-member re-read of the
    rest, quadratic, would both allocate and hang into pytest's timeout)."""
    tiny = gzip.compress(b"a\n")
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in csv_bytes(tiny * 200_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 2 * 200_000
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"


def test_many_entries_are_refused() -> None:
    many = zip_of({f"part-{i}.csv": b"a,b\n1,2\n" for i in range(5_000)})
    assert "exactly one" in str(refused_within_bounds(many))


def test_nested_archives_are_refused() -> None:
    inner_zip = zip_of({"usage.csv": zeros(16 * 1024 * 1024)})
    inner_gzip = gzip_of(zeros(16 * 1024 * 1024))
    for bomb in (
        zip_of({"usage.csv": inner_zip}),
        zip_of({"usage.csv": inner_gzip}),
        gzip_of(iter([inner_zip])),
        gzip_of(iter([inner_gzip])),
    ):
        assert "inside archives" in str(refused_within_bounds(bomb))


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd.csv", "/etc/usage.csv", "C:\\usage.csv", "a/../../b.csv",
     "..\\..\\usage.csv"],
)  # fmt: skip
def test_path_traversal_names_are_refused(name: str) -> None:
    refused_within_bounds(zip_of({name: b"a,b\n1,2\n"}))

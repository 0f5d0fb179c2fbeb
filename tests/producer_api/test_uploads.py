"""CSV uploads: archives read within limits whatever their headers say, rows kept byte-exact."""

from __future__ import annotations

import csv
import gzip
import io
import time
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_api import uploads
from producer_api.uploads import (
    MAX_CSV_BYTES,
    MAX_LINES,
    MAX_RATIO,
    MAX_ZIP_ENTRIES,
    RATIO_FREE_BYTES,
    UploadRejected,
    UploadTooLarge,
    UploadTooSlow,
    csv_bytes,
    csv_records,
)
from schemas.families.datahub_csv import parse_record

CSV = b"usage_date,fixed.region,metric.cost\r\n2024-03-10T00:00:00Z,eu,1\r\n"


def _zip(*members: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def _read(data: bytes, limit: int = 1 << 20) -> bytes:
    return b"".join(csv_bytes(data, limit))


@pytest.mark.parametrize(
    "upload",
    [CSV, gzip.compress(CSV), _zip(("usage.csv", CSV)), _zip(("dir/", b""), ("dir/a.csv", CSV))],
)
def test_plain_gzip_and_zip_give_the_same_csv(upload: bytes) -> None:
    assert _read(upload) == CSV


def test_concatenated_gzip_members_are_one_file() -> None:
    assert _read(gzip.compress(CSV[:20]) + gzip.compress(CSV[20:])) == CSV


def test_a_zip_bomb_stops_at_the_limit() -> None:
    bomb = _zip(("bomb.csv", b"0" * 5_000_000))
    assert len(bomb) < 10_000
    with pytest.raises(UploadTooLarge):
        _read(bomb, limit=1_000_000)


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    with pytest.raises(UploadTooLarge):
        _read(gzip.compress(b"0" * 5_000_000), limit=1_000_000)


def test_a_zip_whose_header_understates_the_size_is_refused() -> None:
    data = bytearray(_zip(("a.csv", CSV * 100)))
    size = (len(CSV) * 100).to_bytes(4, "little")
    # Rewrite the uncompressed size in the local header and the central directory.
    for at in [i for i in range(len(data) - 4) if data[i : i + 4] == size]:
        data[at : at + 4] = (10).to_bytes(4, "little")
    with pytest.raises(UploadRejected):
        _read(bytes(data))


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (_zip(("a.csv", CSV), ("b.csv", CSV)), "exactly one"),
        (_zip(), "exactly one"),
        (_zip(("inner.zip", _zip(("a.csv", CSV)))), "must be a .csv"),
        (_zip(("sneaky.csv", gzip.compress(CSV))), "inside archives"),
        (gzip.compress(_zip(("a.csv", CSV))), "inside archives"),
        (_zip(("../../etc/a.csv", CSV)), "unsafe"),
        (_zip(("/abs/a.csv", CSV)), "unsafe"),
        (_zip(("C:/a.csv", CSV)), "unsafe"),
        (gzip.compress(CSV)[:-12], "truncated"),
        (b"PK\x03\x04garbage", "zip"),
        (b"BZh91AY&SY", "bzip2"),
    ],
)
def test_unusable_uploads(upload: bytes, message: str) -> None:
    with pytest.raises(UploadRejected, match=message):
        _read(upload)


def _records(text: bytes) -> list[tuple[int, bytes]]:
    return [(r.line, r.raw) for r in csv_records([text[i : i + 7] for i in range(0, len(text), 7)])]


def test_records_keep_their_bytes_and_first_line() -> None:
    text = b'\xef\xbb\xbfh1,h2\r\n\r\na,"multi\r\nline, ""quoted"""\r\nb,2\nc,3'
    assert _records(text) == [
        (1, b"h1,h2"),
        (3, b'a,"multi\r\nline, ""quoted"""'),
        (5, b"b,2"),
        (6, b"c,3"),
    ]


def test_rows_are_bounded() -> None:
    with pytest.raises(UploadTooLarge):
        list(csv_records([b"h\n" + b"1\n" * 11], max_rows=10))
    with pytest.raises(UploadRejected, match="longer than"):
        list(csv_records([b"h\n" + b"x" * 70_000 + b"\n"]))
    with pytest.raises(UploadRejected, match="longer than"):
        list(csv_records([b'h\n"' + b"x\n" * 40_000]))


@given(
    st.lists(
        st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=8),
                 min_size=1, max_size=4),
        min_size=1, max_size=20,
    ),
    st.sampled_from(["\n", "\r\n"]),
    st.integers(1, 50),
)  # fmt: skip
def test_records_read_like_the_csv_module(
    rows: list[list[str]], terminator: str, chunk: int
) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    text = out.getvalue().encode()
    expected = [r for r in csv.reader(io.StringIO(out.getvalue(), newline="")) if r]
    got = [parse_record(r.raw.decode()) for r in csv_records(
        [text[i : i + chunk] for i in range(0, len(text), chunk)])]  # fmt: skip
    # A line of blanks alone is skipped like an empty line (a quoted empty cell is not).
    assert got == [r for r in expected if not (len(r) == 1 and _blank_unquoted(r[0]))]


def _blank_unquoted(cell: str) -> bool:
    return bool(cell) and not cell.encode().strip() and "\n" not in cell


def test_a_zip_listing_too_many_entries_is_refused_from_its_end_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = _zip(*[(f"empty-{n}/", b"") for n in range(MAX_ZIP_ENTRIES)], ("a.csv", CSV))
    opened: list[object] = []
    monkeypatch.setattr(uploads.zipfile, "ZipFile", lambda *a: opened.append(a))
    with pytest.raises(UploadRejected, match=f"lists {MAX_ZIP_ENTRIES + 1}"):
        _read(many)
    assert not opened  # refused before the directory was read


def test_a_zip_with_folders_and_one_csv_is_read() -> None:
    assert _read(_zip(("folder/", b""), ("folder/a.csv", CSV))) == CSV


def test_blank_lines_count_as_lines() -> None:
    blank = gzip.compress(CSV + b"\n" * (MAX_LINES + 10))
    assert len(blank) < 20_000
    with pytest.raises(UploadTooLarge, match=f"more than {MAX_LINES} lines"):
        list(csv_records(csv_bytes(blank)))


def test_an_archive_may_not_expand_past_the_ratio() -> None:
    row = b"2024-03-10T00:00:00Z,eu,1\n"
    squeezed = gzip.compress(CSV + row * ((RATIO_FREE_BYTES // len(row)) * 3))
    assert len(squeezed) * MAX_RATIO < 3 * RATIO_FREE_BYTES
    with pytest.raises(UploadTooLarge, match=f"more than {MAX_RATIO}:1"):
        _read(squeezed, limit=MAX_CSV_BYTES)
    rows = (b"2024-03-10T00:00:00Z,r%d,%d\n" % (n, n * 7919) for n in range(400_000))
    varied = CSV + b"".join(rows)
    assert _read(gzip.compress(varied), limit=MAX_CSV_BYTES) == varied  # 12 MB, ordinary ratio


def test_reading_stops_at_the_deadline() -> None:
    with pytest.raises(UploadTooSlow):
        _read_until(gzip.compress(CSV), deadline=time.monotonic() - 1)
    assert _read_until(gzip.compress(CSV), deadline=time.monotonic() + 60) == CSV


def _read_until(data: bytes, deadline: float) -> bytes:
    return b"".join(csv_bytes(data, deadline=deadline))

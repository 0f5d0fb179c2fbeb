"""DoiT DataHub's front door end to end on real Kafka and PostgreSQL: the seed's requests
(trailing commas and all), newest wins, deletes, CSV uploads with per-row dead letters."""

from __future__ import annotations

import gzip
import io
import json
import socket
import time
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from producer_api.uploads import MAX_PARTS
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

SEED_ID = "12345678-1234-1234-1234-123412341234"
SEED_BODY = b"""{
    "events": [
      {
        "provider": "Datadog",
        "id": "12345678-1234-1234-1234-123412341234",
        "dimensions": [
          {
            "key": "service_description",
            "value": "Devices",
            "type": "fixed"
          },
          {
            "key": "region",
            "value": "us-east-1b",
            "type": "fixed"
          },
          {
            "key": "zone",
            "value": "us-east-1b",
            "type": "fixed",
          },
          {
            "key": "env",
            "value": "prod",
            "type": "label",
          },
          {
            "key": "team",
            "value": "alpha",
            "type": "label",
          },
          {
            "key": "department",
            "value": "rnd",
            "type": "project_label",
          }
        ],
        "time": "2024-02-23T12:00:00.00Z",
        "metrics": [
          {
            "value": 352,
            "type": "cost",
          },
          {
            "value": 36,
            "type": "usage",
          }
        ]
      }
    ]
  }
"""
"""The seed's curl `--data`, verbatim: its trailing commas are not valid JSON."""


def _call(stack: ProcessStack, key: str | None, method: str, path: str, body: bytes | None,
          content_type: str = "application/json") -> Answer:  # fmt: skip
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return call(method, f"{stack.base_url}/datahub{path}", body=body, headers=headers)


def _event(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any] | None:
    answer = call("GET", f"{stack.base_url}/v1/events/{event_id}?family=datahub",
                  headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    return answer.json() if answer.status == 200 else None


def _dead_letters(database_url: str, tenant: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT dead_letter_id::text, raw, reasons, route FROM dead_letters"
            " WHERE tenant = %s AND family = 'datahub'",
            (tenant,),
        ).fetchall()
    return [{"id": r[0], "raw": bytes(r[1]), "reasons": r[2], "route": r[3]} for r in rows]


def _events(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _simple(event_id: str, cost: float, provider: str = "Snowflake") -> dict[str, Any]:
    return {"provider": provider, "id": event_id, "time": "2024-03-01T00:00:00Z",
            "metrics": [{"type": "cost", "value": cost}]}  # fmt: skip


def _multipart(provider: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    disposition = f"--{boundary}\r\nContent-Disposition: form-data"
    head = (
        f'{disposition}; name="provider"\r\n\r\n{provider}\r\n'
        f'{disposition}; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def test_the_seed_request_is_ingested_and_queryable(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dh-seed")
    answer = _call(stack, key, "POST", "/v1/events", SEED_BODY)
    assert (answer.status, answer.json()) == (201, {"message": "Ingestion success"})
    event = eventually(lambda: _event(stack, key, SEED_ID))
    assert event["source"] == "Datadog" and event["type"] == "datahub.event"
    assert event["time"] == "2024-02-23T12:00:00+00:00"
    assert event["data"]["metrics"] == [{"type": "cost", "value": 352},
                                        {"type": "usage", "value": 36}]  # fmt: skip
    assert {d["key"] for d in event["data"]["dimensions"]} == {
        "service_description", "region", "zone", "env", "team", "department"}  # fmt: skip


def test_the_newest_event_with_an_id_wins(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("dh-newest")
    event_id = str(uuid.uuid4())
    first = _call(stack, key, "POST", "/v1/events", _events(_simple(event_id, 1)))
    second = _call(stack, key, "POST", "/v1/events", _events(_simple(event_id, 2)))
    assert first.status == second.status == 201

    def cost() -> float | None:
        event = _event(stack, key, event_id)
        value = event["data"]["metrics"][0]["value"] if event else None
        return value if value == 2 else None

    assert eventually(cost) == 2


def test_an_invalid_event_rejects_the_request_and_is_recorded_raw(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dh-invalid")
    good = json.dumps(_simple(str(uuid.uuid4()), 1)).encode()
    bad = b'{"provider": "Data/dog",   "time": "Feb 23",\n "metrics": [{"type": "cost"}]}'
    answer = _call(stack, key, "POST", "/v1/events", b'{"events": [' + good + b", " + bad + b"]}")
    assert answer.status == 400
    error = answer.json()["error"]
    for field in ("events[1].provider", "events[1].time", "events[1].metrics[0].value"):
        assert field in error
    assert "events[0]" not in error
    stored = eventually(lambda: (d := _dead_letters(database_url, "dh-invalid")) and
                        len(d) == 2 and d)  # fmt: skip
    assert sorted(d["raw"] for d in stored) == sorted([good, bad])


def test_request_errors(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dh-errors")
    too_many = _events(*[_simple(str(i), 1) for i in range(256)])
    answer = _call(stack, key, "POST", "/v1/events", too_many)
    assert answer.status == 400 and "1 to 255" in answer.json()["error"]
    malformed = _call(stack, key, "POST", "/v1/events", b'{"events": [{"provider": ')
    assert malformed.status == 400 and "not valid JSON" in malformed.json()["error"]
    stored = eventually(lambda: _dead_letters(database_url, "dh-errors"))
    assert stored[0]["raw"] == b'{"events": [{"provider": '
    missing = _call(stack, None, "POST", "/v1/events", _events(_simple("x", 1)))
    assert missing.status == 401 and list(missing.json()) == ["error"]
    reader = new_key("dh-errors", ["events:read"])
    forbidden = _call(stack, reader, "POST", "/v1/events", _events(_simple("x", 1)))
    assert forbidden.status == 403 and list(forbidden.json()) == ["error"]
    both = _call(stack, key, "DELETE", "/v1/events/delete",
                 json.dumps({"eventIds": ["a"], "providers": ["b"]}).encode())  # fmt: skip
    assert both.status == 400 and "exactly one" in both.json()["error"]
    no_delete = _call(stack, reader, "DELETE", "/v1/events", None)
    assert no_delete.status == 403


def test_deletes_by_id_by_provider_and_all(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dh-deletes")
    ids = [str(uuid.uuid4()) for _ in range(4)]
    events = [_simple(ids[0], 1), _simple(ids[1], 1), _simple(ids[2], 1, "Databricks"),
              _simple(ids[3], 1, "Other")]  # fmt: skip
    assert _call(stack, key, "POST", "/v1/events", _events(*events)).status == 201
    assert all(eventually(lambda i=i: _event(stack, key, i)) for i in ids)

    def gone(event_id: str) -> bool:
        return _event(stack, key, event_id) is None

    by_id = _call(stack, key, "DELETE", "/v1/events/delete",
                  json.dumps({"eventIds": [ids[0]]}).encode())  # fmt: skip
    assert (by_id.status, by_id.json()) == (200, {"message": "Delete success"})
    assert eventually(lambda: gone(ids[0]))
    assert _event(stack, key, ids[1]) is not None
    providers = json.dumps({"providers": ["Snowflake", "Databricks"]}).encode()
    by_provider = _call(stack, key, "DELETE", "/v1/events/delete", providers)
    assert (by_provider.status, by_provider.json()) == (200, {"message": "Delete success"})
    assert eventually(lambda: gone(ids[1]) and gone(ids[2]))
    assert _event(stack, key, ids[3]) is not None
    everything = _call(stack, key, "DELETE", "/v1/events", None)
    assert (everything.status, everything.json()) == (200, {"message": "Delete success"})
    assert eventually(lambda: gone(ids[3]))


CSV = (
    b"usage_date,id,fixed.region,label.team,metric.cost,metric.usage\r\n"
    b"2024-03-10T00:00:00Z,row-1,us-east1,alpha,1.5,10\r\n"
    b'2024-03-10T01:00:00Z,row-2,"us,east",beta,2,\r\n'
)


def test_the_seed_zip_upload(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("dh-csv")
    body, content_type = _multipart("mysuperdataset", "test_csv.zip", _zip("test_csv.csv", CSV))
    answer = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert answer.status == 201, answer.body
    result = answer.json()
    assert set(result) == {"batch", "ingestedRows"} and result["ingestedRows"] == 2
    name, _, millis = result["batch"].rpartition("_")
    assert name == "test_csv.zip" and millis.isdigit()
    row = eventually(lambda: _event(stack, key, "row-2"))
    assert row["source"] == "mysuperdataset"
    assert row["data"]["dimensions"][0] == {"type": "fixed", "key": "region", "value": "us,east"}
    assert row["data"]["metrics"] == [{"type": "cost", "value": 2}]


def test_a_bad_row_is_dead_lettered_alone_with_its_line(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dh-csv-bad")
    bad_line = b"2024-03-11,row-4,eu,gamma,cheap,1"
    csv = CSV + b"\r\n" + bad_line + b"\r\n2024-03-12T00:00:00Z,row-5,eu,delta,3,4\r\n"
    body, content_type = _multipart("mysuperdataset", "usage.csv", csv)
    answer = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert answer.status == 201, answer.body
    result = answer.json()
    assert result["ingestedRows"] == 3 and result["rejectedRowCount"] == 1
    rejected = result["rejectedRows"]
    assert {(r["line"], r["column"]) for r in rejected} == {(5, "usage_date"), (5, "metric.cost")}
    assert "not a number" in next(r["reason"] for r in rejected if r["column"] == "metric.cost")
    (stored,) = eventually(lambda: _dead_letters(database_url, "dh-csv-bad"))
    assert stored["raw"] == bad_line and stored["id"] == rejected[0]["deadLetterId"]
    assert stored["route"]["header"] == CSV.split(b"\r\n")[0].decode()
    assert eventually(lambda: _event(stack, key, "row-5"))


def test_an_upload_of_bad_rows_answers_and_dead_letters_bounded_lists(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """Issue 15: every reason of every bad row was kept (1,395 MiB for a 25 KB gzip)."""
    key = new_key("dh-csv-many-bad")
    header = "usage_date,fixed.region," + ",".join(f"metric.m{i}" for i in range(30))
    row = "x,r," + ",".join(["x"] * 30)
    csv = (header + "\n" + (row + "\n") * 1500).encode()
    body, content_type = _multipart("p", "bad.csv.gz", gzip.compress(csv))
    answer = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert answer.status == 400, answer.body
    result = answer.json()
    assert (result["rejectedRowCount"], result["rejectedEntryCount"]) == (1500, 1500 * 21)
    listed = result["rejectedRows"]
    assert len(listed) == 1000 and {r["line"] for r in listed} == set(range(2, 2 + 48))
    assert listed[20]["column"] == "row" and "11 more violations" in listed[20]["reason"]
    stored = eventually(lambda: _dead_letters(database_url, "dh-csv-many-bad"))
    assert len(stored[0]["reasons"]) == 21


def test_upload_errors(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("dh-csv-errors")
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", CSV)
        archive.writestr("b.csv", CSV)
    body, content_type = _multipart("p", "two.zip", two.getvalue())
    several = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert several.status == 400 and "exactly one" in several.json()["error"]
    body, content_type = _multipart("p", "bad.csv", b"when,metric.cost\r\nx,1\r\n")
    header = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert header.status == 400 and "usage_date" in header.json()["error"]
    line = b"2024-01-01T00:00:00Z,z," + b"0" * 1000 + b"\n"
    bomb = _zip("bomb.csv", b"usage_date,fixed.zone,metric.cost\n" + line * (129 << 10))
    body, content_type = _multipart("p", "bomb.zip", bomb)
    too_large = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
    assert too_large.status == 413 and "expands more than 100:1" in too_large.json()["error"]
    big = _multipart("p", "big.csv", b"usage_date,fixed.zone,metric.cost\n" + b"0" * (31 << 20))
    too_big = _call(stack, key, "POST", "/v1/csv/upload", *big)
    assert too_big.status == 413 and "larger than 31457280 bytes" in too_big.json()["error"]
    all_bad = _multipart("p", "x.csv", b"usage_date,fixed.zone,metric.cost\nnope,z,1\n")
    nothing = _call(stack, key, "POST", "/v1/csv/upload", *all_bad)
    assert nothing.status == 400 and nothing.json()["ingestedRows"] == 0


def _extra_fields(body: bytes, content_type: str, fields: int, size: int) -> bytes:
    """`body` with `fields` text parts of `size` bytes each before its own parts."""
    boundary = content_type.rpartition("boundary=")[2]
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n'.encode()
    return (part + b"v" * size + b"\r\n") * fields + body


def test_a_form_holds_only_its_known_parts_and_a_bounded_count(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dh-csv-form")
    body, content_type = _multipart("p", "ok.csv", CSV.replace(b"row-", b"form-row-"))
    few = _call(stack, key, "POST", "/v1/csv/upload",
                _extra_fields(body, content_type, 3, 100), content_type)  # fmt: skip
    assert few.status == 201, few.body  # unknown fields are read past, not kept
    many = _call(stack, key, "POST", "/v1/csv/upload",
                 _extra_fields(body, content_type, MAX_PARTS, 10), content_type)  # fmt: skip
    assert many.status == 400 and f"more than {MAX_PARTS} parts" in many.json()["error"]
    boundary = content_type.rpartition("boundary=")[2]
    second = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.csv"'
    twice = body.replace(f"--{boundary}--".encode(), f"{second}\r\n\r\n{CSV.decode()}\r\n"
                         f"--{boundary}--".encode())  # fmt: skip
    double = _call(stack, key, "POST", "/v1/csv/upload", twice, content_type)
    assert double.status == 400 and "more than one `file`" in double.json()["error"]
    garbled = f'--{boundary}\r\nContent-Disposition: form-data; name="\x00\x02"\r\n\r\nv\r\n'
    broken = _call(stack, key, "POST", "/v1/csv/upload", garbled.encode() + body, content_type)
    assert broken.status == 400 and "does not parse" in broken.json()["error"]  # was a 500


def test_a_key_has_at_most_two_uploads_in_progress(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key, other = new_key("dh-csv-slots"), new_key("dh-csv-slots")
    body, content_type = _multipart("p", "slow.csv", CSV.replace(b"row-", b"slot-row-"))
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    head = (f"POST /datahub/v1/csv/upload HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    slow = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
    try:
        for conn in slow:  # each holds its slot while its body has not all arrived
            conn.sendall(head + body[:40])
        time.sleep(0.5)
        third = _call(stack, key, "POST", "/v1/csv/upload", body, content_type)
        assert third.status == 429 and third.headers["Retry-After"], third.body
        assert "2 uploads in progress" in third.json()["error"]
        assert _call(stack, other, "POST", "/v1/csv/upload", body, content_type).status == 201
        for conn in slow:
            conn.sendall(body[40:])
            assert conn.recv(64).startswith(b"HTTP/1.1 201")
    finally:
        for conn in slow:
            conn.close()
    assert _call(stack, key, "POST", "/v1/csv/upload", body, content_type).status == 201

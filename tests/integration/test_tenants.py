"""Invariant 5, tenants are sealed: tenant B's key against tenant A's ids, filters and jobs.

The routes come from the app's own router (sub-apps included). Every registered route
pattern must be in `CHECKS` (tenant-scoped: B's key is tried against A's things, and
the answer must be as if they did not exist), in `INGEST_ONLY` (writes that land in the
caller's tenant, whatever the body says), or in `NOT_TENANT_SCOPED`; a new route in
none of them fails `test_every_route_is_classified`. Below the HTTP matrix, the
database's own wall: row-level security on every table with a `tenant` column.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import psycopg
import pytest
from aiohttp import web

from producer_api.app import create_app
from runtime.settings import Settings
from sluice.catalog_cli import create_bucket, create_data_source, create_dataset
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

BUCKET, SOURCE = "5f0c0ffee0ddba11deadbeef", "5f0c0ffee0ddba11deadbee0"
A_SCHEMA = {"type": "record", "name": "ASecret", "fields": [{"name": "a", "type": "string"}]}


@dataclass
class World:
    """Tenant A's things, and keys of both tenants."""

    stack: ProcessStack
    tenant_a: str
    a_key: str
    a_admin: str
    b_key: str
    b_admin: str
    event_id: str
    event_type: str
    dead_letter_id: str
    job_id: str
    deletion_id: str
    datahub_id: str
    dataset: str
    a_schemas: str
    b_schemas: str
    subject: str
    schema_id: int
    request_id: str = ""

    def b(self, method: str, path: str, body: Any = None, key: str | None = None) -> Answer:
        return send(self.stack, key or self.b_key, method, path, body)

    def a(self, method: str, path: str, body: Any = None) -> Answer:
        return send(self.stack, self.a_key, method, path, body)

    def a_still_has_everything(self) -> None:
        assert self.a("GET", f"/v1/events/{self.event_id}").status == 200
        assert self.a("GET", f"/v1/events/{self.datahub_id}?family=datahub").status == 200
        dead = self.a("GET", f"/v1/dead-letters/{self.dead_letter_id}")
        assert dead.status == 200 and dead.json()["status"] == "pending", dead.body


def send(stack: ProcessStack, key: str, method: str, path: str, body: Any = None) -> Answer:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    return call(method, f"{stack.base_url}{path}", body=raw, headers=headers)


@pytest.fixture(scope="module")
def world(stack: ProcessStack, new_key: Callable[..., str]) -> World:
    suffix = uuid.uuid4().hex[:8]
    tenant_a, tenant_b = f"seal-a-{suffix}", f"seal-b-{suffix}"
    a_key = new_key(tenant_a)
    settings = Settings(database_url=stack.settings.database_url)
    dataset = f"ds-{suffix}"
    create_dataset(settings, tenant_a, dataset)
    create_bucket(settings, tenant_a, "a's bucket", BUCKET)
    create_data_source(settings, tenant_a, BUCKET, "a's source", SOURCE)

    event_id, event_type = f"a-evt-{suffix}", f"a-type-{suffix}"
    event = {"id": event_id, "type": event_type, "source": "a-src",
             "time": "2024-01-01T00:00:00Z", "data": {"secret": "a"}}  # fmt: skip
    sent = send(stack, a_key, "POST", "/v1/events", event)
    assert sent.status == 202
    bad = send(stack, a_key, "POST", "/v1/events", {"id": f"a-bad-{suffix}", "data": {}})
    assert bad.status == 400, bad.body
    dead_letter_id = bad.json()["rejected"][0]["dead_letter_id"]
    datahub_id = str(uuid.uuid4())
    hub = {"events": [{"provider": "Snowflake", "id": datahub_id, "time": "2024-03-01T00:00:00Z",
                       "metrics": [{"type": "cost", "value": 1}]}]}  # fmt: skip
    assert send(stack, a_key, "POST", "/datahub/v1/events", hub).status in (200, 201, 202)
    deletion = send(stack, a_key, "DELETE", f"/v1/events/a-gone-{suffix}")
    job = send(stack, a_key, "POST", "/v1/dead-letters/replay", {"dry_run": True})
    assert job.status == 202, job.body
    a_schemas = new_key(tenant_a, ["schemas:read", "schemas:write"])
    subject = f"a-subject-{suffix}"
    registered = send(stack, a_schemas, "POST", f"/schema-registry/subjects/{subject}/versions",
                      {"schema": json.dumps(A_SCHEMA)})  # fmt: skip
    assert registered.status == 200, registered.body
    for path, mode in ((f"/config/{subject}", "NONE"), ("/config", "FULL")):
        put = send(stack, a_schemas, "PUT", f"/schema-registry{path}", {"compatibility": mode})
        assert put.status == 200, put.body

    found = World(
        stack=stack, tenant_a=tenant_a, a_key=a_key, a_admin=new_key(tenant_a, ["admin"]),
        b_key=new_key(tenant_b), b_admin=new_key(tenant_b, ["admin"]),
        event_id=event_id, event_type=event_type, dead_letter_id=dead_letter_id,
        job_id=job.json()["job_id"], deletion_id=deletion.json()["deletion_id"],
        datahub_id=datahub_id, dataset=dataset, a_schemas=a_schemas,
        b_schemas=new_key(tenant_b, ["schemas:read", "schemas:write"]), subject=subject,
        schema_id=registered.json()["id"], request_id=sent.json()["request_id"],
    )  # fmt: skip
    eventually(lambda: found.a("GET", f"/v1/events/{event_id}").status == 200)
    eventually(lambda: found.a("GET", f"/v1/events/{datahub_id}?family=datahub").status == 200)
    eventually(lambda: found.a("GET", f"/v1/dead-letters/{dead_letter_id}").status == 200)
    return found


# --- what B's key sees of A's things, per route --------------------------------------


def list_events(w: World) -> None:
    for query in (f"type={w.event_type}", "source=a-src", f"tenant={w.tenant_a}",
                  "family=native", "family=datahub"):  # fmt: skip
        answer = w.b("GET", f"/v1/events?{query}")
        assert answer.status == 200 and answer.json()["events"] == [], (query, answer.body)


def show_event(w: World) -> None:
    assert w.b("GET", f"/v1/events/{w.event_id}").status == 404
    assert w.b("GET", f"/v1/events/{w.datahub_id}?family=datahub").status == 404


def delete_event(w: World) -> None:
    """B deletes A's id; B's own copy of that id goes, A's stays."""
    twin = {"id": w.event_id, "type": "b", "source": "b", "time": "2024-01-01T00:00:00Z",
            "data": {}}  # fmt: skip
    assert w.b("POST", "/v1/events", twin).status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{w.event_id}").status == 200)
    assert w.b("DELETE", f"/v1/events/{w.event_id}").status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{w.event_id}").status == 404)
    w.a_still_has_everything()
    a_dead_letter_survives_bs_delete_of_its_id(w)


def a_dead_letter_survives_bs_delete_of_its_id(w: World) -> None:
    """The sink's dead-letter delete by id keeps to B's tenant: B deleting an id that A has
    a dead letter of, once B's receipt is finished, leaves A's dead letter pending."""
    doomed = w.event_id.replace("a-evt-", "a-doomed-")
    bad = w.a("POST", "/v1/events", {"id": doomed, "data": {}})
    assert bad.status == 400, bad.body
    letter = f"/v1/dead-letters/{bad.json()['rejected'][0]['dead_letter_id']}"
    eventually(lambda: w.a("GET", letter).status == 200)
    deletion = w.b("DELETE", f"/v1/events/{doomed}")
    assert deletion.status == 202, deletion.body
    receipt = f"/v1/deletions/{deletion.json()['deletion_id']}"
    eventually(lambda: w.b("GET", receipt).json()["status"] == "finished")
    kept = w.a("GET", letter)
    assert kept.status == 200 and kept.json()["status"] == "pending", kept.body


def delete_by_filter(w: World) -> None:
    """B's deletes by A's event type, and of everything, remove B's events only."""
    twin = {"id": f"b-{w.event_id}", "type": w.event_type, "source": "a-src",
            "time": "2024-01-01T00:00:00Z", "data": {}}  # fmt: skip
    assert w.b("POST", "/v1/events", twin).status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{twin['id']}").status == 200)
    assert w.b("DELETE", f"/v1/events?type={w.event_type}&source=a-src").status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{twin['id']}").status == 404)
    assert w.b("DELETE", "/v1/events?all=true").status == 202
    assert w.b("DELETE", "/v1/events?all=true&family=datahub").status == 202
    marker = {**twin, "id": f"b-marker-{w.event_id}"}
    assert w.b("POST", "/v1/events", marker).status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{marker['id']}").status == 200)
    assert w.b("DELETE", "/v1/events?all=true").status == 202
    eventually(lambda: w.b("GET", f"/v1/events/{marker['id']}").status == 404)
    w.a_still_has_everything()


def datahub_deletes(w: World) -> None:
    """B's DataHub deletes (by id, by provider, everything) never reach A's events."""
    assert w.b("DELETE", "/datahub/v1/events/delete", {"eventIds": [w.datahub_id]}).status == 200
    assert w.b("DELETE", "/datahub/v1/events/delete", {"providers": ["Snowflake"]}).status == 200
    marker = str(uuid.uuid4())
    hub = {"events": [{"provider": "Snowflake", "id": marker, "time": "2024-03-01T00:00:00Z",
                       "metrics": [{"type": "cost", "value": 1}]}]}  # fmt: skip
    assert w.b("POST", "/datahub/v1/events", hub).status in (200, 201, 202)
    eventually(lambda: w.b("GET", f"/v1/events/{marker}?family=datahub").status == 200)
    assert w.b("DELETE", "/datahub/v1/events").status == 200
    eventually(lambda: w.b("GET", f"/v1/events/{marker}?family=datahub").status == 404)
    w.a_still_has_everything()


def list_dead_letters(w: World) -> None:
    for query in ("", f"?tenant={w.tenant_a}", "?status=pending", "?family=native"):
        answer = w.b("GET", f"/v1/dead-letters{query}")
        assert answer.status == 200, answer.body
        assert w.dead_letter_id not in answer.body.decode()


def overview(w: World) -> None:
    """B's figures are B's: never A's tenant, and B's pending dead letters only."""
    mine = w.a("GET", "/v1/overview").json()
    assert mine["tenant"] == w.tenant_a and mine["totals"]["dead_letters_pending"] >= 1
    for query in ("", f"?tenant={w.tenant_a}"):
        theirs = w.b("GET", f"/v1/overview{query}").json()
        assert theirs["tenant"] != w.tenant_a
        pending = w.b("GET", "/v1/dead-letters?status=pending").json()["dead_letters"]
        assert theirs["totals"]["dead_letters_pending"] == len(pending)


def dead_letter_summary(w: World) -> None:
    """B's summary counts B's dead letters only, whatever the filter."""
    assert w.a("GET", "/v1/dead-letters/summary").json()["total"] >= 1
    for query in ("", f"?tenant={w.tenant_a}", "?status=pending", "?family=native"):
        summary = w.b("GET", f"/v1/dead-letters/summary{query}").json()
        listed = w.b("GET", f"/v1/dead-letters{query}").json()["dead_letters"]
        assert summary["total"] == len(listed), (query, summary)


def show_dead_letter(w: World) -> None:
    assert w.b("GET", f"/v1/dead-letters/{w.dead_letter_id}").status == 404


def replay_dead_letter(w: World) -> None:
    assert w.b("POST", f"/v1/dead-letters/{w.dead_letter_id}/replay").status == 404
    w.a_still_has_everything()


def discard_dead_letter(w: World) -> None:
    assert w.b("POST", f"/v1/dead-letters/{w.dead_letter_id}/discard").status == 404
    w.a_still_has_everything()


def replay_by_filter(w: World) -> None:
    """A `tenant` in the filter is refused or ignored: B's jobs count B's letters only."""

    def own() -> int:
        listed = w.b("GET", "/v1/dead-letters?status=pending&limit=1000").json()
        return len(listed["dead_letters"])

    def smuggle() -> tuple[int, Answer] | None:
        """A job asked with A's tenant, between two counts of B's letters; None while B's
        own letters (from the checks before this one) are still landing."""
        before = own()
        answer = w.b("POST", "/v1/dead-letters/replay", {"tenant": w.tenant_a, "dry_run": True})
        return (before, answer) if own() == before else None

    count, smuggled = eventually(smuggle)
    assert smuggled.status == 400 or smuggled.json()["total"] == count, (count, smuggled.body)
    answer = w.b("POST", "/v1/dead-letters/replay", {"family": "native", "dry_run": True})
    assert answer.status == 202, answer.body
    job = answer.json()["job_id"]
    eventually(lambda: w.b("GET", f"/v1/replay-jobs/{job}").json()["state"] in ("done", "failed"))
    w.a_still_has_everything()


def heal_subject(w: World) -> None:
    """A's data contract is as absent for B's heal as one never registered."""
    subject = f"native.{w.event_type}-contract"
    body = {"schemaType": "JSON", "schema": json.dumps({"type": "object"})}
    made = send(w.stack, w.a_schemas, "POST", f"/schema-registry/subjects/{subject}/versions",
                body)  # fmt: skip
    assert made.status == 200, made.body
    assert w.a("POST", "/v1/dead-letters/heal", {"subject": subject, "dry_run": True}).status == 202
    refused = w.b("POST", "/v1/dead-letters/heal", {"subject": subject})
    assert (refused.status, refused.json()["error"]["code"]) == (404, "no_such_subject")
    w.a_still_has_everything()


def retention_sealed(w: World) -> None:
    """A's policies and runs are unseen and untouchable by B's admin key; B's own changes
    and runs touch nothing of A's."""
    policy = {"kind": "events", "family": "native", "keep_days": 36500}
    assert send(w.stack, w.a_admin, "PUT", "/v1/admin/retention", policy).status == 200
    a_run = send(w.stack, w.a_admin, "POST", "/v1/admin/retention/run").json()["run_id"]
    assert w.b("GET", "/v1/admin/retention", key=w.b_admin).json()["policies"] == []
    cleared = w.b("DELETE", "/v1/admin/retention?kind=events&family=native", key=w.b_admin)
    assert cleared.status == 404
    assert w.b("GET", f"/v1/admin/retention/runs/{a_run}", key=w.b_admin).status == 404
    short = {"kind": "events", "family": "native", "keep_days": 0.001, "tenant": w.tenant_a}
    assert w.b("PUT", "/v1/admin/retention", short, key=w.b_admin).status == 400
    b_run = w.b("POST", "/v1/admin/retention/run", key=w.b_admin).json()["status_url"]
    eventually(lambda: w.b("GET", b_run, key=w.b_admin).json()["state"] == "done")
    mine = send(w.stack, w.a_admin, "GET", "/v1/admin/retention").json()["policies"]
    assert [p["keep_days"] for p in mine] == [36500]
    w.a_still_has_everything()


def show_job(w: World) -> None:
    assert w.b("GET", f"/v1/replay-jobs/{w.job_id}").status == 404


def show_history(w: World) -> None:
    """A's rejected id, which B never used, is unknown to B. A's other ids, which B sent or
    deleted in its own tenant (`delete_event`, `datahub_deletes`), show B only its own steps."""
    rejected = w.event_id.replace("a-evt-", "a-bad-")
    path = f"/v1/events/{rejected}/history"
    eventually(lambda: w.a("GET", path).status == 200)
    a_sent = w.a("GET", f"/v1/events/{w.event_id}/history").json()["steps"][0]["request_id"]
    for key in (w.b_key, w.b_admin):
        assert w.b("GET", path, key=key).status == 404
        for shared in (f"/v1/events/{w.event_id}/history",
                       f"/v1/events/{w.datahub_id}/history?family=datahub"):  # fmt: skip
            answer = w.b("GET", shared, key=key)
            assert answer.status in (200, 404)
            assert (
                a_sent not in answer.body.decode() and w.dead_letter_id not in answer.body.decode()
            )


def show_request(w: World) -> None:
    path = f"/v1/requests/{w.request_id}"
    eventually(lambda: w.a("GET", path).status == 200)
    assert w.b("GET", path).status == 404
    assert w.b("GET", path, key=w.b_admin).status == 404


def show_deletion(w: World) -> None:
    assert w.a("GET", f"/v1/deletions/{w.deletion_id}").status == 200
    assert w.b("GET", f"/v1/deletions/{w.deletion_id}").status == 404


def admin_list(w: World) -> None:
    answer = w.b("GET", "/v1/admin/keys", key=w.b_admin)
    assert answer.status == 200
    assert w.a_key.split(".")[0] not in answer.body.decode()


def admin_create(w: World) -> None:
    answer = w.b("POST", "/v1/admin/keys", {"tenant": w.tenant_a}, key=w.b_admin)
    assert answer.status == 400, answer.body
    made = w.b("POST", "/v1/admin/keys", {"scopes": ["events:read"]}, key=w.b_admin)
    assert made.status == 201 and made.json()["tenant"] != w.tenant_a


def admin_revoke(w: World) -> None:
    prefix = w.a_key.split(".")[0]
    assert w.b("DELETE", f"/v1/admin/keys/{prefix}", key=w.b_admin).status == 404
    assert w.a("GET", f"/v1/events/{w.event_id}").status == 200


def admin_rotate(w: World) -> None:
    prefix = w.a_key.split(".")[0]
    answer = w.b("POST", f"/v1/admin/keys/{prefix}/rotate", {}, key=w.b_admin)
    assert answer.status == 404 and "key" not in answer.json()


def same_as_nowhere(w: World, method: str, path: str, body: Callable[[str], Any]) -> Answer:
    """B's answer for A's bucket, asserted equal to its answer for a bucket nobody has."""
    answer = w.b(method, path.format(bucket=BUCKET), body(BUCKET))
    other = "0" * 23 + "1"
    nowhere = w.b(method, path.format(bucket=other), body(other))
    assert answer.status == nowhere.status >= 400, (answer.body, nowhere.body)
    assert answer.body == nowhere.body.replace(other.encode(), BUCKET.encode())
    return answer


def dakkio_query(w: World) -> None:
    query = f"/dakkio/api/data?bucketId={{bucket}}&dataSourceId={SOURCE}"
    assert same_as_nowhere(w, "GET", query, lambda _b: None).status == 404


def dakkio_write(w: World) -> None:
    def point(bucket: str) -> dict[str, Any]:
        return {"bucketId": bucket, "dataSourceId": SOURCE, "values": {"t": 1.0}}

    def batch(bucket: str) -> dict[str, Any]:
        points = [{"dataSourceId": SOURCE, "values": {"t": 1.0}}]
        return {"bucketId": bucket, "dataPoints": points}

    assert same_as_nowhere(w, "POST", "/dakkio/api/data", point).status == 404
    assert same_as_nowhere(w, "POST", "/dakkio/api/data/batch", batch).status == 404
    answer = w.a("GET", f"/dakkio/api/data?bucketId={BUCKET}")
    assert answer.status == 200 and answer.json()["data"] == [], answer.body


def dakkio_sources(w: World) -> None:
    """B's schema key on A's bucket and data source answers as if neither existed."""
    other = "0" * 23 + "1"
    body = {"name": "b's", "schema": {"t": {"type": "number"}}}
    one = f"/dakkio/api/buckets/{{bucket}}/sources/{SOURCE}"
    for method, path in (("GET", "/dakkio/api/buckets/{bucket}/sources"),
                         ("POST", "/dakkio/api/buckets/{bucket}/sources"),
                         ("GET", one), ("PUT", one), ("PATCH", one)):  # fmt: skip
        answer = w.b(method, path.format(bucket=BUCKET), body, key=w.b_schemas)
        nowhere = w.b(method, path.format(bucket=other), body, key=w.b_schemas)
        assert answer.status == nowhere.status == 404, (method, path, answer.body)
        assert answer.body == nowhere.body
    shown = send(w.stack, w.a_schemas, "GET", f"/dakkio/api/buckets/{BUCKET}/sources/{SOURCE}")
    assert shown.status == 200 and shown.json()["dataSource"]["name"] == "a's source", shown.body


def baselime_write(w: World) -> None:
    """B writing to A's dataset gets the answer of a dataset that does not exist."""
    answer = w.b("POST", f"/baselime/v1/{w.dataset}/ns", [{"message": "m"}])
    nowhere = w.b("POST", f"/baselime/v1/no-such-{uuid.uuid4().hex[:6]}/ns", [{"message": "m"}])
    assert (answer.status, answer.body) == (nowhere.status, nowhere.body)
    assert answer.status >= 400
    assert w.a("GET", "/v1/events?family=baselime").json()["events"] == []


def baselime_header_write(w: World) -> None:
    """The same with the namespace in `x-namespace`, as Baselime's SDK sends it."""

    def post(dataset: str) -> Answer:
        return call("POST", f"{w.stack.base_url}/baselime/v1/{dataset}",
                    body=json.dumps([{"message": "m"}]).encode(),
                    headers={"X-API-Key": w.b_key, "x-namespace": "ns",
                             "Content-Type": "application/json"})  # fmt: skip

    answer, nowhere = post(w.dataset), post(f"no-such-{uuid.uuid4().hex[:6]}")
    assert (answer.status, answer.body) == (nowhere.status, nowhere.body)
    assert answer.status >= 400
    assert w.a("GET", "/v1/events?family=baselime").json()["events"] == []


def _registry(w: World, method: str, path: str, body: Any = None) -> Answer:
    return w.b(method, f"/schema-registry{path}", body, key=w.b_schemas)


def _registry_code(answer: Answer) -> int:
    assert answer.headers["Content-Type"].startswith("application/vnd.schemaregistry.v1+json")
    code: int = answer.json()["error_code"]
    return code


def registry_sealed(w: World) -> None:
    """B's reads and writes of the registry, in that order (the writes make B's own)."""
    registry_reads(w)
    registry_writes(w)


def registry_reads(w: World) -> None:
    """A's subject and schema id are absent for B (40401, 40403), its configs unseen."""
    s, schema = w.subject, {"schema": json.dumps(A_SCHEMA)}
    for path in (f"/subjects/{s}/versions", f"/subjects/{s}/versions/1",
                 f"/subjects/{s}/versions/latest/schema"):  # fmt: skip
        assert _registry_code(_registry(w, "GET", path)) == 40401, path
    assert _registry_code(_registry(w, "POST", f"/subjects/{s}", schema)) == 40401
    compat = _registry(w, "POST", f"/compatibility/subjects/{s}/versions/latest", schema)
    assert _registry_code(compat) == 40401
    for tail in ("", "/schema", "/subjects", "/versions"):
        answer = _registry(w, "GET", f"/schemas/ids/{w.schema_id}{tail}")
        assert _registry_code(answer) == 40403, tail
    listed = _registry(w, "GET", "/subjects?deleted=true")
    assert listed.status == 200 and s not in listed.json()
    assert _registry_code(_registry(w, "GET", f"/config/{s}")) == 40408
    own = _registry(w, "GET", f"/config/{s}?defaultToGlobal=true").json()
    assert own == {"compatibilityLevel": "BACKWARD"}  # not A's NONE nor A's FULL
    assert _registry(w, "GET", "/config").json() == {"compatibilityLevel": "BACKWARD"}


def registry_writes(w: World) -> None:
    """B's deletes miss A's subject; B's registrations and configs are B's own."""
    s = w.subject
    assert _registry_code(_registry(w, "DELETE", f"/subjects/{s}")) == 40401
    assert _registry_code(_registry(w, "DELETE", f"/subjects/{s}/versions/1")) == 40401
    assert _registry_code(_registry(w, "DELETE", f"/subjects/{s}?permanent=true")) == 40401
    mine = _registry(w, "POST", f"/subjects/{s}/versions", {"schema": '"string"'})
    assert mine.status == 200 and mine.json()["id"] != w.schema_id
    assert _registry(w, "PUT", f"/config/{s}", {"compatibility": "FORWARD"}).status == 200
    assert _registry(w, "PUT", "/config", {"compatibility": "NONE"}).status == 200
    a_side = f"/schema-registry/subjects/{s}/versions"
    assert send(w.stack, w.a_schemas, "GET", a_side).json() == [1]
    a_config = send(w.stack, w.a_schemas, "GET", f"/schema-registry/config/{s}").json()
    assert a_config == {"compatibilityLevel": "NONE"}
    assert send(w.stack, w.a_schemas, "GET", "/schema-registry/config").json() == {
        "compatibilityLevel": "FULL"
    }
    assert _registry(w, "DELETE", f"/subjects/{s}").json() == [1]  # B's own version 1
    assert send(w.stack, w.a_schemas, "GET", a_side).json() == [1]


def console_session(w: World) -> None:
    """B's console session is B's: signed in with B's key (a `tenant` in the body changes
    nothing) its cookie reads B's tenant only, and signing it out touches nothing of A's."""
    base = w.stack.base_url
    answer = call("POST", f"{base}/console/session",
                  json_body={"key": w.b_key, "tenant": w.tenant_a})  # fmt: skip
    assert answer.status == 201 and answer.json()["tenant"] != w.tenant_a, answer.body
    cookie = SimpleCookie(answer.headers["Set-Cookie"])["sluice_console"].value
    headers = {"Cookie": f"sluice_console={cookie}"}
    assert call("GET", f"{base}/console/session", headers=headers).json()["tenant"] != w.tenant_a
    assert call("GET", f"{base}/v1/dead-letters/{w.dead_letter_id}", headers=headers).status == 404
    listed = call("GET", f"{base}/v1/dead-letters", headers=headers)
    assert w.dead_letter_id not in listed.body.decode()
    csrf = {"X-CSRF-Token": str(answer.json()["csrf_token"])}
    assert call("DELETE", f"{base}/console/session", headers={**headers, **csrf}).status == 200
    w.a_still_has_everything()


CHECKS: dict[tuple[str, str], Callable[[World], None]] = {
    ("POST", "/console/session"): console_session,
    ("GET", "/console/session"): console_session,
    ("DELETE", "/console/session"): console_session,
    ("GET", "/v1/events"): list_events,
    ("GET", "/v1/events/{id}"): show_event,
    ("DELETE", "/v1/events/{id}"): delete_event,
    ("DELETE", "/v1/events"): delete_by_filter,
    ("DELETE", "/datahub/v1/events/delete"): datahub_deletes,
    ("DELETE", "/datahub/v1/events"): datahub_deletes,
    ("GET", "/v1/dead-letters"): list_dead_letters,
    ("GET", "/v1/dead-letters/{id}"): show_dead_letter,
    ("GET", "/v1/dead-letters/summary"): dead_letter_summary,
    ("GET", "/v1/overview"): overview,
    ("POST", "/v1/dead-letters/{id}/replay"): replay_dead_letter,
    ("POST", "/v1/dead-letters/{id}/discard"): discard_dead_letter,
    ("POST", "/v1/dead-letters/replay"): replay_by_filter,
    ("GET", "/v1/replay-jobs/{id}"): show_job,
    ("POST", "/v1/dead-letters/heal"): heal_subject,
    ("GET", "/v1/admin/retention"): retention_sealed,
    ("PUT", "/v1/admin/retention"): retention_sealed,
    ("DELETE", "/v1/admin/retention"): retention_sealed,
    ("POST", "/v1/admin/retention/run"): retention_sealed,
    ("GET", "/v1/admin/retention/runs/{id}"): retention_sealed,
    ("GET", "/v1/deletions/{id}"): show_deletion,
    ("GET", "/v1/events/{id}/history"): show_history,
    ("GET", "/v1/requests/{request_id}"): show_request,
    ("GET", "/v1/admin/keys"): admin_list,
    ("POST", "/v1/admin/keys"): admin_create,
    ("DELETE", "/v1/admin/keys/{prefix}"): admin_revoke,
    ("POST", "/v1/admin/keys/{prefix}/rotate"): admin_rotate,
    ("GET", "/dakkio/api/data"): dakkio_query,
    ("POST", "/dakkio/api/data"): dakkio_write,
    ("POST", "/dakkio/api/data/batch"): dakkio_write,
    ("GET", "/dakkio/api/buckets/{bucketId}/sources"): dakkio_sources,
    ("POST", "/dakkio/api/buckets/{bucketId}/sources"): dakkio_sources,
    ("GET", "/dakkio/api/buckets/{bucketId}/sources/{sourceId}"): dakkio_sources,
    ("PUT", "/dakkio/api/buckets/{bucketId}/sources/{sourceId}"): dakkio_sources,
    ("PATCH", "/dakkio/api/buckets/{bucketId}/sources/{sourceId}"): dakkio_sources,
    ("POST", "/baselime/v1/{dataset}/{namespace}"): baselime_write,
    ("POST", "/baselime/v1/{dataset}"): baselime_header_write,
    ("GET", "/schema-registry/schemas/ids/{id}"): registry_sealed,
    ("GET", "/schema-registry/schemas/ids/{id}/schema"): registry_sealed,
    ("GET", "/schema-registry/schemas/ids/{id}/subjects"): registry_sealed,
    ("GET", "/schema-registry/schemas/ids/{id}/versions"): registry_sealed,
    ("GET", "/schema-registry/subjects"): registry_sealed,
    ("GET", "/schema-registry/subjects/{subject}/versions"): registry_sealed,
    ("GET", "/schema-registry/subjects/{subject}/versions/{version}"): registry_sealed,
    ("GET", "/schema-registry/subjects/{subject}/versions/{version}/schema"): registry_sealed,
    ("POST", "/schema-registry/subjects/{subject}"): registry_sealed,
    (
        "POST",
        "/schema-registry/compatibility/subjects/{subject}/versions/{version}",
    ): registry_sealed,
    ("GET", "/schema-registry/config"): registry_sealed,
    ("GET", "/schema-registry/config/{subject}"): registry_sealed,
    ("POST", "/schema-registry/subjects/{subject}/versions"): registry_sealed,
    ("DELETE", "/schema-registry/subjects/{subject}"): registry_sealed,
    ("DELETE", "/schema-registry/subjects/{subject}/versions/{version}"): registry_sealed,
    ("PUT", "/schema-registry/config"): registry_sealed,
    ("PUT", "/schema-registry/config/{subject}"): registry_sealed,
}
"""Tenant-scoped routes: each check tries B's key on A's things and asserts nothing leaks."""

INGEST_ONLY = {
    ("POST", "/v1/events"),
    ("POST", "/dashdive/{service}/single"),
    ("POST", "/dashdive/{service}"),
    ("POST", "/dashdive/{service}/batch"),
    ("POST", "/datahub/v1/events"),
    ("POST", "/datahub/v1/csv/upload"),
    ("POST", "/dynatrace/platform/ingest/v1/events"),
    ("POST", "/posthog/capture/"),
    ("POST", "/posthog/batch/"),
    ("POST", "/posthog/e/"),
    ("POST", "/posthog/i/v0/e/"),
    ("POST", "/otlp/v1/logs"),
    *(
        ("POST", f"/{door}/v1/{path}")
        for door in ("segment", "rudderstack")
        for path in ("batch", "b", "import", "{call}")
    ),
}
"""Writes through the shared door: the tenant is the key's (`request_context`); a body's
`tenant` is an unknown field and dropped (see test_a_body_cannot_choose_the_tenant)."""

NOT_TENANT_SCOPED = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/schema-registry/schemas/types"),
    ("GET", "/console"),
    ("GET", "/console/assets/{name}"),
}
"""No tenant data: liveness, readiness, process metrics, the API description, the schema
types the registry serves, the console's page and its files."""


def registered_routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, pattern) of every route of `app` and its sub-apps (HEAD folded into GET)."""
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:
            yield from registered_routes(info["app"])
            continue
        for route in resource:
            if route.method != "HEAD":
                yield route.method, resource.canonical


def app_routes(stack: ProcessStack) -> set[tuple[str, str]]:
    return set(registered_routes(create_app(stack.settings)))


def test_every_route_is_classified(stack: ProcessStack) -> None:
    unclassified = app_routes(stack) - CHECKS.keys() - INGEST_ONLY - NOT_TENANT_SCOPED
    assert not unclassified, f"classify these routes in test_tenants.py: {sorted(unclassified)}"


def test_tenant_b_never_reaches_tenant_a(world: World) -> None:
    """Every registered tenant-scoped route, tried with B's key on A's ids and filters."""
    checked = set()
    for route in sorted(app_routes(world.stack) & CHECKS.keys()):
        check = CHECKS[route]
        if check not in checked:
            check(world)
            checked.add(check)
    assert list_events in checked and show_dead_letter in checked
    world.a_still_has_everything()


def test_a_body_cannot_choose_the_tenant(world: World) -> None:
    event_id = f"smuggled-{uuid.uuid4().hex[:8]}"
    event = {"id": event_id, "tenant": world.tenant_a, "type": "t", "source": "s",
             "time": "2024-01-01T00:00:00Z", "data": {}}  # fmt: skip
    assert world.b("POST", f"/v1/events?tenant={world.tenant_a}", event).status == 202
    eventually(lambda: world.b("GET", f"/v1/events/{event_id}").status == 200)
    assert world.a("GET", f"/v1/events/{event_id}").status == 404


# --- the database's wall ---------------------------------------------------------------


def test_every_tenant_table_has_row_level_security(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT c.relname, c.relrowsecurity,
                      EXISTS (SELECT 1 FROM pg_policies p
                              WHERE p.schemaname = n.nspname AND p.tablename = c.relname)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant'
               WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"""
        ).fetchall()
    assert {"events", "dead_letters", "api_keys", "event_deletions"} <= {r[0] for r in rows}
    unprotected = [name for name, secured, policy in rows if not (secured and policy)]
    assert not unprotected, f"tenant tables without row-level security: {unprotected}"


def test_the_api_role_sees_only_the_tenant_it_sets(database_url: str, world: World) -> None:
    """As `sluice_api`, a query without a tenant filter still sees one tenant's rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE sluice_api")
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
        with conn.transaction():
            conn.execute("SELECT set_config('sluice.tenant', %s, true)", (world.tenant_a,))
            tenants = conn.execute("SELECT DISTINCT tenant FROM events").fetchall()
            assert tenants == [(world.tenant_a,)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(
                    "UPDATE events SET tenant = 'elsewhere' WHERE tenant = %s", (world.tenant_a,)
                )
        assert conn.execute("SELECT current_setting('sluice.tenant', true)").fetchone() in (
            ("",),
            (None,),
        )
        found = conn.execute(
            "SELECT tenant FROM sluice_find_api_key(%s)", (world.a_key.split(".")[0],)
        ).fetchall()
        assert found == [(world.tenant_a,)]


API_WRITES = {
    "api_keys": {"INSERT", "UPDATE"},
    "replay_jobs": {"INSERT", "UPDATE"},
    "dead_letters": {"UPDATE", "DELETE"},
    "retention_policies": {"INSERT", "UPDATE", "DELETE"},
    "retention_runs": {"INSERT", "UPDATE", "DELETE"},
    "deletions": {"INSERT"},
    "registry_versions": {"INSERT", "UPDATE", "DELETE"},
    "registry_schemas": {"INSERT"},
    "registry_config": {"INSERT", "UPDATE"},
    "console_sessions": {"INSERT", "DELETE"},
    "dakkio_data_sources": {"INSERT", "UPDATE"},
}
"""Every write the API's role may make (migrations 0013, 0016, 0020, 0021): what store/*.py
runs for the API (0021: retention's policies and runs, and expiring dead letters)."""


def test_the_api_role_holds_only_the_privileges_the_api_uses(database_url: str) -> None:
    """SELECT on the tables it reads, and only the writes listed above: the sink's tables
    (`events`, `event_deletions`, the history) are read-only to it, and so is any table
    a later migration adds without granting."""
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
            " AND c.relname NOT LIKE '%yoyo%'"
        ).fetchall()]  # fmt: skip
        held = {
            table: {p for p in privileges if conn.execute(
                "SELECT has_table_privilege('sluice_api', %s, %s)", (table, p)
            ).fetchone() == (True,)}
            for table in tables
        }  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SET LOCAL ROLE sluice_api")
            conn.execute("SELECT set_config('sluice.tenant', 'acme', true)")
            conn.execute("INSERT INTO events (tenant, family, event_id, type, source, time,"
                         " data, received_at, version) VALUES ('acme', 'native', 'x', 't', 's',"
                         " now(), '{}', now(), 1)")  # fmt: skip
    assert {"events", "event_deletions", "ingest_envelopes", "event_history"} <= set(held)
    for table, got in held.items():
        assert got == {"SELECT", *API_WRITES.get(table, set())}, (table, got)

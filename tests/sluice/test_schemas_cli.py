"""`sluice schemas register|list|show|check|delete` against the real API and its registry.

Each test drives the CLI in-process (click's runner) against the session's stack, with a
key of a fresh tenant in SLUICE_API_KEY; what the CLI printed is checked against what the
registry holds (read back over HTTP), and a data contract registered with the CLI is
enforced by the door."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sluice.cli import main
from sluice.stack import ProcessStack
from tests.conftest import eventually, free_port
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

SCOPES = ["events:write", "events:read", "schemas:read", "schemas:write"]

V1 = {"type": "object", "additionalProperties": False, "required": ["units"],
      "properties": {"units": {"type": "integer", "minimum": 0},
                     "region": {"type": "string", "enum": ["eu", "us"]}}}  # fmt: skip
V2 = {**V1, "properties": {**V1["properties"], "units": {"type": "number", "minimum": 0},
                           "note": {"type": "string"}}}  # fmt: skip
BREAKING = {**V1, "properties": {**V1["properties"], "units": {"type": "string"}},
            "required": ["units", "region"]}  # fmt: skip
AVRO = {"type": "record", "name": "Reading", "fields": [{"name": "value", "type": "double"}]}


class Cli:
    """The CLI pointed at the stack with one tenant's key."""

    def __init__(self, stack: ProcessStack, key: str, tmp: Path) -> None:
        self.stack, self.key, self.tmp = stack, key, tmp
        self.env = {"SLUICE_API_URL": stack.base_url, "SLUICE_API_KEY": key,
                    "SLUICE_STATE_DIR": str(tmp)}  # fmt: skip

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["schemas", *args], env={**self.env, **(env or {})})

    def file(self, document: Any, name: str = "schema.json") -> str:
        path = self.tmp / f"{uuid.uuid4().hex[:6]}-{name}"
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        return str(path)

    def registry(self, path: str) -> Answer:
        return call("GET", f"{self.stack.base_url}/schema-registry{path}",
                    headers={"Authorization": f"Bearer {self.key}"})  # fmt: skip


@pytest.fixture
def cli(stack: ProcessStack, new_key: Callable[..., str], tmp_path: Path) -> Cli:
    return Cli(stack, new_key(f"sc-{uuid.uuid4().hex[:10]}", SCOPES), tmp_path)


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result.output


def _refused(result: Result) -> str:
    """A failure: exit 2, one line naming why, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sluice: "), result.output
    return lines[0]


def test_register_prints_the_id_and_version_the_registry_holds(cli: Cli) -> None:
    subject = "native.usage.api_call"
    first = _ok(cli("register", subject, cli.file(V1)))
    stored = cli.registry(f"/subjects/{subject}/versions/1").json()
    assert first.strip() == (
        f"{subject}: version 1, schema id {stored['id']}; heals 0 pending dead letters "
        "(sluice replay heal)"
    )
    assert json.loads(stored["schema"]) == V1 and stored["schemaType"] == "JSON"

    again = _ok(cli("register", subject, cli.file(V1)))
    assert again == first  # the same schema answers its version

    second = json.loads(_ok(cli("register", subject, cli.file(V2), "--json")))
    latest = cli.registry(f"/subjects/{subject}/versions/latest").json()
    assert second == {"subject": subject, "id": latest["id"], "version": 2, "would_heal": 0}


def test_register_reads_stdin(cli: Cli) -> None:
    result = CliRunner().invoke(main, ["schemas", "register", "native.piped", "-"],
                                input=json.dumps(V1), env=cli.env)  # fmt: skip
    stored = cli.registry("/subjects/native.piped/versions/latest").json()
    assert _ok(result).strip().startswith(f"native.piped: version 1, schema id {stored['id']};")
    assert json.loads(stored["schema"]) == V1


def test_register_avro_by_type_or_extension(cli: Cli) -> None:
    by_type = _ok(cli("register", "readings-value", cli.file(AVRO), "--type", "AVRO"))
    by_name = _ok(cli("register", "other-value", cli.file(AVRO, "reading.avsc")))
    for subject, printed in (("readings-value", by_type), ("other-value", by_name)):
        stored = cli.registry(f"/subjects/{subject}/versions/latest").json()
        assert "schemaType" not in stored  # AVRO, as Confluent answers it
        assert printed.strip() == f"{subject}: version 1, schema id {stored['id']}"


def test_an_incompatible_registration_prints_every_reason_and_fails(cli: Cli) -> None:
    subject = "native.usage.refused"
    _ok(cli("register", subject, cli.file(V1)))
    line = _refused(cli("register", subject, cli.file(BREAKING)))
    assert "incompatible" in line and "#/properties/units/type" in line
    assert "'region' became required" in line and line.endswith("(409)")
    assert cli.registry(f"/subjects/{subject}/versions").json() == [1]


def test_check_says_compatible_or_lists_every_reason_with_exit_1(cli: Cli) -> None:
    subject = "native.usage.checked"
    _ok(cli("register", subject, cli.file(V1)))
    assert _ok(cli("check", subject, cli.file(V2))).strip() == "compatible"

    refused = cli("check", subject, cli.file(BREAKING))
    assert refused.exit_code == 1, refused.output
    lines = refused.output.strip().splitlines()
    assert lines[0] == f"incompatible with {subject}:"
    reasons = [line.strip() for line in lines[1:]]
    assert any("#/properties/units/type" in r for r in reasons)
    assert any("'region' became required" in r for r in reasons), reasons

    as_json = cli("check", subject, cli.file(BREAKING), "--json")
    assert as_json.exit_code == 1
    verdict = json.loads(as_json.output)
    assert verdict["is_compatible"] is False and verdict["messages"] == reasons
    assert cli.registry(f"/subjects/{subject}/versions").json() == [1]  # nothing registered


def test_list_shows_each_subject_with_its_latest_version(cli: Cli) -> None:
    _ok(cli("register", "native.a", cli.file(V1)))
    _ok(cli("register", "native.a", cli.file(V2)))
    _ok(cli("register", "readings-value", cli.file(AVRO), "--type", "AVRO"))
    ids = {s: cli.registry(f"/subjects/{s}/versions/latest").json()["id"]
           for s in ("native.a", "readings-value")}  # fmt: skip

    table = _ok(cli("list", "--prefix", "native.")).splitlines()
    assert table[0].split() == ["SUBJECT", "VERSION", "ID", "TYPE"]
    assert [line.split() for line in table[1:]] == [["native.a", "2", str(ids["native.a"]), "JSON"]]
    columns = [table[0].index(h) for h in ("VERSION", "ID", "TYPE")]
    assert all(line[c - 1] == " " for line in table[1:] for c in columns)  # aligned

    rows = [json.loads(line) for line in _ok(cli("list", "--json")).splitlines()]
    mine = [r for r in rows if r["subject"] in ids]
    assert mine == [
        {"subject": "native.a", "version": 2, "id": ids["native.a"], "schemaType": "JSON"},
        {"subject": "readings-value", "version": 1, "id": ids["readings-value"],
         "schemaType": "AVRO"},
    ]  # fmt: skip
    sluice_own = [r for r in rows if r["subject"].endswith("events.dlq-value")]
    assert sluice_own and sluice_own[0]["id"] == 3  # Sluice's own subjects are listed too


def test_show_prints_a_version_and_its_schema(cli: Cli) -> None:
    subject = "native.usage.shown"
    _ok(cli("register", subject, cli.file(V1)))
    _ok(cli("register", subject, cli.file(V2)))
    first = cli.registry(f"/subjects/{subject}/versions/1").json()

    shown = _ok(cli("show", subject, "--version", "1")).splitlines()
    assert shown[:4] == [f"subject  {subject}", "version  1", f"id       {first['id']}",
                         "type     JSON"]  # fmt: skip
    assert json.loads("\n".join(shown[4:])) == V1

    latest = json.loads(_ok(cli("show", subject, "--json")))
    assert latest["version"] == 2 and json.loads(latest["schema"]) == V2

    assert "(40402)" in _refused(cli("show", subject, "--version", "7"))
    assert _refused(cli("show", "native.nothing")).endswith(
        "Subject 'native.nothing' not found. (40401)"
    )
    bad = cli("show", subject, "--version", "zero")
    assert bad.exit_code == 2 and "a version is a positive number or 'latest'" in bad.output


def test_delete_soft_then_permanent(cli: Cli) -> None:
    subject = "native.usage.deleted"
    for document in (V1, V2):
        _ok(cli("register", subject, cli.file(document)))

    assert _ok(cli("delete", subject, "--version", "2")).strip() == \
        f"deleted {subject} version(s) 2"  # fmt: skip
    assert cli.registry(f"/subjects/{subject}/versions").json() == [1]
    assert cli.registry(f"/subjects/{subject}/versions?deleted=true").json() == [1, 2]

    assert _ok(cli("delete", subject, "--version", "2", "--permanent")).strip() == \
        f"permanently deleted {subject} version(s) 2"  # fmt: skip
    assert cli.registry(f"/subjects/{subject}/versions?deleted=true").json() == [1]

    assert _ok(cli("delete", subject, "--permanent")).strip() == \
        f"permanently deleted {subject} version(s) 1"  # fmt: skip
    assert cli.registry(f"/subjects/{subject}/versions?deleted=true").status == 404
    assert subject not in _ok(cli("list", "--deleted"))
    assert "(40401)" in _refused(cli("delete", subject))


def test_a_contract_registered_with_the_cli_is_enforced(cli: Cli) -> None:
    _ok(cli("register", "native.usage.enforced", cli.file(V1)))
    event = {"id": f"e-{uuid.uuid4().hex[:8]}", "type": "usage.enforced", "source": "/t",
             "time": "2024-11-23T10:00:00Z", "data": {"units": -1}}  # fmt: skip

    seen: list[tuple[int, str]] = []

    def refused() -> Answer | None:
        answer = call("POST", f"{cli.stack.base_url}/v1/events", json_body=event,
                      headers={"X-API-Key": cli.key})  # fmt: skip
        seen.append((answer.status, answer.body[:300].decode(errors="replace")))
        return answer if answer.status == 400 else None

    try:
        reasons = eventually(refused, timeout=30).json()["rejected"][0]["reasons"]
    except AssertionError as exc:  # say what the door answered instead, and what it logged
        raise AssertionError(
            f"{exc}; last answers {seen[-3:]}; api log:\n{cli.stack.log_tail('api', 80)}"
        ) from exc
    assert reasons[0]["code"] == "schema_violation" and reasons[0]["path"] == "/units"


def test_registry_refusals_print_the_registry_message(cli: Cli, new_key: Callable[..., str],
                                                      stack: ProcessStack) -> None:  # fmt: skip
    reader = new_key(f"sc-ro-{uuid.uuid4().hex[:8]}", ["schemas:read"])
    line = _refused(cli("register", "native.x", cli.file(V1), env={"SLUICE_API_KEY": reader}))
    assert "(40301)" in line  # the key lacks schemas:write
    assert "(40101)" in _refused(cli("list", env={"SLUICE_API_KEY": "nope.nope"}))
    own = "events.dlq-value"
    dlq = next(s for s in cli.registry("/subjects").json() if s.endswith(own))
    assert "(40301)" in _refused(cli("delete", dlq))  # Sluice's own subjects are read-only
    not_json = _refused(cli("register", "native.y", cli.file("{", "broken.json")))
    assert "(42201)" in not_json


def test_without_a_key_or_an_api_it_says_so_in_one_line(cli: Cli) -> None:
    assert _refused(cli("list", env={"SLUICE_API_KEY": ""})) == \
        "sluice: no API key: set SLUICE_API_KEY or pass --key"  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}"
    line = _refused(cli("list", "--url", url))
    assert line.startswith(f"sluice: cannot reach the API at SLUICE_API_URL={url}: ")
    assert "refused" in line.lower()
    with_option = _ok(cli("list", "--url", cli.stack.base_url, "--key", cli.key,
                          env={"SLUICE_API_URL": url, "SLUICE_API_KEY": ""}))  # fmt: skip
    assert with_option.startswith("SUBJECT")

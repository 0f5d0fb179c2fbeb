"""A command that cannot reach PostgreSQL or Kafka says so in one line naming the setting,
with any password hidden, and exits non-zero: never a traceback.

Unit tests: libpq and librdkafka connect from C, past the fixture that stops Python code from
opening sockets, and only to a port on 127.0.0.1 that nothing listens on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice import unreachable
from sluice.cli import main
from tests.conftest import free_port


def _run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.output


@pytest.fixture
def no_dev_stack(tmp_path: Path) -> dict[str, str]:
    return {"SLUICE_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "",
            "DATABASE_URL": ""}  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [["keys", "list"], ["keys", "create", "--tenant", "acme"], ["migrate"],
     ["datasets", "list", "--tenant", "acme"], ["replay", "list", "--tenant", "acme"],
     ["events", "history", "e-1", "--tenant", "acme"],
     ["requests", "show", "r-1", "--tenant", "acme"]],
)  # fmt: skip
def test_unreachable_postgres_is_one_line(args: list[str], no_dev_stack: dict[str, str]) -> None:
    url = f"postgresql://sluice:hunter2@127.0.0.1:{free_port()}/sluice"
    code, output = _run(args, {**no_dev_stack, "DATABASE_URL": url})
    assert code == 1
    assert output.strip().splitlines() == [
        f"sluice: cannot reach PostgreSQL at DATABASE_URL={url.replace('hunter2', '***')}: "
        "Connection refused"
    ]
    assert "hunter2" not in output and "Traceback" not in output


def test_unset_database_url_says_so(no_dev_stack: dict[str, str]) -> None:
    code, output = _run(["keys", "list"], {**no_dev_stack, "DATABASE_URL": ""})
    assert code == 1 and len(output.strip().splitlines()) == 1
    assert output.startswith("sluice: cannot reach PostgreSQL at DATABASE_URL=(unset")


def test_unreachable_kafka_is_one_line(
    no_dev_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unreachable, "KAFKA_PROBE_SECONDS", 1.0)
    servers = f"127.0.0.1:{free_port()}"
    code, output = _run(["topics"], {**no_dev_stack, "KAFKA_BOOTSTRAP_SERVERS": servers})
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(f"sluice: cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS={servers}: ")


def test_hide_password() -> None:
    assert unreachable.hide_password("postgresql://u:p@h:1/d") == "postgresql://u:***@h:1/d"
    assert unreachable.hide_password("postgresql://u@h/d") == "postgresql://u@h/d"
    assert unreachable.hide_password("127.0.0.1:9092") == "127.0.0.1:9092"

"""A second terminal finds the running `sluice dev` stack through `<state dir>/dev.json`,
only while the processes that wrote it are alive, and never finds a secret in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runtime.settings import Settings, load_settings
from sluice.devstack import cli_environ, export_lines
from sluice.devstate import (
    DEFAULT_STATE_DIR,
    environ_with_dev_stack,
    find_dev_stack,
    remove_dev_state,
    state_file,
    write_dev_state,
)

STACK_ENV = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
             "DATABASE_URL": "postgresql://sluice:pw@127.0.0.1:15432/sluice"}  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_state_dir_default_is_the_settings_default() -> None:
    assert Path(DEFAULT_STATE_DIR) == Settings().state_dir


def test_a_running_stack_is_found_and_fills_what_is_unset(tmp_path: Path) -> None:
    write_dev_state(tmp_path, api="http://127.0.0.1:8080", environ=STACK_ENV,
                    pids={"dev": os.getpid()})  # fmt: skip
    assert state_file(tmp_path).stat().st_mode & 0o077 == 0
    found = find_dev_stack(tmp_path)
    assert found is not None and found.environ == STACK_ENV

    env = environ_with_dev_stack({"SLUICE_STATE_DIR": str(tmp_path)})
    settings = load_settings(env)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.database_url == STACK_ENV["DATABASE_URL"]

    mine = {"SLUICE_STATE_DIR": str(tmp_path), "DATABASE_URL": "postgresql://me@db/x"}
    assert environ_with_dev_stack(mine)["DATABASE_URL"] == "postgresql://me@db/x"


def test_a_stack_whose_process_died_is_ignored(tmp_path: Path) -> None:
    write_dev_state(tmp_path, api="http://x", environ=STACK_ENV,
                    pids={"dev": os.getpid(), "api": _dead_pid()})  # fmt: skip
    assert find_dev_stack(tmp_path) is None
    assert "DATABASE_URL" not in environ_with_dev_stack({"SLUICE_STATE_DIR": str(tmp_path)})


def test_a_missing_or_broken_file_is_no_stack(tmp_path: Path) -> None:
    assert find_dev_stack(tmp_path) is None
    state_file(tmp_path).write_text("{not json")
    assert find_dev_stack(tmp_path) is None
    remove_dev_state(tmp_path)
    remove_dev_state(tmp_path)  # removing twice is fine
    assert not state_file(tmp_path).exists()


def test_secrets_are_named_not_stored_or_printed() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", key_secret="s3cret-value",
                        database_url="postgresql://u:hunter2@127.0.0.1:5/d")  # fmt: skip
    environ, withheld = cli_environ(settings)
    assert withheld == ("SLUICE_KEY_SECRET",)
    assert "SLUICE_KEY_SECRET" not in environ
    printed = "\n".join(export_lines(settings))
    assert "s3cret-value" not in printed and "hunter2" not in printed
    assert "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1" in printed
    assert "export SLUICE_KEY_SECRET=" in printed


def test_a_default_stack_needs_only_the_two_services() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", database_url="postgresql://u@h/d")
    assert export_lines(settings) == [
        "export DATABASE_URL=postgresql://u@h/d", "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1",
    ]  # fmt: skip

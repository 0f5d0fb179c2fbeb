"""The API refuses the published default key secret anywhere but loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from producer_api.app import DefaultSecretRefused, refuse_default_secret
from runtime.settings import DEFAULT_KEY_SECRET, Settings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "sluice.internal", ""])
def test_the_default_secret_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(DefaultSecretRefused, match="SLUICE_KEY_SECRET"):
        refuse_default_secret(Settings(http_host=host, key_secret=DEFAULT_KEY_SECRET))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_the_default_secret_serves_loopback(host: str) -> None:
    refuse_default_secret(Settings(http_host=host, key_secret=DEFAULT_KEY_SECRET))


def test_an_own_secret_or_the_explicit_setting_serves_any_address() -> None:
    refuse_default_secret(Settings(http_host="0.0.0.0", key_secret="a-secret-of-our-own"))
    refuse_default_secret(
        Settings(http_host="0.0.0.0", key_secret=DEFAULT_KEY_SECRET, allow_default_secret=True)
    )


def test_sluice_api_exits_with_one_line_before_serving() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(SLUICE_HTTP_HOST="0.0.0.0", SLUICE_HTTP_PORT="1", SLUICE_STATE_DIR="/nonexistent")
    command = [sys.executable, "-c", "from sluice.cli import main; main()", "api"]
    done = subprocess.run(command, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "refusing to serve '0.0.0.0' with the default SLUICE_KEY_SECRET" in done.stderr
    assert DEFAULT_KEY_SECRET not in done.stderr

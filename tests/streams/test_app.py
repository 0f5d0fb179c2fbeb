"""The Faust app's wiring that does not need a broker."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings
from streams.app import create_app


def test_the_worker_keeps_its_faust_directory_under_the_state_dir(tmp_path: Path) -> None:
    """Faust's default is `<worker id>-data` in the working directory, which littered the
    checkout with one directory per test worker."""
    state = tmp_path / "not-yet"
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9", state_dir=state, worker_id="w1")
    app = create_app(settings)
    assert Path(app.conf.datadir) == state / "faust" / "w1"
    assert Path(app.conf.datadir).parent.is_dir()  # Faust itself makes only the last level

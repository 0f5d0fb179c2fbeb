"""Run the Faust app as a worker process."""

from __future__ import annotations

import faust

from sluice.settings import Settings
from streams.app import create_app


def run(settings: Settings) -> None:
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()

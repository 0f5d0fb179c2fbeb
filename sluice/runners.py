"""Long-running processes started by the CLI, with clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from types import FrameType

from runtime.settings import Settings
from sinks.consumer import Sink


def run_sink(settings: Settings) -> None:
    sink = Sink(settings)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        sink.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sink.run()

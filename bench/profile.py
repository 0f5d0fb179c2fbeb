"""Optional py-spy profiles of the stage processes (`BENCH_PROFILE=1`).

While a stage runs alone, `py-spy record` samples its process (idle frames
included, so time spent waiting for Kafka or PostgreSQL shows as well) into a
collapsed-stack file; the summary lists the functions where samples ended,
which is the evidence for why a stage misses its target.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.procs import BenchProcesses


@contextlib.contextmanager
def profiled(
    procs: BenchProcesses, name: str, folder: Path | None, label: str
) -> Iterator[Path | None]:
    """Sample process `name` with py-spy while the block runs; yield the output path."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    handle = procs.handles.get(name)
    if folder is None or spy is None or handle is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{label}-{name}.txt"
    command = [spy, "record", "--pid", str(handle.pid), "--format", "raw", "--idle",
               "--rate", "250", "--nonblocking", "--output", str(out)]  # fmt: skip
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


def top_frames(path: Path | None, limit: int = 12) -> list[tuple[str, float]]:
    """The leaf frames holding the most samples, as (frame, share of all samples)."""
    if path is None or not path.exists():
        return []
    leaves: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            leaves[stack.split(";")[-1]] += int(count)
    total = sum(leaves.values()) or 1
    return [(frame, n / total) for frame, n in leaves.most_common(limit)]

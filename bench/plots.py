"""PNG plots of the burst: accepted events/s, request latency and memory over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_burst(burst: dict[str, Any], folder: Path, stamp: str) -> list[Path]:
    """Write `<stamp>-burst-*.png`; return their paths (none if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    line, mem = burst["timeline"], burst["memory_timeline"]
    paths = []
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    top.plot(line["t"], line["accepted_per_s"], label="accepted events/s")
    top.axhline(burst["offered_per_second"], linestyle="--", color="grey", label="offered")
    top.set_ylabel("events/s")
    top.legend()
    middle.plot(line["t"], line["p50_ms"], label="p50")
    middle.plot(line["t"], line["p99_ms"], label="p99")
    middle.set_ylabel("request latency (ms)")
    middle.legend()
    for name, values in mem.items():
        if name != "t":
            bottom.plot(mem["t"], values, label=name)
    bottom.set_ylabel("RSS (MB)")
    bottom.set_xlabel("seconds since the burst began")
    bottom.legend()
    fig.suptitle(f"Sluice under a {burst['offered_per_second']:,.0f} events/s burst")
    fig.tight_layout()
    path = folder / f"{stamp}-burst.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths

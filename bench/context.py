"""What every benchmark phase shares: settings, topics, processes, keys and offset probes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.config import BenchConfig
from bench.procs import BenchProcesses
from bench.watch import Offsets
from runtime.settings import Settings
from schemas.topics import TopicNames


@dataclass
class BenchContext:
    """One benchmark run against one Kafka and one PostgreSQL."""

    cfg: BenchConfig
    settings: Settings
    topics: TopicNames
    procs: BenchProcesses
    offsets: Offsets
    tag: str
    """Unique to the run: topic prefix, consumer groups, tenants and event ids derive from it."""
    keys: dict[str, str] = field(default_factory=dict)
    """API key per tenant the run created."""

    @property
    def raw_door_topic(self) -> str:
        return f"{self.settings.topic_prefix}bench.raw-door"

    @property
    def raw_stream_topic(self) -> str:
        return f"{self.settings.topic_prefix}bench.raw-stream"

    @property
    def profile_dir(self) -> Path | None:
        """Where stage profiles go, or None when profiling is off."""
        return self.cfg.results_dir / "profiles" / self.tag if self.cfg.profile else None

    def tenant(self, purpose: str) -> str:
        return f"bench-{self.tag}-{purpose}"

"""`make mutants`: break each invariant's code on purpose and check that a test notices.

Each `Mutant` is a plain search/replace on one source file (several where one break needs
them), asserted to match exactly once, so a refactor that moves the code makes this script
fail loudly instead of passing. The mutant is written in place (the editable install and
the processes the tests start import the worktree), its test files run, and the original
bytes are written back in a `finally`, on Ctrl-C and SIGTERM too. A mutant whose tests fail
is KILLED; one whose tests pass SURVIVED, and any survivor makes the script exit 1.

    python -m tests.mutants.run            # every mutant
    python -m tests.mutants.run sink-newest-wins ack-native   # some of them, by name
    python -m tests.mutants.run --list
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Patch:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    invariant: int
    what: str
    patches: tuple[Patch, ...]
    tests: tuple[str, ...]


def _answer_early(condition: str) -> Patch:
    """`ingest()` hands requests matching `condition` a publisher that sends without waiting
    for Kafka's acknowledgement: the route answers before the ack, for those requests only."""
    head = (
        "async def ingest(deps: IngestDeps, request: IngestRequest) -> IngestOutcome:\n"
        '    """Split, admit, plan, publish (dead letters included), and say what happened."""\n'
    )
    early = (
        f"    if {condition}:\n"
        "        import dataclasses as _dc\n"
        "        _real = deps.publisher\n"
        "\n"
        "        class _Early:\n"
        "            inflight_bytes = 0\n"
        "\n"
        "            async def publish(self, messages):  # type: ignore[no-untyped-def]\n"
        "                asyncio.ensure_future(_real.publish(messages))\n"
        "                return {}\n"
        "\n"
        "        deps = _dc.replace(deps, publisher=_Early())  # type: ignore[arg-type]\n"
    )
    return Patch("ingest/entry.py", head, head + early)


_FAMILY_ROUTES = "tests/integration/test_kafka_outage.py"


def _ack_mutants() -> list[Mutant]:
    families = {
        "native": "native",
        "dashdive": "dashdive",
        "datahub": "datahub' and request.ctx.route.get('format') != 'csv",
        "baselime": "baselime",
        "dynatrace": "dynatrace",
        "dakkio": "dakkio",
        "posthog": "posthog",
        "otlp": "otlp",
    }
    found = [
        Mutant(
            f"ack-{name}",
            1,
            f"{name} routes answer before Kafka's acknowledgement",
            (_answer_early(f"request.plan is None and request.ctx.family == '{cond}'"),),
            (_FAMILY_ROUTES,),
        )
        for name, cond in families.items()
    ]
    found.append(
        Mutant(
            "ack-datahub-csv",
            1,
            "the DataHub CSV upload answers before Kafka's acknowledgement",
            (_answer_early("request.ctx.route.get('format') == 'csv'"),),
            (_FAMILY_ROUTES,),
        )
    )
    found.append(
        Mutant(
            "ack-replay",
            1,
            "a replay marks and answers before Kafka's acknowledgement",
            (_answer_early("request.plan is not None"),),
            (_FAMILY_ROUTES,),
        )
    )
    deletes = (
        (
            "ack-delete-ids",
            "plan_deletes(ctx, event_ids, receipt_id, deps.topics, deps.partitions)",
        ),
        ("ack-delete-filter", "plan_filter_delete(ctx, flt, receipt_id, deps.topics, partitions)"),
    )
    for name, planned in deletes:
        head = f"    plan = {planned}\n"
        found.append(
            Mutant(
                name,
                1,
                f"a delete ({planned.split('(')[0]}) answers before Kafka's acknowledgement",
                (
                    Patch(
                        "ingest/entry.py",
                        head + "    await deps.publisher.publish(plan.messages)\n",
                        head + "    asyncio.ensure_future(deps.publisher.publish(plan.messages))\n",
                    ),
                ),
                (_FAMILY_ROUTES,),
            )
        )
    return found


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "sink-newest-wins",
        3,
        "the sink's upsert drops its version guard: any later write wins",
        (
            Patch(
                "sinks/writer.py",
                "WHERE e.version < EXCLUDED.version\n",
                "WHERE e.version IS NOT NULL\n",
            ),
        ),
        ("tests/sinks/test_newest_wins_machine.py", "tests/sinks/test_writer.py"),
    ),
    *_ack_mutants(),
    Mutant(
        "api-set-role",
        5,
        "the API's pool skips SET ROLE sluice_api (row-level security no longer applies)",
        (
            Patch(
                "producer_api/resources.py",
                "min_size=1, max_size=10, open=False, kwargs=api_connection_kwargs(settings),\n"
                "        configure=assume_role(settings.api_database_role),\n",
                "min_size=1, max_size=10, open=False, kwargs=api_connection_kwargs(settings),\n",
            ),
        ),
        ("tests/producer_api/test_api_pool.py",),
    ),
    Mutant(
        "producer-acks",
        1,
        "the producer asks only the leader's acknowledgement (acks=1, not idempotent)",
        (
            Patch(
                "runtime/kafka.py",
                '        "enable.idempotence": True,\n        "acks": "all",\n',
                '        "enable.idempotence": False,\n        "acks": 1,\n',
            ),
        ),
        ("tests/runtime/test_producer_config.py",),
    ),
    Mutant(
        "producer-idempotence",
        1,
        "the producer is not idempotent (a retried send can duplicate)",
        (
            Patch(
                "runtime/kafka.py",
                '        "enable.idempotence": True,\n',
                '        "enable.idempotence": False,\n',
            ),
        ),
        ("tests/runtime/test_producer_config.py",),
    ),
    Mutant(
        "worker-ack-before-delivery",
        1,
        "the worker lets Faust acknowledge a batch before Kafka holds its results",
        (
            Patch(
                "streams/app.py",
                "                await self._get_producer().send_batch(messages).wait()\n",
                "                self._get_producer().send_batch(messages)\n",
            ),
        ),
        ("tests/streams/test_forwarder.py",),
    ),
    Mutant(
        "sink-delete-id-tenant",
        5,
        "the sink's delete by id removes every tenant's row with that id",
        (
            Patch(
                "sinks/writer.py",
                "WHERE e.tenant = t.tenant AND e.family = t.family AND e.event_id = t.event_id\n",
                "WHERE e.family = t.family AND e.event_id = t.event_id\n",
            ),
        ),
        ("tests/integration/test_tenants.py",),
    ),
    Mutant(
        "sink-dead-letter-delete-tenant",
        5,
        "the sink's delete by id removes every tenant's dead letters of that id",
        (
            Patch(
                "sinks/writer.py",
                "      ON dl.tenant = t.tenant AND dl.family = t.family",
                "      ON dl.family = t.family",
            ),
        ),
        ("tests/integration/test_tenants.py",),
    ),
    Mutant(
        "sink-filter-delete-tenant",
        5,
        "the sink's delete by filter removes matching rows of every tenant",
        (
            Patch(
                "sinks/writer.py",
                "  AND e.tenant = f.tenant AND e.family = f.family\n",
                "  AND e.family = f.family\n",
            ),
        ),
        ("tests/integration/test_tenants.py",),
    ),
    Mutant(
        "sink-filter-dead-letters-tenant",
        5,
        "the sink's delete by filter removes every tenant's dead letters of the family",
        (
            Patch(
                "sinks/writer.py",
                "    WHERE dl.tenant = %(tenant)s AND dl.family = %(family)s\n",
                "    WHERE dl.family = %(family)s\n",
            ),
        ),
        ("tests/integration/test_tenants.py",),
    ),
    Mutant(
        "sink-write-backs-unacknowledged",
        4,
        "the sink's write-back tombstones return before Kafka acknowledged them",
        (
            Patch(
                "sinks/republish.py",
                "        if self._producer.flush(self._timeout) or errors:\n",
                "        if errors:\n",
            ),
        ),
        ("tests/runtime/test_producer_config.py",),
    ),
    Mutant(
        "sink-commit-first",
        1,
        "the sink commits a poll's offsets before its database transactions commit",
        (
            Patch(
                "sinks/consumer.py",
                "                        future = writer.submit(self._write_until_durable,",
                "                        commit_soon(consumer, batch.offsets())\n"
                "                        future = writer.submit(self._write_until_durable,",
            ),
        ),
        ("tests/sinks/test_consumer.py",),
    ),
    Mutant(
        "door-inflight-bound",
        6,
        "the door no longer bounds the bytes waiting for Kafka",
        (
            Patch(
                "ingest/publish.py",
                "        if self.inflight_bytes and self.inflight_bytes + size > self._limit:\n",
                "        if False:\n",
            ),
        ),
        ("tests/ingest/test_publish.py",),
    ),
    Mutant(
        "body-declared-length",
        6,
        "a request holds the body budget for the Content-Length it declares, not what it sent",
        (
            Patch(
                "producer_api/errors.py",
                "        request[BODY_HOLD_NAME] = hold\n",
                "        request[BODY_HOLD_NAME] = hold\n"
                "        hold.take(request.content_length or 0)\n",
            ),
        ),
        ("tests/integration/test_limits.py",),
    ),
    Mutant(
        "body-min-rate",
        6,
        "a body may trickle in at any rate until the request timeout",
        (
            Patch(
                "producer_api/content.py",
                "rate, grace = settings.min_body_bytes_per_second,",
                "rate, grace = 0.0,",
            ),
        ),
        ("tests/integration/test_limits.py",),
    ),
    Mutant(
        "body-tenant-share",
        6,
        "one tenant's keys together may hold the whole body budget",
        (
            Patch(
                "producer_api/ratelimit.py",
                "            if ours > hold.bytes and ours + size > self._per_tenant:\n",
                "            if False:\n",
            ),
        ),
        ("tests/producer_api/test_ratelimit.py",),
    ),
    Mutant(
        "tenant-event-budget",
        6,
        "a tenant's keys each spend their own event budget, none the tenant's",
        (
            Patch(
                "producer_api/ratelimit.py",
                '            await self._admit(self._tenant_events, f"tenant:{tenant}", count)\n',
                "            pass\n",
            ),
        ),
        ("tests/producer_api/test_ratelimit.py",),
    ),
    Mutant(
        "csv-event-budget",
        6,
        "a CSV upload is not charged to the event budget",
        (
            Patch(
                "producer_api/families/datahub_csv.py",
                "await core_of(request).admit(principal.prefix, row_count,",
                "(lambda *_a, **_k: asyncio.sleep(0))(principal.prefix, row_count,",
            ),
        ),
        ("tests/integration/test_limits.py",),
    ),
    Mutant(
        "too-many-items",
        6,
        "an array past the event cap is decoded item by item before it is refused",
        (
            Patch(
                "ingest/entry.py",
                "and too_many_items(body.data, options.max_events):",
                "and too_many_items(body.data, options.max_events) and False:",
            ),
        ),
        ("tests/ingest/test_entry.py",),
    ),
    Mutant(
        "connection-cap",
        6,
        "the API accepts every connection, whatever it holds already",
        (
            Patch(
                "producer_api/connections.py",
                "if self.open >= self.total or self.by_address[address] >= self.per_address:",
                "if False:",
            ),
        ),
        ("tests/producer_api/test_connections.py", "tests/integration/test_limits.py"),
    ),
    Mutant(
        "api-writes-dead-letters",
        5,
        "the API's role may delete dead letters, which only the sink does (least privilege)",
        (
            Patch(
                "sinks/migrations/0013_least_privilege.sql",
                "GRANT UPDATE ON dead_letters TO sluice_api;\n",
                "GRANT UPDATE, DELETE ON dead_letters TO sluice_api;\n",
            ),
        ),
        ("tests/integration/test_tenants.py",),
    ),
    Mutant(
        "key-secret-rehash",
        5,
        "a key verified with a retired secret stays on it, so the secret can never go",
        (
            Patch(
                "producer_api/auth.py",
                "if stored.secret_id != self.secrets.current_id:",
                "if False:",
            ),
        ),
        ("tests/integration/test_key_secrets.py",),
    ),
    Mutant(
        "dead-letter-search-window",
        6,
        "a dead-letter q search reads every raw body of the tenant",
        (
            Patch(
                "producer_api/dead_letters.py",
                "    if text is not None and text_window > 0:\n",
                "    if False:\n",
            ),
        ),
        ("tests/integration/test_dead_letters.py",),
    ),
    Mutant(
        "prune-ignores-ingest-raw",
        4,
        "deletion records are pruned while ingest.raw may still hold an older version",
        (
            Patch(
                "sinks/migrations/0022_prune_deletions.sql",
                "        WHERE deleted_at < before AND (version >> 20) < below_offset\n",
                "        WHERE deleted_at < before\n",
            ),
        ),
        ("tests/integration/test_pruning.py",),
    ),
    Mutant(
        "prune-ignores-retention",
        4,
        "deletion records are pruned while events.dlq may still hold a dead letter",
        (
            Patch(
                "sinks/migrations/0022_prune_deletions.sql",
                "        WHERE deleted_at < before AND (version >> 20) < below_offset\n",
                "        WHERE (version >> 20) < below_offset\n",
            ),
        ),
        ("tests/integration/test_pruning.py",),
    ),
    Mutant(
        "prune-covered-filter-by-time",
        4,
        "a delete by filter is pruned by a newer one that covers less time",
        (
            Patch(
                "sinks/writer.py",
                "  AND (n.time_to IS NULL OR (o.time_to IS NOT NULL AND o.time_to <= n.time_to))\n",
                "",
            ),
        ),
        ("tests/sinks/test_filter_pruning.py", "tests/sinks/test_newest_wins_machine.py"),
    ),
    Mutant(
        "retention-unbounded-steps",
        6,
        "an expiry deletes everything past its cut in one step",
        (
            Patch(
                "store/retention.py",
                "    if found is None:\n        return cut\n",
                "    if True:\n        return cut\n",
            ),
        ),
        ("tests/integration/test_retention.py",),
    ),
)


def _apply(patch: Patch) -> tuple[Path, bytes]:
    path = ROOT / patch.path
    original = path.read_bytes()
    text = original.decode()
    count = text.count(patch.old)
    if count != 1:
        raise SystemExit(
            f"mutant patch for {patch.path} matches {count} times, not once: the code moved; "
            f"update tests/mutants/run.py\n--- looked for:\n{patch.old}"
        )
    path.write_text(text.replace(patch.old, patch.new))
    return path, original


def _clean(paths: set[str]) -> None:
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *sorted(paths)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if dirty.strip():
        raise SystemExit(f"refusing to mutate files with uncommitted changes:\n{dirty}")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_mutant(mutant: Mutant) -> tuple[str, float]:
    """Apply `mutant`, run its tests, restore the sources; KILLED or SURVIVED."""
    restore: list[tuple[Path, bytes]] = []
    began = time.monotonic()
    try:
        for patch in mutant.patches:
            restore.append(_apply(patch))
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no mutant bytecode left behind
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "-m", "not slow", *mutant.tests],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        for path, original in reversed(restore):
            path.write_bytes(original)
    seconds = time.monotonic() - began
    if done.returncode == 1:
        lines = done.stdout.splitlines()
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        why = next((line[1:].strip() for line in lines if line.startswith("E ")), "")
        test = failed[0].split(" - ")[0] if failed else "a failure"
        return f"KILLED by {test}\n{'':36}{why[:160]}", seconds
    if done.returncode == 0:
        return "SURVIVED", seconds
    raise SystemExit(
        f"{mutant.name}: pytest exited {done.returncode} (not a test failure)\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for m in MUTANTS:
            print(f"{m.name:34} invariant {m.invariant}: {m.what}  [{' '.join(m.tests)}]")
        return 0
    chosen = [m for m in MUTANTS if not argv or m.name in argv]
    unknown = set(argv) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"no such mutant: {', '.join(sorted(unknown))}")
    _clean({p.path for m in chosen for p in m.patches})
    signal.signal(signal.SIGTERM, _terminate)
    survivors = []
    for mutant in chosen:
        verdict, seconds = run_mutant(mutant)
        print(
            f"{mutant.name:34} invariant {mutant.invariant}  {verdict}  ({seconds:.0f} s)",
            flush=True,
        )
        if verdict == "SURVIVED":
            survivors.append(mutant.name)
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed")
    if survivors:
        print(f"SURVIVED: {', '.join(survivors)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""How fast each console page first shows its data in a real browser, with 1M events and
100k dead letters stored: `make bench-console-browser` (`python -m bench.console_browser`).

The data and the API are `bench.console_views`'s (one tenant's rows generated inside
PostgreSQL, one API process). Debian's chromium, driven by Playwright, signs in once; then
for each page, over `--runs` rounds, it leaves for an empty page and times from setting
the page's address to the moment its data is on screen (the element that holds it is
visible): the API's calls, the JSON's parsing and the page's drawing together. The cold
load (`/console` fetched, its modules loaded, the session checked, the overview drawn) is
timed in a new browser context each round. Results go to
`bench-results/console-browser-<time>.{json,md}`.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from bench.console_views import _probe_ids, load
from bench.report import write_named
from bench.run import free_port
from runtime.settings import Settings, load_settings
from runtime.topic_admin import ensure_topics
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.stack import ProcessStack

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def views(ids: dict[str, str]) -> dict[str, tuple[str, list[str], bool]]:
    """page → (address, the selectors of its data, whether it needs the admin key)."""
    event = f"#/lookup?event={ids['event']}&family=native"
    request = f"#/lookup?request={ids['request']}"
    return {
        "overview": ("#/overview", [".overview .stats"], False),
        "dead letters (groups and first 50)": (
            "#/dead-letters?status=pending", ["table.groups tbody tr", "tr[data-id]"], False),
        "one dead letter": (f"#/dead-letter/{ids['dead_letter']}", ["pre.body"], False),
        "event lookup": (event, [".timeline li"], False),
        "request lookup": (request, [".lookup-result section.card"], False),
        "keys": ("#/keys", ["tr[data-prefix]"], True),
    }  # fmt: skip


def _signed_in(browser: Any, base_url: str, key: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{base_url}/console")
    page.fill("#key", key)
    page.press("#key", "Enter")
    page.wait_for_selector(".overview .stats", timeout=60_000)
    return page


def _time_view(page: Any, address: str, selectors: list[str]) -> float:
    page.evaluate("location.hash = '#/nothing'")
    page.wait_for_selector("#page .note.error")
    began = time.perf_counter()
    page.evaluate(f"location.hash = {json.dumps(address)}")
    for selector in selectors:
        page.locator(selector).first.wait_for(state="visible", timeout=60_000)
    return (time.perf_counter() - began) * 1000


def measure(base_url: str, key: str, admin: str, ids: dict[str, str], runs: int) -> dict[str, Any]:
    """Milliseconds to each page's data on screen, p50 and max over `runs` rounds."""
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        tabs = {
            False: _signed_in(browser, base_url, key),
            True: _signed_in(browser, base_url, admin),
        }
        for _ in range(runs):
            for name, (address, selectors, as_admin) in views(ids).items():
                took = _time_view(tabs[as_admin], address, selectors)
                samples.setdefault(name, []).append(took)
            cold = browser.new_context(storage_state=tabs[False].context.storage_state())
            began = time.perf_counter()
            page = cold.new_page()
            page.goto(f"{base_url}/console#/overview")
            page.wait_for_selector(".overview .stats", state="visible", timeout=60_000)
            samples.setdefault("cold load (page, modules, session, overview)", []).append(
                (time.perf_counter() - began) * 1000
            )
            cold.close()
        browser.close()
    return {name: {"p50": round(statistics.median(s), 1), "max": round(max(s), 1)}
            for name, s in samples.items()}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Console pages in Chromium, {result['events']:,} events and "
             f"{result['dead_letters']:,} dead letters stored, {result['runs']} runs", "",
             "| page | ms p50 | ms max |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {p} | {v['p50']} | {v['max']} |" for p, v in result["pages"].items()]
    return "\n".join(lines)


@click.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--dead-letters", "dead_letters", default=100_000, show_default=True)
@click.option("--runs", default=7, show_default=True)
@click.option("--results-dir", default="bench-results", show_default=True, type=Path)
def main(events: int, dead_letters: int, runs: int, results_dir: Path) -> None:
    """Load, start an API, time each console page in Chromium, write the figures."""
    state = Path(load_settings().state_dir).resolve() / "bench-console-browser"
    tag = uuid.uuid4().hex[:8]
    tenant = f"console-{tag}"
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        migrate(database)
        settings = replace(
            Settings(), kafka_bootstrap_servers=kafka, database_url=database,
            topic_prefix=f"console-{tag}.", http_port=free_port(),
        )  # fmt: skip
        ensure_topics(settings)
        loaded = load(database, tenant, events, dead_letters)
        print(f"loaded in seconds: {loaded}")
        key = create_key(settings, tenant, ["events:read", "deadletters:read"])
        admin = create_key(settings, tenant, ["admin"])
        api = ProcessStack(settings, state / "logs")
        api.start(roles=("api",))
        stack.callback(api.stop)
        api.wait_ready(timeout=120)
        ids = _probe_ids(database, tenant, events, dead_letters)
        figures = measure(api.base_url, key, admin, ids, runs)
    result = {"events": events, "dead_letters": dead_letters, "runs": runs, "loaded": loaded,
              "pages": figures}  # fmt: skip
    write_named(results_dir, "console-browser", result, markdown(result))


if __name__ == "__main__":
    main()

"""Layers point one way (STYLE.md): the import-linter contracts in pyproject.toml hold.

bench, then the `sluice` CLI, on top; `producer_api | streams | sinks` independent of each
other; then `store`, `runtime` and `schemas`. A layer imports only the layers below it,
and no package's modules import each other in a cycle. `make lint` runs the same check;
this test keeps it in the suite. The linter reads import statements from the source
(grimp), so no service is reached.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is not installed (pip install -e '.[dev]')"
    return found


def test_imports_keep_the_layering_contracts() -> None:
    done = subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_the_ingest_entry_publishes() -> None:
    """One ingest entry (docs/design.md): no route, family or core sends the door's
    messages to Kafka by itself; each hands its request (or, the replay core, its plan)
    to `ingest.entry.ingest`. The stream and the sink have producers of their own."""
    import ast

    callers = []
    for package in ("producer_api", "ingest", "store", "sluice"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "publish"):  # fmt: skip
                    callers.append(str(path.relative_to(ROOT)))
    assert callers and set(callers) == {"ingest/entry.py"}, sorted(set(callers))

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

"""The docs say what the code does: every setting is documented with its default in
docs/operations.md and nothing else is, and docs/api.md lists exactly the routed operations."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from producer_api.app import create_app
from producer_api.openapi import routed_operations
from runtime.settings import Settings, env_var, load_settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"
_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", re.MULTILINE)
_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")


def _settings_table() -> dict[str, str]:
    """variable → default cell of the table under `## Settings` in operations.md."""
    text = (DOCS / "operations.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return {name: cell.strip() for name, cell in _ROW.findall(section)}


def _raw_default(cell: str) -> str:
    if cell.startswith("unset"):
        return ""
    found = re.match(r"`([^`]*)`", cell)
    assert found, f"default cell {cell!r}: write `value` or unset"
    return found.group(1)


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    documented = set(_settings_table())
    expected = {env_var(f.name) for f in fields(Settings)}
    assert documented - expected == set(), "documented in operations.md but not in Settings"
    assert expected - documented == set(), "in Settings but not documented in operations.md"


@pytest.mark.parametrize("field_name", [f.name for f in fields(Settings)])
def test_documented_defaults_are_the_defaults(field_name: str) -> None:
    variable = env_var(field_name)
    raw = _raw_default(_settings_table()[variable])
    read = getattr(load_settings({variable: raw}), field_name)
    assert read == getattr(Settings(), field_name), f"{variable}: operations.md says {raw!r}"


def _documented_routes(path: Path) -> set[tuple[str, str]]:
    return {(method.lower(), route) for method, route in _ROUTE.findall(path.read_text())}


def test_api_md_lists_exactly_the_routed_operations() -> None:
    routed = routed_operations(create_app(Settings()))
    documented = _documented_routes(DOCS / "api.md")
    assert documented - routed == set(), "in docs/api.md but not routed"
    assert routed - documented == set(), "routed but not in docs/api.md"


def test_readme_names_only_routes_that_exist() -> None:
    """Routes in the README's dialect table are relative to the row's base path."""
    named = set()
    for line in README.read_text().splitlines():
        cells = line.split("|")
        base = cells[2].strip().strip("`") if len(cells) > 3 and line.startswith("| ") else ""
        base = base if base.startswith("/") else ""
        for method, route in _ROUTE.findall(line):
            full = route if route.startswith(base + "/") else base + route
            named.add((method.lower(), full))
    assert named, "the README names routes"
    assert named - routed_operations(create_app(Settings())) == set()


def test_docs_link_to_files_that_exist() -> None:
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_ci_runs_only_what_the_readme_tells_a_person_to_run() -> None:
    """Each command of `.ci/run` is one the README names, in `make test` then
    `make test-faults` order (the fault suite after the default suite)."""
    script = (DOCS.parent / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip().startswith("make ")]
    assert commands == ["make test", "make test-faults"], commands
    readme = README.read_text()
    for command in commands:
        assert f"`{command}`" in readme or f"\n{command} " in readme, command

"""The schema is ready to be sharded by tenant (Citus): checked on the migrated catalog.

Every table of the schema is classified in `store.layout` (tenant, reference or local);
a table in none of the lists, or a listed table that does not exist, fails. Every tenant
table has a `tenant` column, and its primary key, each unique constraint and every other
index lead with it, and a foreign key between two tenant tables carries the tenant on
both sides, so each tenant's rows of every table sit on one node and a key that is unique
per shard is unique everywhere. A reference or local table references no tenant table, and a
tenant table no local one (Citus refuses such foreign keys; reference tables are fine).

Below the catalog, a static check of the SQL text in `store/` and `sinks/`: a statement
that names two tenant tables (or one twice) matches the tenant of each (see
`unmatched_references`), so no statement joins across tenants.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from store.layout import LOCAL_TABLES, REFERENCE_TABLES, TENANT_TABLES, citus_statements

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

_INDEXES = """
SELECT i.relname, x.indisprimary, x.indisunique, x.indkey[0] AS first,
       (SELECT attnum FROM pg_attribute WHERE attrelid = t.oid AND attname = 'tenant'
          AND NOT attisdropped) AS tenant
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relname = %s
"""

_FOREIGN_KEYS = """
SELECT k.conname, t.relname AS child, r.relname AS parent,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n
             ORDER BY u.i)::text[] AS child_columns,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n
             ORDER BY u.i)::text[] AS parent_columns
FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE k.contype = 'f' AND n.nspname = current_schema()
"""


@pytest.fixture(scope="module")
def catalog(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in conn.execute(_TABLES).fetchall()}


def test_every_table_is_classified_once(catalog: psycopg.Connection[Any]) -> None:
    listed = [*TENANT_TABLES, *REFERENCE_TABLES, *LOCAL_TABLES]
    assert len(listed) == len(set(listed)), "a table is in two lists of store/layout.py"
    present = tables(catalog)
    assert present - set(listed) == set(), "classify these tables in store/layout.py"
    assert set(listed) - present == set(), "store/layout.py lists tables that do not exist"


def layout_violations(conn: psycopg.Connection[Any], table: str) -> list[str]:
    """What keeps `table` from being distributed by tenant (empty when nothing does)."""
    found = []
    rows = conn.execute(_INDEXES, (table,)).fetchall()
    tenant = conn.execute(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attname = 'tenant' AND NOT attisdropped",
        (table,),
    ).fetchone()
    if tenant is None or not tenant[0]:
        found.append(f"{table} has no NOT NULL tenant column")
    for name, primary, unique, first, tenant_attnum in rows:
        if first != tenant_attnum:
            kind = "primary key" if primary else "unique index" if unique else "index"
            found.append(f"{table}: {kind} {name} does not lead with tenant")
    return found


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_tenant_table_keys_and_indexes_lead_with_tenant(
    catalog: psycopg.Connection[Any], table: str
) -> None:
    assert layout_violations(catalog, table) == []


def foreign_key_violations(
    conn: psycopg.Connection[Any], tenant_tables: Collection[str] = TENANT_TABLES
) -> list[str]:
    found = []
    for name, child, parent, child_columns, parent_columns in conn.execute(_FOREIGN_KEYS):
        pairs = set(zip(child_columns, parent_columns, strict=True))
        if child in tenant_tables and parent in tenant_tables:
            if ("tenant", "tenant") not in pairs:
                found.append(f"{child}.{name} → {parent} does not match tenant to tenant")
        elif parent in tenant_tables:
            found.append(f"{child}.{name}: a non-tenant table references tenant table {parent}")
        elif child in tenant_tables and parent in LOCAL_TABLES:
            found.append(f"{child}.{name}: a tenant table references local table {parent}")
    return found


def test_foreign_keys_between_tenant_tables_carry_the_tenant(
    catalog: psycopg.Connection[Any],
) -> None:
    assert foreign_key_violations(catalog) == []


def test_the_checks_see_a_table_that_breaks_the_layout(
    catalog: psycopg.Connection[Any],
) -> None:
    """The catalog checks find each kind of fault (a table made here, then dropped), so a
    passing run above means the schema holds, not that the queries saw nothing."""
    with catalog.transaction(force_rollback=True):
        catalog.execute(
            "CREATE TABLE layout_probe (id uuid PRIMARY KEY, tenant text NOT NULL,"
            " at timestamptz, UNIQUE (tenant, id))"
        )
        catalog.execute("CREATE INDEX layout_probe_at ON layout_probe (at)")
        catalog.execute(
            "CREATE TABLE layout_probe_child (tenant text NOT NULL, id uuid"
            " REFERENCES layout_probe (id), PRIMARY KEY (tenant, id))"
        )
        assert layout_violations(catalog, "layout_probe") == [
            "layout_probe: primary key layout_probe_pkey does not lead with tenant",
            "layout_probe: index layout_probe_at does not lead with tenant",
        ]
        assert "layout_probe" in tables(catalog)
        probes = {*TENANT_TABLES, "layout_probe", "layout_probe_child"}
        assert [v for v in foreign_key_violations(catalog, probes) if "probe" in v] == [
            "layout_probe_child.layout_probe_child_id_fkey → layout_probe does not match"
            " tenant to tenant"
        ]
        assert [v for v in foreign_key_violations(catalog, {"layout_probe"}) if "probe" in v] == [
            "layout_probe_child.layout_probe_child_id_fkey: a non-tenant table references"
            " tenant table layout_probe"
        ]


def test_the_citus_statements_in_the_design_doc_are_the_layouts() -> None:
    """docs/design.md's "Running on Citus" shows exactly `citus_statements()`, in order."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("\n## Running on Citus\n", 1)[1].split("\n## ", 1)[0]
    shown = [line for line in section.splitlines() if line.startswith("SELECT create_")]
    assert shown == citus_statements()


# The static check. Its limits, said plainly: it reads the SQL text of each string literal
# (an f-string's expressions and `sql.SQL(...).format` placeholders are opaque `{}`), finds
# the tenant tables a statement names after FROM, JOIN, USING, UPDATE or INTO, and asks of
# each a condition on its tenant: `alias.tenant = …`, `… = alias.tenant`, `alias.tenant IN`
# or a row `(alias.tenant, …)`; an unqualified `tenant =` or `(tenant, …)` counts for one
# unaliased name. A
# condition against a parameter (`d.tenant = %s`) counts: the store's functions take one
# tenant. It cannot see a condition hidden in a placeholder (write it out), and it does not
# parse SQL, so a name repeated as an alias in two scopes needs one condition per use.

_REFERENCE = re.compile(
    r"\b(?:FROM|JOIN|USING|UPDATE|INTO)\s+(?:ONLY\s+)?([a-z_][a-z0-9_]*)"
    r"(?:\s+(?:AS\s+)?([a-z_][a-z0-9_]*))?",
    re.IGNORECASE,
)
_KEYWORDS = {
    "where", "set", "on", "using", "join", "left", "right", "inner", "full", "cross",
    "natural", "lateral", "group", "order", "limit", "returning", "select", "values",
    "with", "and", "or", "for", "union", "having", "as", "default", "do", "window",
}  # fmt: skip


def references(statement: str) -> list[tuple[str, str | None]]:
    """(tenant table, alias or None) for each tenant table `statement` names."""
    out = []
    for table, alias in _REFERENCE.findall(statement):
        if table.lower() in TENANT_TABLES:
            named = alias if alias and alias.lower() not in _KEYWORDS else None
            out.append((table.lower(), named))
    return out


def _conditions(statement: str, qualifier: str) -> int:
    q = re.escape(qualifier)
    return len(re.findall(
        rf"\b{q}\.tenant\s*(?:=|IN\b)|=\s*{q}\.tenant\b|\(\s*{q}\.tenant\s*,", statement,
        re.IGNORECASE,
    ))  # fmt: skip


def unmatched_references(statement: str) -> list[str]:
    """The tenant-table references of a statement naming two or more that no condition
    ties to a tenant (empty for a statement naming fewer)."""
    refs = references(statement)
    if len(refs) < 2:
        return []
    missing = []
    uses: dict[str, int] = {}
    for table, alias in refs:
        key = alias or table
        uses[key] = uses.get(key, 0) + 1
    bare = len(re.findall(r"(?<![.\w])tenant\s*(?:=|IN\b)|\(\s*tenant\s*,", statement, re.I))
    for key, count in uses.items():
        found = _conditions(statement, key)
        if key in TENANT_TABLES and not any(a == key for _, a in refs):
            taken = min(bare, count - found) if found < count else 0
            bare -= taken
            found += taken
        if found < count:
            missing.append(f"{key} ({count} use(s), {found} tenant condition(s))")
    return missing


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def sql_literals(package: str) -> Iterator[tuple[str, int, str]]:
    """(file, line, text) of every string literal in `package`'s modules."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        inside_joined = {
            id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values
        }
        for node in ast.walk(tree):
            text = None if id(node) in inside_joined else _literal_text(node)
            if text is not None:
                yield str(path.relative_to(ROOT)), node.lineno, text


@pytest.mark.parametrize("package", ["store", "sinks"])
def test_no_statement_joins_tenant_tables_without_matching_the_tenant(package: str) -> None:
    offenders = [
        f"{file}:{line}: {missing}"
        for file, line, text in sql_literals(package)
        if (missing := unmatched_references(text))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("statement", "unmatched"),
    [
        ("SELECT 1 FROM deletions d LEFT JOIN deletion_steps s ON s.deletion_id = d.deletion_id"
         " WHERE d.tenant = %s", ["s (1 use(s), 0 tenant condition(s))"]),
        ("SELECT 1 FROM deletions d LEFT JOIN deletion_steps s ON s.tenant = d.tenant"
         " AND s.deletion_id = d.deletion_id WHERE d.tenant = %s", []),
        ("UPDATE dead_letters SET status = 'x' WHERE dead_letter_id IN"
         " (SELECT dead_letter_id FROM dead_letters WHERE tenant = %s)",
         ["dead_letters (2 use(s), 1 tenant condition(s))"]),
        ("UPDATE dead_letters SET status = 'x' WHERE tenant = %s AND dead_letter_id IN"
         " (SELECT dead_letter_id FROM dead_letters WHERE tenant = %s)", []),
        ("DELETE FROM dead_letters dl USING doomed WHERE dl.dead_letter_id = doomed.id AND"
         " doomed.id IN (SELECT dl.dead_letter_id FROM dead_letters dl WHERE dl.tenant = %s)",
         ["dl (2 use(s), 1 tenant condition(s))"]),
        ("DELETE FROM dead_letters WHERE (tenant, dead_letter_id) IN (SELECT dl.tenant,"
         " dl.dead_letter_id FROM dead_letters dl WHERE dl.tenant = %s)", []),
        ("DELETE FROM dead_letters WHERE (tenant, dead_letter_id) IN (SELECT dl.tenant,"
         " dl.dead_letter_id FROM dead_letters dl WHERE dl.family = %s)",
         ["dl (1 use(s), 0 tenant condition(s))"]),
        ("SELECT 1 FROM events e WHERE e.tenant = %s", []),
    ],
)  # fmt: skip
def test_the_static_check_tells_a_matched_join_from_an_unmatched_one(
    statement: str, unmatched: list[str]
) -> None:
    assert unmatched_references(statement) == unmatched

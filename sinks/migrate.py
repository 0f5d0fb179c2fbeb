"""Apply the versioned SQL migrations in `sinks/migrations/` (yoyo-migrations)."""

from __future__ import annotations

from importlib import resources

from yoyo import get_backend, read_migrations


def yoyo_url(database_url: str) -> str:
    """yoyo names the psycopg 3 driver in the URL scheme."""
    for scheme in ("postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme) :]
    return database_url


def migrate(database_url: str) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date)."""
    folder = str(resources.files("sinks").joinpath("migrations"))
    migrations = read_migrations(folder)
    backend = get_backend(yoyo_url(database_url))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]

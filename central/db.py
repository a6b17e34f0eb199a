"""The central store's PostgreSQL database: deferred, pooled, migrated forward."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playhouse.migrations import Runner
from playhouse.pool import PooledPostgresqlDatabase

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

database = PooledPostgresqlDatabase(None)


def init_db(dsn: str, schema: str = "", migrate: bool = True, max_connections: int = 8) -> PooledPostgresqlDatabase:
    """Bind to `postgresql://user@host:port/dbname`; `schema` isolates (tests, several chains)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError("central_dsn must look like postgresql://user@host:5432/dbname")
    options = f"-c search_path={schema}" if schema else None
    database.init(parts.path.strip("/"), host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                  user=parts.username or "postgres", password=parts.password, options=options,
                  max_connections=max_connections, stale_timeout=300, timeout=10)
    if schema:
        with database.connection_context():
            database.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    if migrate:
        with database.connection_context():
            Runner(database, directory=str(MIGRATIONS_DIR), schema=schema or None).up()
    return database

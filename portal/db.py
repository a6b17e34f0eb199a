"""The peewee database: deferred, initialised once per process by init_db(), migrated forward."""
from __future__ import annotations

from pathlib import Path

from peewee import SqliteDatabase
from playhouse.migrations import Runner

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Deferred: every process calls init_db() with its own path and pragmas.
# Every transaction is BEGIN IMMEDIATE: it takes the write lock when it begins, so two writers
# queue on busy_timeout. A deferred transaction that reads and then writes cannot upgrade its lock
# once another connection has committed since its snapshot: SQLite answers SQLITE_BUSY at once,
# whatever busy_timeout says (4 sign-ins in 10 failed that way with two visitors at a time).
# Reads therefore never run inside `atomic()`; they run in autocommit, where WAL never blocks them.
database = SqliteDatabase(None, lock_type="IMMEDIATE")

# synchronous=FULL in WAL mode fsyncs the log at each commit: an acknowledged lead survives a
# power cut. Writers that can afford to lose the last second (the collector) lower it per connection.
PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "synchronous": "full",
    "cache_size": -8000,
    "temp_store": "memory",
}


def init_db(path: str | Path, migrate: bool = True, **pragmas) -> SqliteDatabase:
    """Bind the shared database to a file and bring its schema up to date."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    database.init(str(path), pragmas={**PRAGMAS, **pragmas}, check_same_thread=False)
    if migrate:
        migrate_db()
    return database


def migration_runner() -> Runner:
    return Runner(database, directory=str(MIGRATIONS_DIR))


def migrate_db() -> list[str]:
    """Apply pending migrations; returns the names applied."""
    with database.connection_context():
        return migration_runner().up()

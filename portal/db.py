"""The peewee database: deferred, initialised once per process by init_db(), migrated forward.

Who writes what (one SQLite file, several processes; `WRITERS` is the record, and
tests/portal/test_writers.py checks it against what each process really writes):

- portal: visitors' sign-ins (lead, device, consent, authorization, outbox, audit), the panel's
  actions (settings, segments' definitions, managers, the privacy desk), the funnel counts.
- collector: devices, visits and runs in progress, each closed visit's outbox event.
- scheduler: segment membership (and the notes of who may have moved, segment_dirty, which
  SQLite's triggers write for every writer), retention purges, sync bookkeeping (outbox delivered, commands
  from the central store: erasures), backups (read only), sign-ins made visits (signin_run, visit,
  device: a pseudonym per visit of someone not followed).

Every write transaction is short and takes the write lock when it begins (see AppDatabase).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from peewee import OperationalError, SqliteDatabase
from playhouse.migrations import Runner

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# synchronous=FULL in WAL mode fsyncs the log at each commit: an acknowledged lead survives a
# power cut. Writers that can afford to lose the last second (the collector) lower it per connection.
PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "synchronous": "full",
    "cache_size": -8000,
    "temp_store": "memory",
    # The WAL is checkpointed every 256 pages (1 MiB, SQLite's default is 4) and cut back to this
    # size after each checkpoint: on a small SD card a growing WAL is what fills the disk first.
    "wal_autocheckpoint": 256,
    "journal_size_limit": 1024 * 1024,
    # Deleted rows are overwritten with zeros: an erased person's or a purged pseudonym's bytes do
    # not linger in free pages (nor, copied from them, in the WAL or a backup).
    "secure_delete": 1,
}
SLOW_WAIT_SECONDS = 0.1

_ALL = "*"
WRITERS: dict[str, frozenset[str]] = {
    "portal": frozenset({_ALL}),  # the visitor journey, the panel (its owner's every action), the funnel
    # segment_dirty: written by SQLite's triggers on visit/device (migration 0021), for the segment job.
    "collector": frozenset({"device", "visit", "open_run", "outbox_event", "segment_dirty"}),
    # Segments and their sync bookkeeping; retention purges and erasures decided at the central
    # store (a person erased everywhere: lead, consents kept as proof, devices, visits, sessions).
    "scheduler": frozenset({"segment", "segment_member", "segment_dirty", "store_setting", "outbox_event", "audit_entry",
                            "export_log", "export_member",  # the export log's retention (portal/retention.py)
                            "lead", "consent", "device", "visit", "open_run", "authorization",
                            # contact claims and one-time codes: purged a day after, erased with a person
                            "contact_claim", "verification_code",
                            # activation (issue 17): sends, their log, vouchers issued with them
                            "activation_send", "send_attempt", "voucher", "automation",
                            # webhooks: the queue fed from the outbox, its delivery and what was announced
                            "webhook_delivery", "webhook_seen", "webhook_segment_member",
                            # name words: indexed by the name_index job, dropped by a trigger with a name
                            "lead_name_word",
                            # sign-in runs and the visits they become (portal/signin_visits.py)
                            "signin_run"}),
}


class DatabaseBusy(OperationalError):
    """The write lock could not be had within its timeout: try again in a moment."""


class LockStats:
    """Per-process counters of write transactions: how many, how many waited, how many gave up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.transactions = self.slow_waits = self.busy = 0
            self.max_wait = 0.0

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.transactions += 1
            if seconds >= SLOW_WAIT_SECONDS:
                self.slow_waits += 1
            self.max_wait = max(self.max_wait, seconds)

    def gave_up(self) -> None:
        with self._lock:
            self.busy += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"transactions": self.transactions, "slow_waits": self.slow_waits, "busy": self.busy,
                    "max_wait_ms": round(self.max_wait * 1000, 1)}


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED as the sqlite3 module words them."""
    text = str(exc).lower()
    return isinstance(exc, DatabaseBusy) or "database is locked" in text or "database table is locked" in text


def is_storage_fault(exc: BaseException) -> bool:
    """The file cannot grow or be written: SQLITE_FULL (a full disk) or SQLITE_IOERR."""
    text = str(exc).lower()
    return "database or disk is full" in text or "disk i/o error" in text


class AppDatabase(SqliteDatabase):
    """SQLite where every transaction begins IMMEDIATE, and a process's writers queue in order.

    A deferred transaction that reads and then writes cannot upgrade its lock once another
    connection has committed since its snapshot: SQLite answers SQLITE_BUSY at once, whatever
    busy_timeout says (4 sign-ins in 10 failed that way with two visitors at a time). BEGIN
    IMMEDIATE takes the write lock first, so writers wait on busy_timeout instead. Within one
    process the writers also queue on a mutex: a first-come queue instead of SQLite's sleeping
    retries, which left a few unlucky sign-ins waiting seconds. Reads never run inside `atomic()`;
    in autocommit, WAL never blocks them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, lock_type="IMMEDIATE", **kwargs)
        self.stats = LockStats()
        self.lock_wait = PRAGMAS["busy_timeout"] / 1000  # seconds; init_db() sets it with busy_timeout
        self._writer = threading.Lock()
        self._holding = threading.local()

    def begin(self, lock_type=None):
        started = time.monotonic()
        if not self._writer.acquire(timeout=self.lock_wait):
            self.stats.gave_up()
            raise DatabaseBusy("database is locked (writers of this process)")
        self._holding.held = True
        try:
            super().begin(lock_type)
        except OperationalError as exc:
            self._release()
            if is_busy(exc):
                self.stats.gave_up()
                raise DatabaseBusy(str(exc)) from exc
            raise
        except BaseException:
            self._release()
            raise
        self.stats.waited(time.monotonic() - started)

    def commit(self):
        try:
            return super().commit()
        finally:
            self._release()

    def rollback(self):
        try:
            conn = self._state.conn
            if conn is not None and not conn.in_transaction:
                return None  # SQLite already rolled back (SQLITE_FULL does): keep the original error
            return super().rollback()
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self._holding, "held", False):
            self._holding.held = False
            self._writer.release()


# Deferred: every process calls init_db() with its own path and pragmas.
database = AppDatabase(None)


def init_db(path: str | Path, migrate: bool = True, **pragmas) -> SqliteDatabase:
    """Bind the shared database to a file and bring its schema up to date."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pragmas = {**PRAGMAS, **pragmas}
    database.lock_wait = int(pragmas["busy_timeout"]) / 1000
    database.init(str(path), pragmas=pragmas, check_same_thread=False, timeout=database.lock_wait)
    if migrate:
        migrate_db()
        with database.connection_context():
            checkpoint()
    return database


def checkpoint() -> tuple[int, int, int]:
    """Copy the WAL into the database and truncate it (readers may hold it back): busy, log, copied."""
    return tuple(database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())


def migration_runner() -> Runner:
    return Runner(database, directory=str(MIGRATIONS_DIR))


def migrate_db() -> list[str]:
    """Apply pending migrations; returns the names applied."""
    with database.connection_context():
        return migration_runner().up()

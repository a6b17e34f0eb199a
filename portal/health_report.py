"""One health report for `footfall health` and the owner's panel page: disk, clock, backups, sync,
the sign-in journal, a restored database, and each process's heartbeat. `problems` lists what the
owner should act on, in words; an empty list is a healthy box."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import struct
from pathlib import Path

from portal import clock
from portal.i18n import translate
from portal.config import backups_dir, database_path
from portal.db import database
from portal.health import read_processes
from portal.journal import MAGIC, SLOT
from portal.recovery import backup_time, last_recovery

BACKUP_MAX_AGE = datetime.timedelta(hours=48)
PROCESSES = ("portal", "collector", "scheduler")


def journal_waiting(data_dir: Path) -> int:
    """Sign-ins waiting in the journal, from the slots' headers only (the panel asks on every page)."""
    try:
        with open(data_dir / "signin-journal.bin", "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            heads = [os.pread(fh.fileno(), 8, off) for off in range(0, size, SLOT)]
    except OSError:
        return 0
    return sum(1 for head in heads if len(head) == 8 and head[:4] == MAGIC and struct.unpack_from(">I", head, 4)[0] > 0)


def _sync() -> dict:
    row = database.execute_sql("SELECT value FROM store_setting WHERE key = 'sync.state'").fetchone()
    state = json.loads(row[0]) if row else {}
    pending, oldest = database.execute_sql(
        "SELECT count(*), min(created_at) FROM outbox_event WHERE delivered_at IS NULL").fetchone()
    last = database.execute_sql("SELECT max(delivered_at) FROM outbox_event").fetchone()[0]
    return {"pending_events": pending, "oldest_pending": oldest, "last_delivered": last,
            "failures": state.get("failures", 0), "last_error": state.get("error")}


def report(settings, now: datetime.datetime | None = None) -> dict:
    """The whole picture; reads only (safe while every other process writes)."""
    now = now or datetime.datetime.now()
    data_dir = Path(settings.data_dir)
    usage = shutil.disk_usage(database_path(settings).parent)
    floor = settings.disk_floor_mb * 1024 * 1024
    backups = sorted(backups_dir(settings).glob("footfall-*.db")) if backups_dir(settings).is_dir() else []
    newest = backup_time(backups[-1]) if backups else None
    with database.connection_context():
        sync = _sync()
    processes = read_processes(data_dir)
    recovery = last_recovery(database_path(settings))
    time_state = clock.state(data_dir)
    out = {
        "disk": {"free_bytes": usage.free, "total_bytes": usage.total, "floor_bytes": floor,
                 "database_bytes": database_path(settings).stat().st_size if database_path(settings).exists() else 0},
        "clock": time_state,
        "backup": {"count": len(backups), "newest": newest.isoformat() if newest else None},
        "sync": {"configured": bool(settings.central_url), **sync},
        "journal_waiting": journal_waiting(data_dir),
        "recovery": recovery.__dict__ if recovery else None,
        "processes": processes,
    }
    problems: list[tuple[str, dict]] = []  # (catalog key, values): the panel says them in its language
    if usage.free < floor:
        problems.append(("problem_disk_full", {"free": usage.free // 2**20, "floor": settings.disk_floor_mb}))
    if out["journal_waiting"]:
        problems.append(("problem_journal", {"count": out["journal_waiting"]}))
    if not time_state["synchronized"]:
        problems.append(("problem_clock_unsynchronized", {}))
    if time_state["behind_last_good"]:
        problems.append(("problem_clock_behind", {"now": time_state["now"], "last_good": time_state["last_good"]}))
    if newest is None or now - newest > BACKUP_MAX_AGE:
        problems.append(("problem_backup_old" if newest else "problem_backup_none", {}))
    if settings.central_url and sync["failures"]:
        problems.append(("problem_sync_failing", {"failures": sync["failures"], "pending": sync["pending_events"]}))
    if recovery is not None:
        problems.append(("problem_restored_lost_since" if recovery.lost_since else "problem_restored_all_lost",
                         {"at": recovery.at, "lost_since": recovery.lost_since}))
    for name, status in processes.items():
        if status.get("stopped"):
            continue
        if status["stale"]:
            problems.append(("problem_process_silent", {"name": name, "seconds": status["age_seconds"]}))
        elif not status.get("alive", True) and not status["stale"]:
            problems.append(("problem_process_failing", {"name": name}))
    out["problem_keys"] = problems
    out["problems"] = [translate(key, "en").format(**values) for key, values in problems]  # footfall health
    return out

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
    problems = []
    if usage.free < floor:
        problems.append(f"disk almost full: {usage.free // 2**20} MB free, below the {settings.disk_floor_mb} MB floor")
    if out["journal_waiting"]:
        problems.append(f"{out['journal_waiting']} sign-ins wait in the journal for room in the database")
    if not time_state["synchronized"]:
        problems.append("the clock is not synchronized (no NTP answer yet): new records carry the last good time")
    if time_state["behind_last_good"]:
        problems.append(f"the clock reads {time_state['now']}, before the last good time {time_state['last_good']}")
    if newest is None or now - newest > BACKUP_MAX_AGE:
        problems.append("no backup in the last 48 hours" if newest else "no backup yet")
    if settings.central_url and sync["failures"]:
        problems.append(f"sync to the central store failing ({sync['failures']} attempts), "
                        f"{sync['pending_events']} events waiting")
    if recovery is not None:
        lost = f" (records after {recovery.lost_since} were lost)" if recovery.lost_since else " (no sound backup: all records were lost)"
        problems.append(f"the database was damaged and restored on {recovery.at}{lost}")
    for name, status in processes.items():
        if status.get("stopped"):
            continue
        if status["stale"]:
            problems.append(f"{name} has not reported for {status['age_seconds']} s")
        elif not status.get("alive", True) and not status["stale"]:
            problems.append(f"{name} fails its liveness check")
    out["problems"] = problems
    return out

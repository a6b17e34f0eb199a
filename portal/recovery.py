"""A damaged database at start: moved aside, the newest sound backup restored, the owner told.

SD cards lose pages to power cuts and wear. Every long-running process calls ensure_sound() before
it opens the database; one of them (under a file lock) does the work, the others find it done.
What happened is kept in `<data_dir>/recovery.json` for the panel, `footfall health` and the log:
when, which backup, and the period whose records were lost (from the backup to the damage).
"""
from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BACKUP_GLOB = "footfall-*.db"


@dataclass(frozen=True)
class Recovery:
    at: str
    damaged: str            # where the damaged file was moved
    restored_from: str | None  # the backup's file name, None when no backup was sound
    lost_since: str | None  # records written after this time (the backup's) are lost
    reason: str


def check(path: Path) -> str:
    """'ok', or what SQLite says is wrong with the file."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = "; ".join(r[0] for r in rows[:3])
    return "ok" if result == "ok" else result


def backup_time(backup: Path) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(backup.stem, "footfall-%Y%m%d-%H%M%S")
    except ValueError:
        return None


def _newest_sound_backup(folder: Path) -> Path | None:
    for candidate in sorted(folder.glob(BACKUP_GLOB), reverse=True):
        if check(candidate) == "ok":
            return candidate
        logger.error("backup %s is damaged too; trying an older one", candidate.name)
    return None


def ensure_sound(path: str | os.PathLike, backups: str | os.PathLike) -> Recovery | None:
    """Check the database; if damaged, set it aside and restore the newest sound backup."""
    path, backups = Path(path), Path(backups)
    if not path.exists():
        return None
    lock_path = path.with_name(".recovery.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process repairs; the others wait, then find it sound
        verdict = check(path)
        if verdict == "ok":
            return None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        damaged = path.with_name(f"{path.name}.damaged-{stamp}")
        logger.critical("database %s is damaged (%s): moving it to %s", path, verdict, damaged.name)
        os.replace(path, damaged)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.replace(side, Path(str(damaged) + suffix))
        backup = _newest_sound_backup(backups) if backups.is_dir() else None
        if backup is not None:
            tmp = path.with_name(path.name + ".restoring")
            shutil.copyfile(backup, tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            when = backup_time(backup)
            logger.critical("restored %s from backup %s: records after %s are lost", path.name, backup.name, when)
        else:
            logger.critical("no sound backup: starting with an empty database")
        recovery = Recovery(at=datetime.datetime.now().isoformat(timespec="seconds"), damaged=damaged.name,
                            restored_from=backup.name if backup else None,
                            lost_since=(backup_time(backup).isoformat() if backup and backup_time(backup) else None),
                            reason=verdict[:200])
        path.with_name("recovery.json").write_text(json.dumps(asdict(recovery)))
        return recovery


def last_recovery(database: str | os.PathLike) -> Recovery | None:
    """What the last repair of this database did, for the panel and `footfall health`."""
    record = Path(database).with_name("recovery.json")
    try:
        return Recovery(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None

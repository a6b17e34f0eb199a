"""Time on a box without a battery clock: a Raspberry Pi boots in the past until NTP answers.

The last known good time is kept on disk (`<data_dir>/clock.json`), written by each heartbeat
while the kernel says its clock is synchronized (adjtimex(2): anything but TIME_ERROR). Every
process loads it at start as a floor: `models.utcnow()` never returns a time before it. A record
written while the clock reads earlier carries the floor instead and is flagged (consents have
`clock_suspect`, audit entries a `clock` detail), so nothing is ever dated from before a moment
that has already been seen.
"""
from __future__ import annotations

import ctypes
import datetime
import json
import logging
import os
import threading
from pathlib import Path

from portal.core.times import system_utcnow as _now  # the system clock; utcnow() below adds the floor

logger = logging.getLogger(__name__)

FILE = "clock.json"
# No clock that reads before this is right: a Pi boots at 1970 or at its last saved time.
PLAUSIBLE_FROM = datetime.datetime(2026, 1, 1)
_TIME_ERROR = 5
_lock = threading.Lock()
_floor: datetime.datetime | None = None
clamped = 0  # how many times this process dated something with the floor instead of its clock

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc
    _libc = None


def synchronized() -> bool:
    """True when the kernel's clock is disciplined by NTP (or was set and kept since)."""
    if _libc is None:
        return False
    timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    return _libc.adjtimex(timex) not in (-1, _TIME_ERROR)


def last_good(data_dir: str | os.PathLike) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(json.loads((Path(data_dir) / FILE).read_text())["last_good"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_floor(data_dir: str | os.PathLike) -> datetime.datetime | None:
    """At start: nothing this process writes will be dated before the last good time."""
    global _floor
    with _lock:
        _floor = last_good(data_dir)
        if _floor is not None and _now() < _floor:
            logger.error("the clock reads %s, before the last good time %s: records carry the latter until NTP "
                         "sets the clock", _now().isoformat(" ", "seconds"), _floor.isoformat(" ", "seconds"))
    return _floor


def note_good(data_dir: str | os.PathLike, is_synchronized=synchronized) -> bool:
    """Record now as the last good time when the clock is synchronized and not behind the floor."""
    global _floor
    now = _now()
    if not is_synchronized() or (_floor is not None and now < _floor):
        return False
    path = Path(data_dir) / FILE
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_good": now.isoformat()}))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot keep the last good time: %s", exc.strerror)
        return False
    with _lock:
        _floor = now
    return True


def utcnow() -> tuple[datetime.datetime, bool]:
    """Naive UTC now, or the floor when the clock reads earlier; the flag says which."""
    global clamped
    now = _now()
    floor = _floor
    if floor is not None and now < floor:
        clamped += 1
        return floor, True
    return now, False


_EPOCH = datetime.datetime(1970, 1, 1)


def seq_now() -> int:
    """The lowest outbox seq an event may take now: microseconds since the epoch on the floored
    clock, so a database restored from a backup, whose last seq went back, still numbers its new
    events above every seq the lost database gave out (issue 18; portal.models.OutboxEvent)."""
    return (utcnow()[0] - _EPOCH) // datetime.timedelta(microseconds=1)


def state(data_dir: str | os.PathLike) -> dict:
    now, good = _now(), last_good(data_dir)
    return {"synchronized": synchronized(), "now": now.isoformat(timespec="seconds"),
            "last_good": good.isoformat(timespec="seconds") if good else None,
            "behind_last_good": bool(good and now < good), "implausible": now < PLAUSIBLE_FROM}


def known_wrong() -> bool:
    """This process's clock reads before the loaded floor or before any plausible date."""
    now = _now()
    return now < PLAUSIBLE_FROM or (_floor is not None and now < _floor)


def untrustworthy(data_dir: str | os.PathLike) -> bool:
    """The clock is known wrong: behind a time already seen, or before any plausible date."""
    time_state = state(data_dir)
    return time_state["behind_last_good"] or time_state["implausible"]

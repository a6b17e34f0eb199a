"""Times as Footfall stores and sends them: naive UTC.

The databases (SQLite on the appliance, PostgreSQL at the central store) hold naive UTC; the
wire carries ISO 8601 text. The appliance's processes date their records with
portal.models.utcnow, which never goes before the last good time (portal/clock.py); this module
is the plain system clock that it and the central store build on.
"""
from __future__ import annotations

import datetime
import time

_DAYS: dict[int, str] = {}
_HOURS_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}" for s in range(60)]


def system_utcnow() -> datetime.datetime:
    """Naive UTC from the system clock, as it reads (no floor)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def stamp(ts: float) -> str:
    """Epoch seconds as the naive-UTC text the database holds (as peewee writes it)."""
    sec = int(ts)
    micro = int((ts - sec) * 1_000_000 + 0.5)
    if micro == 1_000_000:
        sec, micro = sec + 1, 0
    day, rest = divmod(sec, 86400)  # the date through gmtime once per day, the time from tables
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        date = _DAYS[day] = time.strftime("%Y-%m-%d ", time.gmtime(day * 86400))
    minute, second = divmod(rest, 60)
    if micro:
        return f"{date}{_HOURS_MINUTES[minute]}{_SECONDS[second]}.{micro:06d}"
    return date + _HOURS_MINUTES[minute] + _SECONDS[second]


def epoch(text: str) -> float:
    """The naive-UTC text of `stamp` (or peewee) back to epoch seconds."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def event_time(value) -> datetime.datetime:
    """An ISO 8601 time as naive UTC; ValueError("time") for anything else, overflow included
    (0001-01-01T00:00:00+14:00 is before year 1 in UTC)."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("time")
    try:
        parsed = datetime.datetime.fromisoformat(value)
        return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):
        raise ValueError("time") from None

"""The law's clocks for data-subject requests and breaches: pure date arithmetic, no database.

Law 91/2025/QH15 and Decree 356/2025/ND-CP, as issue 15 reads them: a request is acknowledged
within 2 working days, completed within 15 days (20 when a processor is involved), and the
deadline may be extended once; a breach is reported to the authority within 72 hours. Working
days are Monday to Friday minus the public holidays the owner lists; calendar periods count
calendar days. The day a request arrives is not counted (day 1 is the next day) and a period ends
at the end of its last local day. Times in and out are naive UTC, as the database keeps them; the
local calendar is the one of `tz`: the store's zone (setting `store_time_zone`, read by `zone`), the
machine's own only when that setting is empty.
"""
from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass

ACK_WORKING_DAYS = 2
BREACH_REPORT = datetime.timedelta(hours=72)


@dataclass(frozen=True)
class Calendar:
    """Which local days are working days."""
    holidays: frozenset[datetime.date] = frozenset()
    tz: datetime.tzinfo | None = None

    def is_working(self, day: datetime.date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def local(self, utc: datetime.datetime) -> datetime.datetime:
        return utc.replace(tzinfo=datetime.timezone.utc).astimezone(self.tz)

    def end_of(self, day: datetime.date) -> datetime.datetime:
        """The last microsecond of a local day, as naive UTC."""
        end = datetime.datetime.combine(day, datetime.time.max)
        # A naive time's astimezone() reads it in the machine's zone (with that day's offset).
        local_end = end.replace(tzinfo=self.tz) if self.tz is not None else end.astimezone()
        return local_end.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def add_working_days(self, start: datetime.datetime, days: int) -> datetime.datetime:
        day = self.local(start).date()
        counted = 0
        while counted < days:
            day += datetime.timedelta(days=1)
            if self.is_working(day):
                counted += 1
        return self.end_of(day)

    def add_days(self, start: datetime.datetime, days: int) -> datetime.datetime:
        return self.end_of(self.local(start).date() + datetime.timedelta(days=days))


_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}\Z")


def zone(name: str) -> datetime.tzinfo | None:
    """The store's zone from its IANA name; None (the machine's) for an empty name; ValueError
    naming it when it is no zone (a path, a typo, a zone the system does not know)."""
    if not name:
        return None
    if not _ZONE.match(name) or len(name) > 64:
        raise ValueError(f"{name!r} is not a time zone name (such as Asia/Ho_Chi_Minh)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone this system knows (such as Asia/Ho_Chi_Minh)") from None


def to_utc(local: datetime.datetime, tz: datetime.tzinfo | None) -> datetime.datetime:
    """A naive local time of the store's zone (the machine's when None) as naive UTC."""
    aware = local.replace(tzinfo=tz) if tz is not None else local.astimezone()
    return aware.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def parse_holidays(text: str) -> frozenset[datetime.date]:
    """Comma-separated ISO dates (2026-01-01,2026-04-30); ValueError names the bad one."""
    days = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            days.add(datetime.date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(days)


@dataclass(frozen=True)
class Periods:
    """Completion periods in calendar days: the normal one, with a processor, and the extension."""
    complete: int = 15
    with_processor: int = 20
    extension: int = 15


@dataclass(frozen=True)
class Clock:
    ack_due: datetime.datetime
    due: datetime.datetime


def request_clock(received: datetime.datetime, calendar: Calendar, periods: Periods, processor: bool) -> Clock:
    days = periods.with_processor if processor else periods.complete
    return Clock(ack_due=calendar.add_working_days(received, ACK_WORKING_DAYS),
                 due=calendar.add_days(received, days))


def extended(due: datetime.datetime, calendar: Calendar, periods: Periods) -> datetime.datetime:
    return calendar.add_days(due, periods.extension)


def breach_due(detected: datetime.datetime) -> datetime.datetime:
    return detected + BREACH_REPORT

"""The dashboard's figures, aggregated in SQLite (never a full visit list in Python).

A person is a lead (across all their devices); anyone else is counted per device, which with
private (randomized) addresses makes anonymous figures estimates. Days and hours are the
appliance's local time.
"""
from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass

from portal import funnel
from portal.db import database
from portal.models import utcnow
from portal.policy_texts import MARKETING_PURPOSES

FREQUENCY_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 4, "3–4"), (5, 9, "5–9"), (10, 10**9, "10+"))
DWELL_BUCKETS = ((5, 15, "5–15"), (15, 30, "15–30"), (30, 60, "30–60"), (60, 120, "60–120"), (120, 10**9, "120+"))
_SUBJECT = "coalesce('l' || d.lead_id, 'd' || d.id)"
_LAN_VISIT = "v.passerby = 0 AND v.source = 'lan'"


@dataclass(frozen=True)
class Dashboard:
    visitors_today: int
    visitors_7: int
    visitors_30: int
    new_30: int
    returning_30: int
    visits_30: int
    per_day: list[tuple[str, int]]
    heatmap: list[list[int]]              # 7 rows (Monday first) x 24 hours
    frequency: list[tuple[str, int]]
    dwell: list[tuple[str, int]]
    passersby_30: int
    over_the_air_30: int
    consent_rates: list[tuple[str, int, float]]
    leads: int
    funnel: dict[str, int]


def _local(ts: datetime.datetime) -> datetime.datetime:
    return ts.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def dashboard(now: datetime.datetime | None = None) -> Dashboard:
    now = now or utcnow()
    local_now = _local(now)
    midnight_local = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = local_now - now
    since = {n: (midnight_local - datetime.timedelta(days=n - 1) - offset).isoformat(" ") for n in (1, 7, 30)}
    q = database.execute_sql

    # One pass per person or device: when they came first and last this month, how often,
    # and whether the device was known before the month (a returning visitor).
    today = week = month = returning = visits = 0
    per_subject: dict[int, int] = {}
    for last, n, known_before in q(
            f"SELECT max(v.start), count(*), max(d.first_seen < ?) FROM visit v JOIN device d ON d.id = v.device_id "
            f"WHERE v.start >= ? AND {_LAN_VISIT} GROUP BY {_SUBJECT}", (since[30], since[30])):
        month += 1
        visits += n
        week += last >= since[7]
        today += last >= since[1]
        returning += bool(known_before)
        per_subject[n] = per_subject.get(n, 0) + 1
    frequency = [(label, sum(c for n, c in per_subject.items() if lo <= n <= hi)) for lo, hi, label in FREQUENCY_BUCKETS]

    days = {row[0]: row[1] for row in q(
        f"SELECT date(v.start, 'localtime'), count(*) FROM visit v WHERE v.start >= ? AND {_LAN_VISIT} GROUP BY 1",
        (since[30],))}
    per_day = [((midnight_local - datetime.timedelta(days=29 - i)).date().isoformat(), 0) for i in range(30)]
    per_day = [(day, days.get(day, 0)) for day, _ in per_day]

    heatmap = [[0] * 24 for _ in range(7)]
    for weekday, hour, count in q(
            f"SELECT strftime('%w', v.start, 'localtime'), strftime('%H', v.start, 'localtime'), count(*) "
            f"FROM visit v WHERE v.start >= ? AND {_LAN_VISIT} GROUP BY 1, 2", (since[30],)):
        heatmap[(int(weekday) + 6) % 7][int(hour)] = count

    minutes = '(julianday(v."end") - julianday(v.start)) * 1440'
    cases = " ".join(f"WHEN {minutes} < {hi} THEN '{label}'" for lo, hi, label in DWELL_BUCKETS[:-1])
    dwell_rows = dict(q(f"SELECT CASE {cases} ELSE '{DWELL_BUCKETS[-1][2]}' END, count(*) FROM visit v "
                        f"WHERE v.start >= ? AND {_LAN_VISIT} GROUP BY 1", (since[30],)))
    dwell = [(label, dwell_rows.get(label, 0)) for _, _, label in DWELL_BUCKETS]

    passersby, air = q("SELECT sum(v.passerby = 1 AND v.source = 'lan'), sum(v.source = 'air') FROM visit v "
                       "WHERE v.start >= ?", (since[30],)).fetchone()

    leads = q("SELECT count(*) FROM lead WHERE erased_at IS NULL").fetchone()[0]
    granted = dict(q("SELECT c.purpose, count(*) FROM consent c JOIN (SELECT max(id) AS id FROM consent GROUP BY lead_id, purpose) "
                     "latest ON latest.id = c.id JOIN lead l ON l.id = c.lead_id AND l.erased_at IS NULL "
                     "WHERE c.granted = 1 GROUP BY c.purpose"))
    rates = [(p, granted.get(p, 0), round(100.0 * granted.get(p, 0) / leads, 1) if leads else 0.0) for p in MARKETING_PURPOSES]

    return Dashboard(today, week, month, month - returning, returning, visits, per_day, heatmap, frequency, dwell,
                     passersby or 0, air or 0, rates, leads, funnel.totals(30, midnight_local.date()))


class DashboardCache:
    """The dashboard served from a snapshot at most `max_age` seconds old; a stale snapshot is
    served while one background thread computes the next (30-day figures need no more)."""

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        self._snapshot: tuple[float, Dashboard] | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def get(self) -> tuple[Dashboard, float]:
        """The figures and their age in seconds."""
        snapshot = self._snapshot
        if snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    self._snapshot = (time.monotonic(), dashboard())
                snapshot = self._snapshot
        elif time.monotonic() - snapshot[0] > self.max_age and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh, name="dashboard-refresh", daemon=True).start()
        return snapshot[1], time.monotonic() - snapshot[0]

    def _refresh(self) -> None:
        try:
            with database.connection_context():
                self._snapshot = (time.monotonic(), dashboard())
        finally:
            self._refreshing = False

    def invalidate(self) -> None:
        self._snapshot = None

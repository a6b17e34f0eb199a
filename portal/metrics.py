"""The dashboard's figures, aggregated in SQLite (never a full visit list in Python).

A person is a lead (across all their devices); anyone else is counted per device, which with
private (randomized) addresses makes anonymous figures estimates. Per-person figures (new,
returning, visit frequency) count only people whose current visit_analytics consent is a grant;
totals (visitors, visits, dwell, passers-by) count everyone. Days and hours are the
appliance's local time.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from flask import current_app, has_app_context

from portal import funnel
from portal.consent import COUNTS_SQL
from portal.db import database
from portal.models import utcnow
from portal.core.purposes import OPTIONAL_PURPOSES
from portal.core.segment_rules import NEW, RETURNING, visitor_kind, window_start
from portal.visits import EARLIER_VISIT, FOLLOWED_PEOPLE_SQL

logger = logging.getLogger(__name__)
FREQUENCY_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 4, "3–4"), (5, 9, "5–9"), (10, 10**9, "10+"))
DWELL_BUCKETS = ((5, 15, "5–15"), (15, 30, "15–30"), (30, 60, "30–60"), (60, 120, "60–120"), (120, 10**9, "120+"))
_SUBJECT = "coalesce('l' || d.lead_id, 'd' || d.id)"
_LAN_VISIT = "v.passerby = 0 AND v.source = 'lan'"
# Signed in and seen within the gap (portal/signin_visits.py): here now, where no collector is
# watching the guest LAN (when one is, its runs say who is here; a pseudonym's cannot be matched).
_SIGNED_IN_NOW = ("SELECT s.device_id, s.last, 1 FROM signin_run s WHERE s.last >= ? AND NOT EXISTS("
                  "SELECT 1 FROM open_run r WHERE r.source = 'lan' AND r.last >= ?)")


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


def dashboard(now: datetime.datetime | None = None, gap_minutes: float = 15, min_dwell_minutes: float = 5) -> Dashboard:
    """The figures at `now`. Visitors (today, 7 and 30 days, new and returning, frequency) include
    the people in the store now: a run of sightings still open (open_run), seen within the visit
    gap, that has already lasted `min_dwell_minutes` is a visit whatever happens next; so is a
    sign-in seen within the gap, where no collector watches the LAN (signin_run). Charts of
    visits (per day, hour, dwell) show closed visits: a visit's length is known when it ends."""
    now = now or utcnow()
    local_now = _local(now)
    midnight_local = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = local_now - now
    # Charts: the last 30 calendar days. Visitor figures: today since local midnight, 7 and 30 days
    # as the same rolling windows as the segments and `footfall visits` (window_start).
    since = {n: (midnight_local - datetime.timedelta(days=n - 1) - offset).isoformat(" ") for n in (1, 30)}
    rolling = {n: window_start(now, n).isoformat(" ") for n in (7, 30)}
    q = database.execute_sql

    # One pass per person or device: when they were last here this month, how many visits (closed,
    # and one in progress), and whether they came before the month: new or returning, defined once
    # in portal/core/segment_rules.py.
    today = week = month = new = returning = visits = 0
    per_subject: dict[int, int] = {}
    present_since = (now - datetime.timedelta(minutes=gap_minutes)).isoformat(" ")
    for seen, closed, present, before, followed in q(
            f"SELECT g.seen, g.closed, g.present, {EARLIER_VISIT.format(lead='g.lead_id', device='g.device_id')}, "
            f"g.lead_id IN ({FOLLOWED_PEOPLE_SQL}) FROM ("
            "  SELECT min(d.lead_id) AS lead_id, min(d.id) AS device_id, max(x.seen) AS seen, sum(1 - x.open) AS closed, "
            "         max(x.open) AS present FROM ("
            f"    SELECT v.device_id, v.start AS seen, 0 AS open FROM visit v WHERE v.start >= ? AND {_LAN_VISIT}"
            "    UNION ALL"
            "    SELECT r.device_id, r.last, 1 FROM open_run r WHERE r.source = 'lan' AND r.last >= ? "
            "      AND (julianday(r.last) - julianday(r.start)) * 1440 >= ?"
            "    UNION ALL"
            f"    {_SIGNED_IN_NOW}"
            f"  ) x JOIN device d ON d.id = x.device_id GROUP BY {_SUBJECT}) g",
            (rolling[30], rolling[30], rolling[30], present_since, min_dwell_minutes, present_since, present_since)):
        n = closed + present
        month += 1
        visits += closed
        week += seen >= rolling[7]
        today += seen >= since[1]
        if not followed:
            continue  # per-person figures only of people who agreed to visit analytics (issue 15)
        kind = visitor_kind(n, bool(before))
        new += kind == NEW
        returning += kind == RETURNING
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
                     f"WHERE c.granted = 1 AND {COUNTS_SQL} GROUP BY c.purpose"))  # double opt-in: counted once verified
    rates = [(p, granted.get(p, 0), round(100.0 * granted.get(p, 0) / leads, 1) if leads else 0.0) for p in OPTIONAL_PURPOSES]

    return Dashboard(today, week, month, new, returning, visits, per_day, heatmap, frequency, dwell,
                     passersby or 0, air or 0, rates, leads, funnel.totals(30, midnight_local.date()))


class DashboardCache:
    """The dashboard from a snapshot never older than `max_age` seconds (the README's promise).

    A snapshot younger than `max_age / 2` is served as it is; an older one is still served while
    one background thread computes the next, so a dashboard watched continuously never waits;
    past `max_age` (after an idle period, or the first view) the viewer waits for fresh figures
    instead of being shown stale ones as current. Viewers arriving together share one
    computation. Thresholds (visit gap, minimum dwell) are the portal's settings in force."""

    def __init__(self, max_age: float = 60.0, settings=None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.settings = settings
        self.clock = clock
        self._snapshot: tuple[float, Dashboard] | None = None
        self._lock = threading.Lock()      # held while computing: one computation at a time
        self._refreshing = threading.Event()

    def get(self) -> tuple[Dashboard, float]:
        """The figures and their age in seconds (at most max_age)."""
        snapshot = self._snapshot
        age = None if snapshot is None else self.clock() - snapshot[0]
        if age is None or age > self.max_age:
            snapshot = self._compute(self._thresholds(), wait=True)
        elif age > self.max_age / 2 and not self._refreshing.is_set():
            self._refreshing.set()
            thresholds = self._thresholds()
            threading.Thread(target=self._background, args=(thresholds,), name="dashboard-refresh", daemon=True).start()
        return snapshot[1], max(0.0, self.clock() - snapshot[0])

    def _thresholds(self) -> tuple[float, float]:
        settings = self.settings
        if settings is None and has_app_context():
            settings = current_app.extensions["footfall"].settings
        if settings is None:
            return 15.0, 5.0
        return float(settings.visit_gap_minutes), float(settings.min_dwell_minutes)

    def _compute(self, thresholds: tuple[float, float], wait: bool) -> tuple[float, Dashboard]:
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and self.clock() - snapshot[0] <= (self.max_age if wait else self.max_age / 2):
                return snapshot  # computed by someone else while this one waited
            started = self.clock()  # the figures are as old as the moment they were asked for
            self._snapshot = (started, dashboard(gap_minutes=thresholds[0], min_dwell_minutes=thresholds[1]))
            return self._snapshot

    def _background(self, thresholds: tuple[float, float]) -> None:
        try:
            with database.connection_context():
                self._compute(thresholds, wait=False)
        except Exception:
            logger.exception("dashboard refresh failed")  # the next view past max_age computes it itself
        finally:
            self._refreshing.clear()

    def invalidate(self) -> None:
        self._snapshot = None

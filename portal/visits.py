"""Who comes back: frequency, recency and dwell per person (a lead, across all its devices)
or per anonymous device. Passers-by and probe-request sightings are not visits."""
from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass

from portal.db import database
from portal.models import utcnow
from portal.core.segment_rules import NEW, RETURNING, visitor_kind, window_start

ESTIMATE_NOTE = ("Anonymous figures are estimates: phones use private (randomized) addresses that can change per "
                 "network or over time, so one person may count as several devices.")

# Whether a person (lead_id) or an anonymous device (device_id) has a visit that started before
# a time: one index probe per visitor (visit(device, passerby, source, start) and device(lead)).
EARLIER_VISIT = ("CASE WHEN {lead} IS NOT NULL THEN EXISTS(SELECT 1 FROM device ed JOIN visit e ON e.device_id = ed.id "
                 "WHERE ed.lead_id = {lead} AND e.passerby = 0 AND e.source = 'lan' AND e.start < ?) "
                 "ELSE EXISTS(SELECT 1 FROM visit e WHERE e.device_id = {device} "
                 "AND e.passerby = 0 AND e.source = 'lan' AND e.start < ?) END")

_SQL = f"""
SELECT g.*, {EARLIER_VISIT.format(lead="g.lead_id", device="g.device_id")} FROM (
  SELECT CASE WHEN l.id IS NOT NULL THEN 'lead:' || l.uid ELSE 'device:' || d.mac END AS subject,
         l.uid, count(DISTINCT d.id), count(*), min(v.start), max(v."end"), max(d.randomized),
         group_concat(round((julianday(v."end") - julianday(v.start)) * 1440, 2)), min(l.id) AS lead_id, min(d.id) AS device_id
  FROM visit v
  JOIN device d ON d.id = v.device_id
  LEFT JOIN lead l ON l.id = d.lead_id AND l.erased_at IS NULL
  WHERE v.passerby = 0 AND v.source = 'lan' AND v.start >= ?
  GROUP BY subject
) g
"""


@dataclass(frozen=True)
class VisitorStats:
    subject: str                 # "lead:<uid>" or "device:<mac>"
    lead_uid: str | None
    devices: int
    visits: int
    first_visit: datetime.datetime
    last_visit: datetime.datetime
    recency_days: float
    median_dwell_minutes: float
    randomized: bool             # an anonymous randomized address: an estimate, not a person
    visited_before: bool         # a visit before the window too

    @property
    def kind(self) -> str | None:
        """New or returning (portal/core/segment_rules.py: one definition everywhere)."""
        return visitor_kind(self.visits, self.visited_before)


@dataclass(frozen=True)
class Summary:
    days: int
    people: int                  # leads with visits
    anonymous_devices: int
    anonymous_randomized: int
    visits: int
    new: int                     # people or devices whose one visit in the window is their first
    returning: int               # people or devices that came at least twice (README: new and returning)
    median_dwell_minutes: float | None
    note: str = ESTIMATE_NOTE


def visitor_stats(days: int = 90, now: datetime.datetime | None = None) -> list[VisitorStats]:
    now = now or utcnow()
    since = window_start(now, days).isoformat(" ")
    parse = datetime.datetime.fromisoformat
    out = []
    for subject, uid, devices, visits, first, last, randomized, dwells, _lead, _device, before in database.execute_sql(
            _SQL, (since, since, since)):
        last_dt = parse(last)
        out.append(VisitorStats(subject, uid, devices, visits, parse(first), last_dt,
                                round((now - last_dt).total_seconds() / 86400, 2),
                                statistics.median(float(x) for x in dwells.split(",")),
                                bool(randomized) and uid is None, bool(before)))
    return sorted(out, key=lambda s: (-s.visits, s.subject))


def summarize(stats: list[VisitorStats], days: int) -> Summary:
    anonymous = [s for s in stats if s.lead_uid is None]
    dwells = [s.median_dwell_minutes for s in stats]
    return Summary(days=days, people=len(stats) - len(anonymous), anonymous_devices=len(anonymous),
                   anonymous_randomized=sum(s.randomized for s in anonymous), visits=sum(s.visits for s in stats),
                   new=sum(1 for s in stats if s.kind == NEW), returning=sum(1 for s in stats if s.kind == RETURNING),
                   median_dwell_minutes=round(statistics.median(dwells), 1) if dwells else None)

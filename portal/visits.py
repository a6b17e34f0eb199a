"""Who comes back: frequency, recency and dwell per person (a lead whose visits may be followed,
across all its devices) or per anonymous device; and the aggregate figures per day that every
visit feeds. Passers-by and probe-request sightings are not visits."""
from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass

from portal.consent import FOLLOWED_LEADS_SQL
from portal.db import database
from portal.models import utcnow
from portal.core.segment_rules import NEW, RETURNING, visitor_kind, window_start

ESTIMATE_NOTE = ("Anonymous figures are estimates: phones use private (randomized) addresses that can change per "
                 "network or over time, so one person may count as several devices.")

# The people whose visits may be followed from day to day (issue 15): the latest word on visit
# analytics is a grant, no objection or restriction is upheld (the privacy desk's restricted_at),
# not erased. The collector stores only their devices by MAC (collector/pseudonyms.py); new and
# returning count only them.
FOLLOWED_PEOPLE_SQL = ("SELECT id FROM lead WHERE erased_at IS NULL AND restricted_at IS NULL "
                       f"AND id IN ({FOLLOWED_LEADS_SQL})")

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
  LEFT JOIN lead l ON l.id = d.lead_id AND l.id IN ({FOLLOWED_PEOPLE_SQL})
  WHERE v.passerby = 0 AND v.source = 'lan' AND v.start >= ?
  GROUP BY subject
) g
"""


@dataclass(frozen=True)
class VisitorStats:
    subject: str                 # "lead:<uid>" (a person whose visits may be followed) or "device:<mac>"
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
        """New or returning (portal/core/segment_rules.py: one definition everywhere), for a person
        whose visits may be followed only: a device's pseudonym lasts a day, and a person who did
        not agree is not followed from day to day (issue 15)."""
        return visitor_kind(self.visits, self.visited_before) if self.lead_uid else None


@dataclass(frozen=True)
class Summary:
    days: int
    people: int                  # people whose visits may be followed, with visits
    anonymous_devices: int       # every other device with visits (a pseudonym lasts a day)
    anonymous_randomized: int
    visits: int
    new: int                     # people whose one visit in the window is their first
    returning: int               # people who came at least twice (README: new and returning)
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


# The figures that anonymous visits feed, per local day (the dashboard's day): the same totals
# whoever agreed to be followed, so they can be checked from outside (`footfall visits --json`).
_DAILY_SQL = """
SELECT date(v.start, 'localtime') AS day,
       sum(v.source = 'lan' AND v.passerby = 0),
       sum(v.source = 'lan' AND v.passerby = 1),
       count(DISTINCT CASE WHEN v.source = 'lan' AND v.passerby = 0 THEN v.device_id END),
       sum(CASE WHEN v.source = 'lan' AND v.passerby = 0 THEN (julianday(v."end") - julianday(v.start)) * 1440 END),
       sum(v.source = 'air')
FROM visit v WHERE v.start >= ? AND v.start < ? AND date(v.start, 'localtime') BETWEEN ? AND ?
GROUP BY 1
"""


def daily_figures(first: datetime.date, last: datetime.date) -> dict:
    """Per local day from `first` to `last` (both included): visits, passers-by, devices with a
    visit, dwell (minutes, closed visits on the guest LAN), passers-by over the air; and totals."""
    if last < first:
        raise ValueError("the range ends before it starts")
    # Local days lie within a day of UTC ones: the index on start narrows, date() decides.
    lo, hi = (first - datetime.timedelta(days=1)).isoformat(), (last + datetime.timedelta(days=2)).isoformat()
    found = {row[0]: row[1:] for row in database.execute_sql(_DAILY_SQL, (lo, hi, first.isoformat(), last.isoformat()))}
    days = []
    for i in range((last - first).days + 1):
        day = (first + datetime.timedelta(days=i)).isoformat()
        visits, passersby, devices, dwell, air = found.get(day, (0, 0, 0, None, 0))
        days.append({"day": day, "visits": visits or 0, "passersby": passersby or 0, "devices": devices,
                     "dwell_minutes": round(dwell or 0.0, 2),
                     "mean_dwell_minutes": round(dwell / visits, 2) if visits else None, "over_the_air": air or 0})
    total = {key: sum(d[key] for d in days) for key in ("visits", "passersby", "over_the_air")}
    total["device_days"] = sum(d["devices"] for d in days)
    total["dwell_minutes"] = round(sum(d["dwell_minutes"] for d in days), 2)
    return {"from": first.isoformat(), "to": last.isoformat(), "days": days, "total": total}


# -- a withdrawal of visit analytics ---------------------------------------------------------------

def unfollow(lead_id: int) -> int:
    """The person withdrew visit analytics: what was kept of their visits stops being theirs at once.
    Each device's visits of a local day move to a new random pseudonym (only the randomized bit,
    like the collector's for a device nobody agreed for), so the figures stay the same and nothing
    links them to the MAC, to each other across days, or to the person; what DHCP said of the
    devices goes; visit.closed events not yet sent to the central store go. The device rows stay
    (the portal's record of the person's sign-ins). Returns how many visits moved."""
    import secrets

    from peewee import fn

    from portal.core.macs import PSEUDONYM_PREFIX
    from portal.models import Device, OutboxEvent, Segment, SegmentMember, Visit

    moved = 0
    with database.atomic():
        devices = list(Device.select().where((Device.lead == lead_id) & (Device.anonymous == False)))  # noqa: E712
        for device in devices:
            days: dict[str, list[int]] = {}
            for visit_id, day in database.execute_sql(
                    "SELECT id, date(start, 'localtime') FROM visit WHERE device_id = ? ORDER BY start", (device.id,)):
                days.setdefault(day, []).append(visit_id)
            for ids in days.values():
                first, last = database.execute_sql(
                    f'SELECT min(start), max("end") FROM visit WHERE id IN ({",".join("?" * len(ids))})', ids).fetchone()
                alias = Device.create(mac=PSEUDONYM_PREFIX + secrets.token_hex(16), first_seen=first, last_seen=last,
                                      randomized=device.randomized, anonymous=True)
                moved += Visit.update(device=alias).where(Visit.id.in_(ids)).execute()
            OutboxEvent.delete().where((OutboxEvent.topic == "visit.closed") & OutboxEvent.delivered_at.is_null()
                                       & (fn.json_extract(OutboxEvent.payload, "$.device") == device.mac)).execute()
        if devices:
            Device.update(hostname=None, dhcp_fingerprint=None, dhcp_vendor=None).where(
                Device.id.in_([d.id for d in devices])).execute()
            # The central store drops its copy: the store's devices of the person, and their visits with them
            # (a later sign-in links a device again, with no visit).
            OutboxEvent.emit("devices.erased", devices=[d.mac for d in devices])
        # Out of every segment at once (segments are visit analytics), as a restriction does.
        segments = [m.segment_id for m in SegmentMember.select(SegmentMember.segment).where(SegmentMember.lead == lead_id)]
        SegmentMember.delete().where(SegmentMember.lead == lead_id).execute()
        for segment_id in segments:
            Segment.update(members=SegmentMember.select().where(SegmentMember.segment == segment_id).count()).where(
                Segment.id == segment_id).execute()
    return moved

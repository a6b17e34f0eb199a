"""Which people each automation reaches now: one pass over leads, consents and visits (the same
shape as the segment recompute), rows in activation_send for the new occasions (unique per
automation, person, channel and occasion: never the same automation twice unless it repeats).

Nothing is sent here; portal/activation/send.py checks everything again when it sends. Triggers
look back a week at most (a newly enabled automation does not reach years of past visitors):
- first_visit: the first visit began `delay_hours` ago or more, and within the week before that;
- nth_visit: the person's Nth visit began within the last week;
- lapsed: the last visit ended `lapsed_days` ago, within a week's window;
- review: the last visit ended on the store's yesterday (from 10:00 store time);
- campaign: at its `send_at` (or the first run after saving), the chosen segment (or everyone).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from portal.activation.guards import CONTACT_OF, PURPOSE_OF, in_holdout
from portal.activation.models import VISIT_KINDS, ActivationSend, Automation
from portal.consent import COUNTS_SQL
from portal.core.purposes import VISIT_ANALYTICS
from portal.db import database

LOOKBACK = datetime.timedelta(days=7)
REVIEW_HOUR = 10
CHUNK = 5000


@dataclass
class Person:
    id: int
    uid: str
    purposes: set
    verified: set  # email, phone
    first: datetime.datetime | None = None
    last_end: datetime.datetime | None = None
    visits: int = 0
    recent: dict | None = None


def people() -> dict[int, Person]:
    """Everyone who could get a message on some channel: not erased, folded or restricted, with a
    proved contact, and their current purposes that count (double opt-in)."""
    rows = database.execute_sql(
        "SELECT l.id, l.uid, l.email_verified_at IS NOT NULL AND l.email_enc IS NOT NULL, "
        "l.phone_verified_at IS NOT NULL AND l.phone_enc IS NOT NULL FROM lead l "
        "WHERE l.erased_at IS NULL AND l.restricted_at IS NULL AND l.merged_into_id IS NULL "
        "AND (l.email_verified_at IS NOT NULL OR l.phone_verified_at IS NOT NULL)")
    found = {r[0]: Person(r[0], r[1], set(), {k for k, ok in (("email", r[2]), ("phone", r[3])) if ok}) for r in rows}
    purposes = ", ".join(repr(p) for p in (*sorted(set(PURPOSE_OF.values())), VISIT_ANALYTICS))
    granted = database.execute_sql(
        "SELECT c.lead_id, c.purpose FROM consent c JOIN (SELECT max(id) AS id FROM consent "
        f"WHERE purpose IN ({purposes}) GROUP BY lead_id, purpose) latest ON latest.id = c.id "
        f"JOIN lead l ON l.id = c.lead_id WHERE c.granted = 1 AND {COUNTS_SQL}")
    for lead_id, purpose in granted:
        if lead_id in found:
            found[lead_id].purposes.add(purpose)
    return {i: p for i, p in found.items() if p.purposes - {VISIT_ANALYTICS}}


def add_visits(found: dict[int, Person], since: list[datetime.datetime]) -> None:
    """Each person's first visit, last visit end, count, and count since each time in `since`."""
    sums = "".join(", sum(v.start >= ?)" for _ in since)
    sql = (f'SELECT d.lead_id, min(v.start), max(v."end"), count(*){sums} FROM visit v JOIN device d ON d.id = v.device_id '
           "WHERE d.lead_id IS NOT NULL AND v.passerby = 0 AND v.source = 'lan' GROUP BY d.lead_id")
    parse = datetime.datetime.fromisoformat
    for row in database.execute_sql(sql, [s.isoformat(" ") for s in since]):
        person = found.get(row[0])
        if person is None or VISIT_ANALYTICS not in person.purposes:
            continue
        person.first, person.last_end, person.visits = parse(row[1]), parse(row[2]), row[3]
        person.recent = dict(zip(since, row[4:]))


def occasion(auto: Automation, opts: dict, p: Person, now: datetime.datetime, tz) -> str | None:
    """The occasion this person gives the automation now, or None."""
    kind = auto.kind
    if kind == "campaign":
        return "once"
    if p.visits == 0:
        return None
    if kind == "first_visit":
        delay = datetime.timedelta(hours=opts["delay_hours"])
        window = now - delay - LOOKBACK
        return "once" if p.visits == p.recent[window] and p.first <= now - delay else None
    if kind == "nth_visit":
        n = opts["nth"]
        return "once" if p.visits >= n and p.visits - p.recent[now - LOOKBACK] < n else None
    if kind == "lapsed":
        gone = now - datetime.timedelta(days=opts["lapsed_days"])
        if gone - LOOKBACK < p.last_end <= gone:
            return p.last_end.date().isoformat() if opts.get("repeat") else "once"
        return None
    if kind == "review":
        local_now = now.replace(tzinfo=datetime.timezone.utc).astimezone(tz)
        visit_day = p.last_end.replace(tzinfo=datetime.timezone.utc).astimezone(tz).date()
        if local_now.hour >= REVIEW_HOUR and visit_day == local_now.date() - datetime.timedelta(days=1):
            return visit_day.isoformat() if opts.get("repeat") else "once"
    return None


def windows(autos: list[Automation], now: datetime.datetime) -> list[datetime.datetime]:
    found = {now - LOOKBACK}
    for a in autos:
        if a.kind == "first_visit":
            found.add(now - datetime.timedelta(hours=a.opts["delay_hours"]) - LOOKBACK)
    return sorted(found)


def plan(now: datetime.datetime, tz, holdout_percent: int, automations: list[Automation] | None = None) -> dict[str, int]:
    """Add the sends each enabled automation's new occasions call for; returns new rows per automation."""
    autos = automations if automations is not None else list(Automation.select().where(Automation.enabled == True))  # noqa: E712
    autos = [a for a in autos if a.kind != "campaign" or (a.launched_at is None and _campaign_due(a, now))]
    if not autos:
        return {}
    found = people()
    if any(a.kind in VISIT_KINDS for a in autos):
        add_visits(found, windows(autos, now))
    added = {}
    stamp = now.isoformat(" ")
    for auto in autos:
        opts = auto.opts
        audience = found
        if auto.kind == "campaign" and opts.get("segment"):
            members = {r[0] for r in database.execute_sql(
                "SELECT m.lead_id FROM segment_member m JOIN segment s ON s.id = m.segment_id WHERE s.key = ?",
                (opts["segment"],))}
            # A segment is made of visits: only people still followed (a withdrawal or a lapse since its last run).
            audience = {i: p for i, p in found.items() if i in members and VISIT_ANALYTICS in p.purposes}
        have = {(r[0], r[1], r[2]) for r in database.execute_sql(
            "SELECT lead_id, channel, occasion FROM activation_send WHERE automation_id = ?", (auto.id,))}
        rows = []
        for p in audience.values():
            if auto.kind in VISIT_KINDS and VISIT_ANALYTICS not in p.purposes:
                continue
            what = occasion(auto, opts, p, now, tz)
            if what is None:
                continue
            held = in_holdout(auto.uid, p.uid, holdout_percent)
            for channel in auto.channel_list:
                if PURPOSE_OF[channel] not in p.purposes or CONTACT_OF[channel] not in p.verified:
                    continue
                if (p.id, channel, what) in have:
                    continue
                rows.append((auto.id, p.id, channel, what, held, "held_out" if held else "due", stamp, stamp))
        for i in range(0, len(rows), CHUNK):
            with database.atomic():
                database.cursor().executemany(
                    "INSERT OR IGNORE INTO activation_send (automation_id, lead_id, channel, occasion, holdout, state, "
                    "due_at, created_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)", rows[i:i + CHUNK])
        if auto.kind == "campaign":
            with database.atomic():
                Automation.update(launched_at=now).where(Automation.id == auto.id).execute()
        added[auto.uid] = len(rows)
    return added


def _campaign_due(auto: Automation, now: datetime.datetime) -> bool:
    send_at = auto.opts.get("send_at")
    return send_at is None or datetime.datetime.fromisoformat(send_at) <= now


__all__ = ["plan", "people", "ActivationSend"]

"""Remarketing segments over people (leads): recency, frequency, dwell, consent, language.

Only people whose current visit_analytics consent is a grant are members of any segment.
Built-in segments (new, returning, loyal, lapsed, lost) have thresholds the owner can edit;
custom segments combine the same conditions. New and returning follow the one definition in
portal/core/segment_rules.py (visitor_kind), shared with the dashboard, `footfall visits` and the
central store. Membership is recomputed in one pass: one SQL
aggregate per lead over their visits on every device, then the rules in Python.
"""
from __future__ import annotations

import datetime
import hashlib
import json

from portal.consent import COUNTS_SQL, FOLLOWED_LEADS_SQL
from portal.db import database
from portal.models import OutboxEvent, Segment, SegmentMember, StoreSetting, utcnow
# The rules and the definition of new and returning live in a module without the database (the
# central store imports it); they are re-exported here for the appliance's callers.
from portal.core.segment_rules import (BUILTIN, FORMER_BUILTIN, RULE_FIELDS, TEXT_FIELDS, LeadStat, RuleError,  # noqa: F401
                                  clean_rule, matches, member, window_start)
from portal.core.segment_rules import windows as rule_windows


def ensure_builtins() -> None:
    for key, (name, rule) in BUILTIN.items():
        segment, created = Segment.get_or_create(key=key, defaults={"name": name, "builtin": True, "rule": json.dumps(rule)})
        if not created and key in FORMER_BUILTIN and json.loads(segment.rule) == FORMER_BUILTIN[key]:
            Segment.update(rule=json.dumps(rule)).where(Segment.id == segment.id).execute()


def lead_stats(windows: set[int], now: datetime.datetime) -> dict[int, LeadStat]:
    windows = sorted(windows)
    since = [window_start(now, w).isoformat(" ") for w in windows]
    window_sums = "".join(f", sum(v.start >= ?)" for _ in windows)
    # Only people who agreed to visit analytics are in any segment (issue 15): the others' visits
    # count in anonymous totals only, never followed from day to day. restricted_at: an objection or
    # a restriction upheld by the privacy desk keeps a person out too.
    stats = {lead_id: LeadStat(lead_id, language) for lead_id, language in database.execute_sql(
             f"SELECT id, language FROM lead WHERE erased_at IS NULL AND restricted_at IS NULL AND id IN ({FOLLOWED_LEADS_SQL})")}
    # Rounded to hundredths of a minute: julianday arithmetic would put exactly 30 min at 29.99999.
    sql = (f'SELECT d.lead_id, min(v.start), max(v."end"), round(avg(julianday(v."end") - julianday(v.start)) * 1440, 2), '
           f'count(*){window_sums} '
           'FROM visit v JOIN device d ON d.id = v.device_id '
           "WHERE d.lead_id IS NOT NULL AND v.passerby = 0 AND v.source = 'lan' GROUP BY d.lead_id")
    parse = datetime.datetime.fromisoformat
    for row in database.execute_sql(sql, since):
        stat = stats.get(row[0])
        if stat is None:
            continue
        stat.first, stat.last, stat.avg_dwell, stat.visits = parse(row[1]), parse(row[2]), row[3] or 0.0, row[4]
        stat.visits_by_window = dict(zip(windows, row[5:]))
    # Double opt-in: a consent counts for segments only once its channel is proved (issue 11).
    current = ("SELECT c.lead_id, c.purpose FROM consent c JOIN (SELECT max(id) AS id FROM consent "
               "GROUP BY lead_id, purpose) latest ON latest.id = c.id JOIN lead l ON l.id = c.lead_id "
               f"WHERE c.granted = 1 AND {COUNTS_SQL}")
    granted: dict[int, set[str]] = {}
    for lead_id, purpose in database.execute_sql(current):
        granted.setdefault(lead_id, set()).add(purpose)
    for lead_id, purposes in granted.items():
        if lead_id in stats:
            stats[lead_id].consents = frozenset(purposes)
    return stats


# Rows per write transaction of the segment job: a sign-in waits behind at most one such chunk.
WRITE_CHUNK = 2000


def recompute(now: datetime.datetime | None = None) -> dict[str, int]:
    """Recompute every segment's membership; returns member counts.

    Reads run outside any transaction; the writes are the difference from the stored membership,
    in short transactions of at most WRITE_CHUNK rows, so visitors signing in meanwhile never
    wait long for the write lock. A person erased meanwhile is never added back."""
    now = now or utcnow()
    ensure_builtins()
    segments = list(Segment.select())
    rules = {s.id: json.loads(s.rule) for s in segments}
    stats = lead_stats(rule_windows(list(rules.values())), now)
    counts = {}
    for s in segments:
        want = {lead_id for lead_id, stat in stats.items() if member(s.key, rules[s.id], stat, now)}
        have = {row[0] for row in database.execute_sql("SELECT lead_id FROM segment_member WHERE segment_id = ?", (s.id,))}
        drop, add = sorted(have - want), sorted(want - have)
        for i in range(0, len(drop), WRITE_CHUNK):
            with database.atomic():
                database.cursor().executemany("DELETE FROM segment_member WHERE segment_id = ? AND lead_id = ?",
                                              ((s.id, lead_id) for lead_id in drop[i:i + WRITE_CHUNK]))
        for i in range(0, len(add), WRITE_CHUNK):
            with database.atomic():
                database.cursor().executemany(
                    "INSERT OR IGNORE INTO segment_member (segment_id, lead_id) "
                    "SELECT ?, id FROM lead WHERE id = ? AND erased_at IS NULL",
                    ((s.id, lead_id) for lead_id in add[i:i + WRITE_CHUNK]))
        with database.atomic():
            members = database.execute_sql("SELECT count(*) FROM segment_member WHERE segment_id = ?",
                                           (s.id,)).fetchone()[0]
            Segment.update(members=members, computed_at=now).where(Segment.id == s.id).execute()
            _tell_central(s)
        counts[s.key] = members
    return counts


def _tell_central(segment: Segment) -> None:
    """An outbox event when a segment's membership changed since it was last sent."""
    uids = [row[0] for row in database.execute_sql(
        "SELECT l.uid FROM segment_member m JOIN lead l ON l.id = m.lead_id WHERE m.segment_id = ? ORDER BY l.uid",
        (segment.id,))]
    digest = hashlib.sha256("\n".join(uids).encode()).hexdigest()
    key = f"sync.segment.{segment.key}"
    row = StoreSetting.get_or_none(StoreSetting.key == key)
    if row is not None and row.value == json.dumps(digest):
        return
    OutboxEvent.emit("segment.members", segment=segment.key, members=uids)
    StoreSetting.insert(key=key, value=json.dumps(digest)).on_conflict(
        conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(digest)}).execute()


def save_custom(name: str, raw_rule: dict) -> Segment:
    name = " ".join((name or "").split())[:60]
    if not name:
        raise RuleError("name")
    rule = clean_rule(raw_rule)
    segment = Segment.create(key=f"custom-{utcnow().strftime('%Y%m%d%H%M%S%f')}", name=name, builtin=False,
                             rule=json.dumps(rule, sort_keys=True))
    return segment


def update_builtin(key: str, raw_rule: dict) -> Segment:
    """The owner edits a built-in segment's thresholds (its kind of conditions stay)."""
    segment = Segment.get(Segment.key == key, Segment.builtin == True)  # noqa: E712
    rule = clean_rule(raw_rule)
    segment.rule = json.dumps(rule, sort_keys=True)
    segment.save()
    return segment


def segments_of(lead_id: int) -> list[Segment]:
    return list(Segment.select().join(SegmentMember).where(SegmentMember.lead == lead_id).order_by(Segment.id))

"""Remarketing segments over people (leads): recency, frequency, dwell, consent, language.

Only people whose current visit_analytics consent is a grant are members of any segment.
Built-in segments (new, returning, loyal, lapsed, lost) have thresholds the owner can edit;
custom segments combine the same conditions. New and returning follow the one definition in
portal/core/segment_rules.py (visitor_kind), shared with the dashboard, `footfall visits` and the
central store. Membership is recomputed in one pass: one SQL
aggregate per lead over their visits on every device, then the rules in Python.

Incremental runs (issue 18): the scheduler's job calls refresh(), which recomputes only the people
who may have moved since the last run: those SQLite's triggers noted (table segment_dirty,
migration 0021: new or deleted visits, device links, consents, any change of the person's row)
and those whom time alone moves (a last visit crossing a recency threshold, a visit leaving a
window, a first visit growing old), found by the visits whose start or end lies in the band of
time each threshold swept since the last run. A policy text or a rule change, a clock that went
back, no run in the last day, or too many people to look at makes the run full. recompute() is the
full run; both give the same membership (tests/portal/test_segments_incremental.py).
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


def lead_stats(windows: set[int], now: datetime.datetime, only: list[int] | None = None) -> dict[int, LeadStat]:
    """Each followed person's figures; `only`: just these people (the incremental run)."""
    windows = sorted(windows)
    subset, params = "", []
    if only is not None:
        subset, params = " AND {col} IN (SELECT value FROM json_each(?))", [json.dumps(only)]
    since = [window_start(now, w).isoformat(" ") for w in windows]
    window_sums = "".join(f", sum(v.start >= ?)" for _ in windows)
    # Only people who agreed to visit analytics are in any segment (issue 15): the others' visits
    # count in anonymous totals only, never followed from day to day. restricted_at: an objection or
    # a restriction upheld by the privacy desk keeps a person out too.
    if only is None:
        stats = {lead_id: LeadStat(lead_id, language) for lead_id, language in database.execute_sql(
                 f"SELECT id, language FROM lead WHERE erased_at IS NULL AND restricted_at IS NULL AND id IN ({FOLLOWED_LEADS_SQL})")}
    else:
        # FOLLOWED_LEADS_SQL for a few people: its latest grant per person, read for them only
        # (SQLite would otherwise build the whole followed list first).
        followed = FOLLOWED_LEADS_SQL.replace("GROUP BY lead_id", "AND lead_id IN (SELECT value FROM json_each(?)) GROUP BY lead_id")
        assert followed != FOLLOWED_LEADS_SQL, "FOLLOWED_LEADS_SQL changed shape"
        stats = {lead_id: LeadStat(lead_id, language) for lead_id, language in database.execute_sql(
                 "SELECT id, language FROM lead WHERE erased_at IS NULL AND restricted_at IS NULL "
                 f"AND id IN (SELECT value FROM json_each(?)) AND id IN ({followed})", params * 2)}
    # Rounded to hundredths of a minute: julianday arithmetic would put exactly 30 min at 29.99999.
    sql = (f'SELECT d.lead_id, min(v.start), max(v."end"), round(avg(julianday(v."end") - julianday(v.start)) * 1440, 2), '
           f'count(*){window_sums} '
           'FROM visit v JOIN device d ON d.id = v.device_id '
           "WHERE d.lead_id IS NOT NULL AND v.passerby = 0 AND v.source = 'lan'" + subset.format(col="d.lead_id")
           + " GROUP BY d.lead_id")
    parse = datetime.datetime.fromisoformat
    for row in database.execute_sql(sql, since + params):
        stat = stats.get(row[0])
        if stat is None:
            continue
        stat.first, stat.last, stat.avg_dwell, stat.visits = parse(row[1]), parse(row[2]), row[3] or 0.0, row[4]
        stat.visits_by_window = dict(zip(windows, row[5:]))
    # Double opt-in: a consent counts for segments only once its channel is proved (issue 11).
    current = ("SELECT c.lead_id, c.purpose FROM consent c JOIN (SELECT max(id) AS id FROM consent "
               "GROUP BY lead_id, purpose) latest ON latest.id = c.id JOIN lead l ON l.id = c.lead_id "
               f"WHERE c.granted = 1 AND {COUNTS_SQL}")
    if only is not None:
        current = current.replace("GROUP BY lead_id, purpose", "WHERE lead_id IN (SELECT value FROM json_each(?)) "
                                  "GROUP BY lead_id, purpose")
    granted: dict[int, set[str]] = {}
    for lead_id, purpose in database.execute_sql(current, params):
        granted.setdefault(lead_id, set()).add(purpose)
    for lead_id, purposes in granted.items():
        if lead_id in stats:
            stats[lead_id].consents = frozenset(purposes)
    return stats


# Rows per write transaction of the segment job: a sign-in waits behind at most one such chunk.
WRITE_CHUNK = 2000


def recompute(now: datetime.datetime | None = None) -> dict[str, int]:
    """Recompute every segment's membership (the full run); returns member counts.

    Reads run outside any transaction; the writes are the difference from the stored membership,
    in short transactions of at most WRITE_CHUNK rows, so visitors signing in meanwhile never
    wait long for the write lock. A person erased meanwhile is never added back."""
    return _run(now or utcnow(), full=True)["counts"]


def refresh(now: datetime.datetime | None = None) -> dict:
    """The scheduler's run: only the people who may have moved since the last run (see the module's
    notes), or a full run when that cannot be known. Returns counts, mode and people looked at."""
    return _run(now or utcnow(), full=False)


# An incremental run looks at no more than this share of the followed people; past it, a full run
# is as cheap and simpler.
INCREMENTAL_SHARE = 0.25
STATE_KEY = "segments.state"


def _state() -> dict:
    row = StoreSetting.get_or_none(StoreSetting.key == STATE_KEY)
    return json.loads(row.value) if row is not None else {}


def _save_state(state: dict) -> None:
    StoreSetting.insert(key=STATE_KEY, value=json.dumps(state)).on_conflict(
        conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(state)}).execute()


def _time_moved(rules: list[dict], since: datetime.datetime, now: datetime.datetime) -> set[int]:
    """People whom time alone may have moved between `since` and `now`: for each threshold of
    T days, those with a visit starting (windows, first visit) or ending (recency) in the band
    [since - T, now - T] that the threshold swept. Extra people only cost time; none is missed."""
    starts, ends = set(), set()
    for rule in rules:
        starts.add(rule.get("window_days", 90))
        for key in ("recency_min_days", "recency_max_days"):
            if key in rule:
                ends.add(rule[key])
        if "first_within_days" in rule:
            starts.add(rule["first_within_days"])
    band = lambda days: ((since - datetime.timedelta(days=days)).isoformat(" "),  # noqa: E731
                         (now - datetime.timedelta(days=days)).isoformat(" "))
    people: set[int] = set()
    for column, thresholds in (("start", starts), ('"end"', ends)):
        for days in sorted(thresholds):
            people.update(row[0] for row in database.execute_sql(
                f"SELECT DISTINCT d.lead_id FROM visit v JOIN device d ON d.id = v.device_id "
                f"WHERE v.{column} BETWEEN ? AND ? AND v.passerby = 0 AND v.source = 'lan' AND d.lead_id IS NOT NULL",
                band(days)))
    return people


def _run(now: datetime.datetime, full: bool) -> dict:
    ensure_builtins()
    # The notes read now are consumed at the end; notes written meanwhile wait for the next run.
    mark = database.execute_sql("SELECT coalesce(max(seq), 0) FROM segment_dirty").fetchone()[0]
    state = _state()
    last = datetime.datetime.fromisoformat(state["last_run"]) if "last_run" in state else None
    last_full = datetime.datetime.fromisoformat(state["last_full"]) if "last_full" in state else None
    segments = list(Segment.select())
    rules = {s.id: json.loads(s.rule) for s in segments}
    people: list[int] | None = None
    reason = "asked"
    if not full:
        noted = {row[0] for row in database.execute_sql("SELECT DISTINCT lead_id FROM segment_dirty WHERE seq <= ?",
                                                        (mark,))}
        if last is None or last_full is None:
            reason = "first run"
        elif now < last:
            reason = "clock went back"
        elif now - last_full > datetime.timedelta(days=1):
            reason = "daily full run"
        elif 0 in noted:
            reason = "a text or a rule changed"
        else:
            candidates = noted | _time_moved(list(rules.values()), last, now)
            population = database.execute_sql("SELECT coalesce(max(id), 0) FROM lead").fetchone()[0]
            if len(candidates) > max(1000, population * INCREMENTAL_SHARE):
                reason = "many people moved"
            else:
                people = sorted(candidates)
    stats = lead_stats(rule_windows(list(rules.values())), now, people)
    # Reads first, then the differences written in few short transactions (WRITE_CHUNK rows each).
    drops, adds, changed = [], [], set()
    for s in segments:
        want = {lead_id for lead_id, stat in stats.items() if member(s.key, rules[s.id], stat, now)}
        if people is None:
            have = {row[0] for row in database.execute_sql(
                "SELECT lead_id FROM segment_member WHERE segment_id = ?", (s.id,))}
        else:
            have = {row[0] for row in database.execute_sql(
                "SELECT lead_id FROM segment_member WHERE segment_id = ? AND lead_id IN (SELECT value FROM json_each(?))",
                (s.id, json.dumps(people)))}
        drops += [(s.id, lead_id) for lead_id in sorted(have - want)]
        adds += [(s.id, lead_id) for lead_id in sorted(want - have)]
        if have != want:
            changed.add(s.id)
    for i in range(0, len(drops), WRITE_CHUNK):
        with database.atomic():
            database.cursor().executemany("DELETE FROM segment_member WHERE segment_id = ? AND lead_id = ?",
                                          drops[i:i + WRITE_CHUNK])
    for i in range(0, len(adds), WRITE_CHUNK):
        with database.atomic():
            database.cursor().executemany(
                "INSERT OR IGNORE INTO segment_member (segment_id, lead_id) "
                "SELECT ?, id FROM lead WHERE id = ? AND erased_at IS NULL", adds[i:i + WRITE_CHUNK])
    counts = {}
    # A segment whose members changed (every segment on a full run) in a transaction of its own, as
    # its event reads all its members; the others only take the time of this run.
    for s in segments:
        if people is None or s.id in changed:
            with database.atomic():
                counts[s.key] = database.execute_sql("SELECT count(*) FROM segment_member WHERE segment_id = ?",
                                                     (s.id,)).fetchone()[0]
                Segment.update(members=counts[s.key], computed_at=now).where(Segment.id == s.id).execute()
                _tell_central(s, full=people is None)
    with database.atomic():
        for s in segments:
            if s.key not in counts:
                counts[s.key] = s.members
                Segment.update(computed_at=now).where(Segment.id == s.id).execute()
        database.execute_sql("DELETE FROM segment_dirty WHERE seq <= ?", (mark,))
        _save_state({"last_run": now.isoformat(), "last_full": (now if people is None else last_full).isoformat()})
    return {"counts": counts, "mode": "full" if people is None else "incremental",
            "people": len(stats) if people is None else len(people), "reason": None if people is not None else reason}


def member_uids(segment_key: str) -> list[str]:
    """The uids of a segment's members, in order: what the central store is told."""
    return [row[0] for row in database.execute_sql(
        "SELECT l.uid FROM segment_member m JOIN segment s ON s.id = m.segment_id JOIN lead l ON l.id = m.lead_id "
        "WHERE s.key = ? ORDER BY l.uid", (segment_key,))]


def announce(segment: Segment) -> None:
    """Members changed outside the segment job (a restriction, portal/privacy.py): say so now."""
    _tell_central(segment, full=False)


def _tell_central(segment: Segment, full: bool = True) -> None:
    """An outbox event when a segment's membership changed since it was last sent. The event names
    the segment only; the push reads its members when it sends (portal/sync.py to_wire), so a run
    that moved a few people does not read every member, and what is sent is what is current.

    A full run compares a digest of the members with the last one it sent; an incremental run
    calls this only when its people moved, and forgets the digest, so the next full run sends."""
    key = f"sync.segment.{segment.key}"
    if full:
        digest = hashlib.sha256("\n".join(member_uids(segment.key)).encode()).hexdigest()
        row = StoreSetting.get_or_none(StoreSetting.key == key)
        if row is not None and row.value == json.dumps(digest):
            return
    else:
        digest = ""
    OutboxEvent.emit("segment.members", segment=segment.key)
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

"""Chain segments maintained as events arrive (issue 18): one row per person the chain's segments
follow, `chain_stat`, instead of a scan of every visit on each read.

A row holds what the built-in rules (portal/core/segment_rules.py BUILTIN) look at, as dates and
counts that do not move with time: the first visit's start, the latest start and end, the number
of visits, the average dwell, the starts of the latest few visits (as many as the rules count:
`RECENT`), the language, and the consents as they count (double opt-in) with those awaiting a
verified channel. A row exists only for a person the segments follow: not erased, latest
visit_analytics choice a grant, restricted by no store, with at least one visit that is not a
passer-by. Time does the rest at read time: `predicate` turns a rule into SQL over these dates
relative to `now` (returning becomes lapsed, then lost, without any write).

Kept true in the transaction that changes what a row is computed from: the ingest refreshes the
people its batch touched (`refresh`), the erasure and the retention purge the person they erase.
`rebuild` recomputes every row from the visits (the migration that creates the table runs it);
`scan_segments` is the former per-request computation, kept as the reference the tests hold the
maintained rows to.
"""
from __future__ import annotations

import datetime

from psycopg2.extras import execute_values

from central.people import FOLLOWED, UNRESTRICTED, counted
from portal.core.segment_rules import BUILTIN, NEW, RETURNING, LeadStat, member, window_start

# pg_advisory_xact_lock(LOCK_SPACE, person): the two-key form, apart from lock_indexes' one-key locks.
LOCK_SPACE = 18
DEFAULT_WINDOW = 90  # matches()'s window when a rule names none


def _recent_needed(rules: list[dict]) -> int:
    """How many of the latest starts a row keeps: a rule compares a window's count with visits_min
    and visits_max (and new/returning with 1 and 2), never further, so a count saturated there
    decides the same."""
    need = 2
    for rule in rules:
        need = max(need, rule.get("visits_min", 0), rule.get("visits_max", -1) + 1)
    return need


RECENT = _recent_needed([rule for _, rule in BUILTIN.values()])
COLUMNS = ("person_id", "language", "first_start", "last_start", "last_end", "visits", "dwell", "recent",
           "consents", "waiting")


# -- computing rows from the visits ---------------------------------------------------------------

def _scan(cur, where: str, params: list, batch: list[tuple] | None = None) -> list[tuple]:
    """The rows of the people `where` selects (SQL over person `p`), computed from their visits and
    consents: the same eligibility and figures as scan_segments.

    `batch`: (person, start, end) of the caller's new visits, the only ones counted (`refresh`
    passes those of people without a row, who have no other visit that counts)."""
    if batch is None:
        visits = ("FROM visit v JOIN device d ON d.id = v.device_id JOIN eligible e ON e.id = d.person_id "
                  "JOIN person p ON p.id = d.person_id WHERE NOT v.passerby ")
        who = "d.person_id"
    else:
        visits = ('FROM unnest(%s::int[], %s::timestamp[], %s::timestamp[]) AS v (person_id, start, "end") '
                  "JOIN eligible e ON e.id = v.person_id JOIN person p ON p.id = v.person_id ")
        who = "v.person_id"
        params = [*params, *_arrays(batch)]
    cur.execute(
        f"WITH eligible AS MATERIALIZED (SELECT p.id FROM person p WHERE p.erased_at IS NULL AND {where} "
        f"AND {FOLLOWED} AND {UNRESTRICTED}) "
        f"SELECT {who}, p.language, p.email_verified_at IS NOT NULL AND p.email_enc IS NOT NULL, "
        'p.phone_verified_at IS NOT NULL AND p.phone_enc IS NOT NULL, min(v.start), max(v.start), max(v."end"), '
        'avg(extract(epoch FROM v."end" - v.start)) / 60, count(*), '
        f"(array_agg(v.start ORDER BY v.start DESC))[1:{RECENT}] {visits}"
        f"GROUP BY {who}, p.language, p.email_verified_at, p.email_enc, p.phone_verified_at, p.phone_enc", params)
    found = cur.fetchall()
    recorded = _latest_consents(cur, [r[0] for r in found])
    rows = []
    for person, language, email_ok, phone_ok, first, last_start, last_end, dwell, visits, recent in found:
        channels = frozenset(k for k, ok in (("email", email_ok), ("phone", phone_ok)) if ok)
        counts, waiting = counted(recorded.get(person, {}), channels)
        rows.append((person, language, first, last_start, last_end, visits, float(dwell or 0), recent,
                     sorted(p for p, granted in counts.items() if granted), waiting))
    return rows


def _latest_consents(cur, person_ids: list[int]) -> dict[int, dict[str, bool]]:
    out: dict[int, dict[str, bool]] = {}
    if person_ids:
        cur.execute("SELECT DISTINCT ON (person_id, purpose) person_id, purpose, granted FROM consent_event "
                    "WHERE person_id = ANY(%s) ORDER BY person_id, purpose, at DESC, id DESC", (person_ids,))
        for person, purpose, granted in cur.fetchall():
            out.setdefault(person, {})[purpose] = granted
    return out


def _write(cur, rows: list[tuple]) -> None:
    if rows:
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        execute_values(cur, f"INSERT INTO chain_stat ({', '.join(COLUMNS)}) VALUES %s "
                       f"ON CONFLICT (person_id) DO UPDATE SET {updates}", rows, page_size=2000)


def refresh(cur, person_ids, visits=()) -> None:
    """Bring the rows of these people up to date, in the caller's transaction, after its changes.

    `person_ids` are recomputed from all their visits and consents. `visits` are (person, start,
    end) of the caller's new visits that are not passers-by, for people it changed in no other way:
    each of those already holding a row gets them merged into it (`_merge`); a row for the others
    is computed from these visits alone (they have no other visit that counts).

    Each person's row is locked first (an advisory lock, all of them at once in one order): two
    batches of different stores that touch one person then compute it one after the other, the
    second from what the first committed (each statement reads the latest commits). A merge is
    right for the same reason: the row it reads holds every visit committed before it, and its own
    transaction's visits are merged once, by itself."""
    full = {int(p) for p in person_ids if p is not None}
    visits = [v for v in visits if v[0] not in full]
    ids = sorted(full | {v[0] for v in visits})
    if not ids:
        return
    cur.execute("SELECT count(pg_advisory_xact_lock(%s, id)) FROM (SELECT id FROM unnest(%s::int[]) id ORDER BY id) s",
                (LOCK_SPACE, ids))
    if visits:
        merged = _merge(cur, visits)
        # Without a row (under the lock, none is being written): not followed, or followed and no
        # visit that counts so far (a followed person's visits that count are always in their row,
        # every writer keeps that true). Their row, if any, is then this batch's visits alone.
        first = [v for v in visits if v[0] not in merged]
        if first:
            _write(cur, _scan(cur, "p.id = ANY(%s)", [sorted({v[0] for v in first})], batch=first))
    if not full:
        return
    ids = sorted(full)
    rows = _scan(cur, "p.id = ANY(%s)", [ids])
    kept = [r[0] for r in rows]
    cur.execute("DELETE FROM chain_stat WHERE person_id = ANY(%s) AND NOT person_id = ANY(%s)", (ids, kept))
    _write(cur, rows)


_MERGE_SQL = (
        "WITH v AS (SELECT * FROM unnest(%s::int[], %s::timestamp[], %s::timestamp[]) AS v (person_id, start, \"end\")), "
        "b AS (SELECT person_id, count(*) AS n, min(start) AS first_start, max(start) AS last_start, "
        "max(\"end\") AS last_end, sum(extract(epoch FROM \"end\" - start)) AS seconds, "
        f"(array_agg(start ORDER BY start DESC))[1:{RECENT}] AS recent FROM v GROUP BY person_id) "
        "UPDATE chain_stat s SET first_start = least(s.first_start, b.first_start), "
        "last_start = greatest(s.last_start, b.last_start), last_end = greatest(s.last_end, b.last_end), "
        "visits = s.visits + b.n, "
        "dwell = ((round(round(s.dwell * 60 * s.visits * 1000000)::bigint::numeric / 1000000, 6) + b.seconds) "
        "/ (s.visits + b.n)) / 60, "
        f"recent = (SELECT (array_agg(t ORDER BY t DESC))[1:{RECENT}] FROM unnest(s.recent || b.recent) t) "
        "FROM b WHERE s.person_id = b.person_id RETURNING s.person_id")


def _merge(cur, visits) -> set[int]:
    """Merge new visits (person, start, end; none a passer-by) into the rows of their people, in one
    statement; returns the people whose row was merged (the others hold none: their first visit
    that counts, or a person the segments do not follow, is for the full refresh to decide).

    A person's eligibility does not move with visits alone, so a row kept stays kept. The figures
    are the scan's: counts, first and latest times, the latest RECENT starts (the top of the old
    ones and the new), and the average dwell from the exact sum of dwell seconds. The row holds the
    average, not the sum: the sum is recovered in whole microseconds (timestamps hold no finer),
    exactly while a person's dwell stays under about 40 years in all; the division is then the
    very one avg() does, so a merged row equals a recomputed one bit for bit."""
    cur.execute(_MERGE_SQL, _arrays(visits))
    return {row[0] for row in cur.fetchall()}


def _arrays(visits) -> tuple[str, str, str]:
    """(person, start, end) rows as three array literals, not lists for psycopg2 to adapt value by
    value (a third of the time). Times are datetimes or validated plain ISO text (central/ingest.py)."""
    people, starts, ends = zip(*visits)
    return ("{%s}" % ",".join(map(str, people)), '{"%s"}' % '","'.join(map(str, starts)),
            '{"%s"}' % '","'.join(map(str, ends)))


def rebuild(cur, chunk: int = 50_000) -> int:
    """Every row anew from all the visits (the `full` path): people in ranges of ids, so memory stays
    bounded. Returns the rows written."""
    cur.execute("LOCK TABLE chain_stat IN EXCLUSIVE MODE")  # batches wait (they refresh rows) until this commits
    cur.execute("DELETE FROM chain_stat")
    cur.execute("SELECT coalesce(max(id), 0) FROM person")
    top, written = cur.fetchone()[0], 0
    for low in range(0, top + 1, chunk):
        rows = _scan(cur, "p.id >= %s AND p.id < %s", [low, low + chunk])
        _write(cur, rows)
        written += len(rows)
    return written


# -- reading: the rules as SQL over the rows, relative to now ---------------------------------------

def predicate(key: str, rule: dict, now: datetime.datetime) -> tuple[str, list]:
    """SQL over a row `s` true exactly when segment_rules.member(key, rule, stat, now) is, for the
    person's LeadStat. A count of visits in a window is at least n when the n-th latest start is in
    it; a person has visits before the window when their first start is."""
    window = rule.get("window_days", DEFAULT_WINDOW)
    parts: list[str] = []
    params: list = []

    def at_least(n: int, days: int) -> str:
        if n <= 0:
            return "TRUE"
        if n > RECENT:
            raise ValueError(f"a rule counts {n} visits; rows keep {RECENT} starts (rebuild with a larger RECENT)")
        params.append(window_start(now, days))
        # The latest start is a column of its own, indexed: new and returning read as a range of it.
        return "s.last_start >= %s" if n == 1 else f"COALESCE(s.recent[{n}] >= %s, FALSE)"

    if key in (NEW, RETURNING):
        parts.append(at_least(1, window))
        again = at_least(2, window)
        params.append(window_start(now, window))
        before = f"({again} OR s.first_start < %s)"
        parts.append(before if key == RETURNING else f"NOT {before}")
    for field, value in rule.items():
        if field == "window_days":
            continue
        if field == "visits_min":
            parts.append(at_least(value, window))
        elif field == "visits_max":
            parts.append(f"NOT {at_least(value + 1, window)}")
        elif field == "recency_min_days":
            parts.append("s.last_end <= %s")
            params.append(now - datetime.timedelta(days=value))
        elif field == "recency_max_days":
            parts.append("s.last_end >= %s")
            params.append(now - datetime.timedelta(days=value))
        elif field == "first_within_days":
            parts.append("s.first_start >= %s")
            params.append(now - datetime.timedelta(days=value))
        elif field == "dwell_min_minutes":
            parts.append("s.dwell >= %s")
            params.append(value)
        elif field == "consent":
            parts.append("%s = ANY(s.consents)")
            params.append(value)
        elif field == "language":
            parts.append("s.language = %s")
            params.append(value)
        else:  # segment_rules learned a field: teach it here (the equivalence test names it)
            raise ValueError(f"no SQL for the rule field {field!r}")
    return " AND ".join(f"({p})" for p in parts) or "TRUE", params


def summary(cur, purposes, now: datetime.datetime) -> dict[str, dict]:
    """Per built-in segment: members, and per purpose those whose consent counts and those left out
    for lack of a verified channel. One pass over the rows (in parallel where PostgreSQL may), each
    rule evaluated once per row: the rows are counted by their tuple of flags (a few dozen tuples
    at most), summed here."""
    flags, params = [], []
    for key, (_, rule) in BUILTIN.items():
        where, args = predicate(key, rule, now)
        flags.append(f"({where})")
        params += args
    for purpose in purposes:
        flags += ["%s = ANY(s.consents)", "%s = ANY(s.waiting)"]
        params += [purpose, purpose]
    cur.execute(f"SELECT {', '.join(flags)}, count(*) FROM chain_stat s "
                f"GROUP BY {', '.join(str(n + 1) for n in range(len(flags)))}", params)
    out = {key: {"members": 0, "consented": dict.fromkeys(purposes, 0), "left_out_unverified": dict.fromkeys(purposes, 0)}
           for key in BUILTIN}
    for *flag, count in cur.fetchall():
        joined, per_purpose = flag[:len(BUILTIN)], flag[len(BUILTIN):]
        for key, member_of in zip(BUILTIN, joined):
            if not member_of:
                continue
            out[key]["members"] += count
            for n, purpose in enumerate(purposes):
                out[key]["consented"][purpose] += count * per_purpose[2 * n]
                out[key]["left_out_unverified"][purpose] += count * per_purpose[2 * n + 1]
    return out


def members(cur, key: str, now: datetime.datetime, waiting_any: tuple[str, ...]) -> tuple[list[int], int]:
    """A built-in segment's members in id order, and how many of them await a verified channel for
    one of `waiting_any`."""
    where, params = predicate(key, BUILTIN[key][1], now)
    cur.execute(f"SELECT person_id, s.waiting && %s::text[] FROM chain_stat s WHERE {where} ORDER BY person_id",
                [list(waiting_any), *params])
    rows = cur.fetchall()
    return [r[0] for r in rows], sum(1 for r in rows if r[1])


# -- the reference ---------------------------------------------------------------------------------

def scan_segments(cur, now: datetime.datetime) -> tuple[dict[str, list[int]], dict[int, tuple[dict, list]]]:
    """The built-in segments computed from every visit (what GET /v1/segments did per request before
    the rows were kept): members per segment, and each member's consents as they count with the
    purposes awaiting verification. Reads everything: for tests and checks, not for requests."""
    windows = sorted({rule.get("window_days", DEFAULT_WINDOW) for _, rule in BUILTIN.values()})
    sums = ", ".join("count(*) FILTER (WHERE v.start >= %s)" for _ in windows)
    stats: dict[int, LeadStat] = {}
    channels: dict[int, frozenset[str]] = {}
    cur.execute(
        f'WITH eligible AS MATERIALIZED (SELECT p.id FROM person p WHERE p.erased_at IS NULL AND {FOLLOWED} AND {UNRESTRICTED}) '
        f'SELECT d.person_id, p.language, p.email_verified_at IS NOT NULL AND p.email_enc IS NOT NULL, '
        f'p.phone_verified_at IS NOT NULL AND p.phone_enc IS NOT NULL, min(v.start), max(v."end"), '
        f'avg(extract(epoch FROM v."end" - v.start)) / 60, count(*), {sums} FROM visit v JOIN device d ON d.id = v.device_id '
        "JOIN eligible e ON e.id = d.person_id JOIN person p ON p.id = d.person_id WHERE NOT v.passerby "
        "GROUP BY d.person_id, p.language, p.email_verified_at, p.email_enc, p.phone_verified_at, p.phone_enc",
        [now - datetime.timedelta(days=w) for w in windows])
    for person_id, language, email_ok, phone_ok, first, last, dwell, visits, *counts in cur.fetchall():
        stats[person_id] = LeadStat(person_id, language, dict(zip(windows, counts)), first, last, float(dwell or 0),
                                    visits=visits)
        channels[person_id] = frozenset(k for k, ok in (("email", email_ok), ("phone", phone_ok)) if ok)
    consents: dict[int, tuple[dict, list]] = {}
    for person_id, recorded in _latest_consents(cur, list(stats)).items():
        consents[person_id] = counted(recorded, channels[person_id])
        stats[person_id].consents = frozenset(p for p, granted in consents[person_id][0].items() if granted)
    found = {key: sorted(pid for pid, s in stats.items() if member(key, rule, s, now)) for key, (_, rule) in BUILTIN.items()}
    return found, consents

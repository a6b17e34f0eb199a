"""The central `visit` table (issue 18): one partition per calendar month (UTC) of a visit's start,
created ahead, dropped whole by the retention purge; no foreign key, so deletes are explicit.

Why: COPY into a table whose rows each check two foreign keys runs at a third of a COPY without
them (docs/scaling.md), and retention that deletes rows one by one rewrites the table it shrinks.
So `visit` is `PARTITION BY RANGE (start)` (migration 0008) with no foreign key, and:

- `ensure` creates the partitions from the month of the retention cutoff to `AHEAD` months past
  the current one. The central calls it when it starts (every worker), the purge every day, and
  migration 0008 for the months its rows fall in. A visit of a month with no partition lands in
  `visit_default`, so no batch ever fails for its dates and nothing is lost: one older than the
  oldest month (a store back after a long outage) is deleted by the next purge, by the same rule
  as the months; one past the months made ahead (a store's clock gone wrong, or a central whose
  purge has not run for months) moves into its month's partition when `ensure` creates it, and
  the purge reports how many wait there (`visits_ahead`), so a clock gone wrong is seen.
- `drop_expired` drops every month partition entirely older than the retention cutoff (a visit
  is kept `central_retention_days` at least, a month more at most), deletes the default
  partition's rows of those months, and leaves `chain_stat` to the caller to refresh.
- Whoever deletes devices deletes their visits first (`forget_devices`): device erasure, person
  erasure and the retention purge. The ingest reads the devices it adds visits to `FOR KEY SHARE`
  (what the foreign key did), so an erasure committing meanwhile waits and then sees those visits.
"""
from __future__ import annotations

import datetime
import re

# pg_advisory_xact_lock(LOCK_SPACE, 0): partition changes one at a time (workers start together).
LOCK_SPACE = 8
AHEAD = 2  # months after the current one that have their partition already
LOCK_WAIT = 10  # seconds the purge waits for the lock that dropping a partition takes
MAX_BACK = 120  # months `ensure` creates back at most (a retention of decades is not ten thousand tables)
DEFAULT = "visit_default"
_NAME = re.compile(r"^visit_(\d{4})(\d{2})$")


def month_of(moment: datetime.datetime) -> datetime.date:
    return datetime.date(moment.year, moment.month, 1)


def add_months(month: datetime.date, n: int) -> datetime.date:
    index = month.year * 12 + month.month - 1 + n
    return datetime.date(index // 12, index % 12 + 1, 1)


def name_of(month: datetime.date) -> str:
    return f"visit_{month.year:04d}{month.month:02d}"


def cutoff_month(now: datetime.datetime, retention_days: int) -> datetime.date:
    """The oldest month still kept: every month before it ends before `now - retention_days`
    (January of year 1 for a retention reaching further back than the calendar)."""
    if retention_days >= (now - datetime.datetime.min).days:
        return datetime.date.min
    return month_of(now - datetime.timedelta(days=retention_days))


def months(cur) -> dict[datetime.date, str]:
    """The month partitions of `visit` (on the search path), by month."""
    cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'visit'::regclass")
    out = {}
    for (name,) in cur.fetchall():
        found = _NAME.match(name)
        if found:
            out[datetime.date(int(found[1]), int(found[2]), 1)] = name
    return out


def _lock(cur) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SPACE,))


def create_month(cur, month: datetime.date) -> None:
    """One month's partition, with the default partition's rows of that month moved into it.

    Built apart and attached (CREATE TABLE ... PARTITION OF would take an ACCESS EXCLUSIVE lock on
    `visit`, readers included). Writers wait meanwhile: `visit` itself is locked against them first
    (SHARE ROW EXCLUSIVE on it alone; reads go on), so a batch or an erasure plans its statement
    over the partitions once the month is attached. Locking only the default partition let a batch
    route a row of the month there, wait, and fail on the default's new bound (a 500), and an
    erasure's DELETE miss the rows moved. Usually a month made ahead moves no row: a short wait."""
    low, high = month, add_months(month, 1)
    name = name_of(month)
    cur.execute("LOCK TABLE ONLY visit IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(f"CREATE TABLE {name} (LIKE visit INCLUDING DEFAULTS)")
    cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (start >= %s AND start < %s)", (low, high))
    cur.execute(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE start >= %s AND start < %s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved", (low, high))
    cur.execute(f"ALTER TABLE visit ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", (low, high))
    cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")  # the partition bound says it now


def ensure(cur, now: datetime.datetime, retention_days: int, ahead: int = AHEAD) -> list[str]:
    """Create the missing month partitions from the cutoff's month (at most MAX_BACK months back)
    to `ahead` months after `now`'s; returns the tables created. Idempotent, safe in parallel."""
    current = month_of(now)
    first = max(cutoff_month(now, retention_days), add_months(current, -MAX_BACK))
    # A clock near the end of the calendar: December 9999 would end in year 10000, which Python's
    # dates do not hold; its visits wait in the default partition.
    last = min(current.year * 12 + current.month - 1 + ahead, 9999 * 12 + 10)
    wanted = [add_months(first, n) for n in range(last - (first.year * 12 + first.month - 1) + 1)]
    have = months(cur)
    if all(m in have for m in wanted):
        return []  # the usual case: no lock taken
    _lock(cur)
    have = months(cur)
    created = []
    for month in wanted:
        if month not in have:
            create_month(cur, month)
            created.append(name_of(month))
    return created


def expired(cur, now: datetime.datetime, retention_days: int) -> tuple[list[str], datetime.date]:
    """The month partitions entirely older than the cutoff, and the oldest month kept."""
    keep = cutoff_month(now, retention_days)
    return sorted(name for month, name in months(cur).items() if month < keep), keep


def drop_expired(cur, now: datetime.datetime, retention_days: int) -> dict:
    """Drop the partitions of months entirely older than the cutoff and the default partition's rows
    of those months. The caller refreshes chain_stat (stale_people) after: the rows whose first
    visit is older than the oldest month kept. Takes an ACCESS EXCLUSIVE lock on `visit` until the
    caller commits (batches wait): commit soon."""
    _lock(cur)
    gone, keep = expired(cur, now, retention_days)
    rows = 0
    for name in gone:  # counted first: the count reads the month, batches go on meanwhile
        cur.execute(f"SELECT count(*) FROM {name}")
        rows += cur.fetchone()[0]
    for name in gone:
        cur.execute(f"DROP TABLE {name}")
    cur.execute(f"DELETE FROM {DEFAULT} WHERE start < %s", (keep,))
    rows += cur.rowcount
    return {"partitions_dropped": gone, "visits_dropped": rows, "oldest_month_kept": keep.isoformat(),
            "visits_ahead": ahead(cur, now)}


def ahead(cur, now: datetime.datetime) -> int:
    """Visits in the default partition dated after the current month's partitions: a store's clock
    gone wrong (or the purge not run for months)."""
    cur.execute(f"SELECT count(*) FROM {DEFAULT} WHERE start >= %s", (month_of(now),))
    return cur.fetchone()[0]


def stale_stats(cur, keep: datetime.date) -> list[int]:
    """People whose chain_stat row counts a visit older than the oldest month kept (dropped)."""
    cur.execute("SELECT person_id FROM chain_stat WHERE first_start < %s ORDER BY person_id", (keep,))
    return [row[0] for row in cur.fetchall()]


def forget_devices(cur, where: str, params: tuple) -> list[int | None]:
    """Delete the devices `where` selects (SQL over `device`) and their visits; returns their owners
    (person ids, None for devices linked to no one). Devices first: their row locks make a batch
    still adding visits to them (it holds them FOR KEY SHARE) commit before the visits are deleted."""
    cur.execute(f"DELETE FROM device WHERE {where} RETURNING id, person_id", params)
    rows = cur.fetchall()
    if rows:
        # (A month being made meanwhile holds `visit` against writers: this DELETE waits, then is
        # planned over the partitions with the new month attached; see create_month.)
        cur.execute("DELETE FROM visit WHERE device_id = ANY(%s)", ([r[0] for r in rows],))
    return [r[1] for r in rows]


def purge_months(db, now: datetime.datetime, retention_days: int, dry_run: bool = False) -> dict:
    """The purge's part for visits, each step its own transaction: the partitions ahead, the months
    dropped (a short ACCESS EXCLUSIVE lock on `visit`, given up after LOCK_WAIT so batches never
    queue behind it for long: the next day's purge tries again), then the chain_stat rows that
    counted a dropped visit. A crash between the last two leaves rows that the next run finds
    again (their first visit is older than the oldest month kept)."""
    from central import chainstat  # it builds on central.people, which imports this module

    if dry_run:  # changes nothing, partitions included
        with db.atomic():
            gone, keep = expired(db.cursor(), now, retention_days)
        return {"partitions_dropped": gone, "oldest_month_kept": keep.isoformat()}
    with db.atomic():
        created = ensure(db.cursor(), now, retention_days)
    with db.atomic():
        cur = db.cursor()
        cur.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}s'")
        result = drop_expired(cur, now, retention_days)
    with db.atomic():
        cur = db.cursor()
        stale = stale_stats(cur, datetime.date.fromisoformat(result["oldest_month_kept"]))
        chainstat.refresh(cur, stale)
    return {"partitions_created": created, **result, "chain_stat_refreshed": len(stale)}

"""Visits by month at the central store (issue 18, central/visits.py), printed as JSON: the retention
purge dropping a month of visits (its partition) beside a DELETE of the same rows in the same run,
and migration 0008 moving a populated visit table into month partitions beside a bare copy of
the same rows and indexes into one plain table in the same run.

    .venv/bin/python tests/perf/bench_purge.py [--visits 1000000]
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402
from tests.perf import pgcopy  # noqa: E402

DEVICES = 5000
RETENTION = 365


def visit_lines(n: int, month: datetime.date, devices: list[int]) -> io.StringIO:
    """`n` visits spread over `month` (store, device, start, end, passerby), tab-separated."""
    start = datetime.datetime.combine(month, datetime.time())
    step = 27 * 86400 / n
    return io.StringIO("".join(
        f"bench\t{devices[i % len(devices)]}\t{start + datetime.timedelta(seconds=i * step)}"
        f"\t{start + datetime.timedelta(seconds=i * step + 1500)}\t{'t' if i % 9 == 0 else 'f'}\n" for i in range(n)))


def timed(conn, *statements) -> float:
    """Run the statements and commit: seconds."""
    cur = conn.cursor()
    begin = time.perf_counter()
    for sql, args in statements:
        cur.execute(sql, args)
    conn.commit()
    return time.perf_counter() - begin


def devices(conn) -> list[int]:
    cur = conn.cursor()
    cur.execute("INSERT INTO store (id, name, key_enc, created_at, events_applied) VALUES ('bench', 'b', '\\x00', now(), 0) "
                "ON CONFLICT DO NOTHING")
    cur.execute("INSERT INTO device (store_id, mac) SELECT 'bench', 'mac-' || g FROM generate_series(1, %s) g "
                "ON CONFLICT DO NOTHING", (DEVICES,))
    cur.execute("SELECT id FROM device ORDER BY id")
    ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


def purge_figures(dsn: str, n: int) -> dict:
    """A central with `n` visits in an expired month and `n` in the current one: DELETE of the expired
    month's rows (and the VACUUM that gives their space back), then the same rows again and the
    purge's drop of their partition."""
    from central import create_app, visits
    from central.db import database

    settings = pgcopy.central_settings(dsn, "purge", central_retention_days=RETENTION)
    create_app(settings)
    database.close_all()
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    old = visits.add_months(visits.cutoff_month(now, RETENTION), -2)
    conn = pgcopy.connect(dsn, settings.central_schema)
    try:
        ids = devices(conn)
        cur = conn.cursor()
        visits.ensure(cur, now, RETENTION + 120)  # the central has run for long: the old month has its partition
        conn.commit()
        columns = 'visit (store_id, device_id, start, "end", passerby)'
        cur.copy_expert(f"COPY {columns} FROM STDIN", visit_lines(n, visits.month_of(now), ids))
        cur.copy_expert(f"COPY {columns} FROM STDIN", visit_lines(n, old, ids))
        conn.commit()
        cur.execute("ANALYZE visit")
        conn.commit()
        high = visits.add_months(old, 1)
        wal = wal_position(cur)
        delete = timed(conn, ('DELETE FROM visit WHERE start >= %s AND start < %s', (old, high)))
        conn.autocommit = True
        vacuum = timed(conn, (f"VACUUM {visits.name_of(old)}", None))
        conn.autocommit = False
        delete_wal = wal_since(cur, wal)
        cur.copy_expert(f"COPY {columns} FROM STDIN", visit_lines(n, old, ids))
        conn.commit()
        wal = wal_position(cur)
        begin = time.perf_counter()
        dropped = visits.drop_expired(cur, now, RETENTION)
        conn.commit()
        drop = time.perf_counter() - begin
        drop_wal = wal_since(cur, wal)
        cur.execute("SELECT count(*) FROM visit")
        left = cur.fetchone()[0]
    finally:
        conn.close()
        pgserver.drop_schema(dsn, settings.central_schema)
    assert dropped["visits_dropped"] == n and visits.name_of(old) in dropped["partitions_dropped"], dropped
    assert left == n, left
    return {"visits_per_month": n, "month_dropped": visits.name_of(old), "drop_seconds": round(drop, 3),
            "delete_seconds": round(delete, 2), "vacuum_after_delete_seconds": round(vacuum, 2),
            "drop_speedup_over_delete_and_vacuum": round((delete + vacuum) / drop, 1),
            "drop_wal_bytes": drop_wal, "delete_and_vacuum_wal_bytes": delete_wal}


def wal_position(cur) -> str:
    cur.execute("SELECT pg_current_wal_insert_lsn()::text")
    position = cur.fetchone()[0]
    cur.connection.commit()
    return position


def wal_since(cur, position: str) -> int:
    """WAL bytes written since `position` (on the whole server: nothing else runs on it meanwhile)."""
    cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)::bigint", (position,))
    written = cur.fetchone()[0]
    cur.connection.commit()
    return written


def migration_figures(dsn: str, n: int) -> dict:
    """Migration 0008 on a central at 0007 holding `n` visits over the last 12 months, beside a
    bare copy of the same rows with the same key and indexes, in one plain table (CREATE TABLE AS,
    CREATE INDEX), on the same server."""
    from playhouse.migrations import Runner

    from central import visits
    from central.db import MIGRATIONS_DIR, database, init_db

    settings = pgcopy.central_settings(dsn, "migrate")
    schema = settings.central_schema
    init_db(dsn, schema, migrate=False)
    with database.connection_context():
        Runner(database, directory=str(MIGRATIONS_DIR), schema=schema).up(target="0007_chain_stat")
    database.close_all()
    conn = pgcopy.connect(dsn, schema)
    try:
        ids = devices(conn)
        cur = conn.cursor()
        current = visits.month_of(datetime.datetime.now(datetime.timezone.utc))
        for m in range(12):
            month = visits.add_months(current, -m)
            cur.copy_expert('COPY visit (store_id, device_id, start, "end", passerby) FROM STDIN',
                            visit_lines(n // 12, month, ids))
        conn.commit()
        bare = timed(conn, ("CREATE TABLE visit_bare_copy AS SELECT * FROM visit", None),
                     ("CREATE UNIQUE INDEX ON visit_bare_copy (id, start)", None),
                     ("CREATE INDEX ON visit_bare_copy (store_id, start)", None),
                     ("CREATE INDEX ON visit_bare_copy (device_id)", None))
        cur.execute("SELECT count(*) FROM visit")
        count = cur.fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    try:
        init_db(dsn, schema, migrate=False)
        with database.connection_context():
            begin = time.perf_counter()
            Runner(database, directory=str(MIGRATIONS_DIR), schema=schema).up()
            migrate = time.perf_counter() - begin
            moved = database.execute_sql("SELECT count(*) FROM visit").fetchone()[0]
    finally:
        database.close_all()
        pgserver.drop_schema(dsn, schema)
    assert moved == count, (moved, count)
    return {"visits_migrated": count, "migration_seconds": round(migrate, 2), "bare_copy_seconds": round(bare, 2),
            "migration_seconds_per_million": round(migrate / count * 1e6, 1),
            "ratio_to_bare_copy": round(migrate / bare, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=1_000_000, help="visits per month for the purge, in all for the migration")
    args = parser.parse_args()
    load = os.getloadavg()
    with pgserver.postgres_dsn() as dsn:
        purge = purge_figures(dsn, args.visits)
        migration = migration_figures(dsn, args.visits)
    result = {"benchmark": "purge", "load_average_at_start": [round(x, 2) for x in load],
              "postgres": "FOOTFALL_TEST_DSN" if os.environ.get(pgserver.ENV_DSN) else "throwaway (fsync off)",
              "purge": purge, "migration": migration}
    result["goals"] = {
        # Dropping a month is a catalog change (and a count of its rows): DELETE marks every row, VACUUM then
        # visits them again, and both write WAL for each, which a replica and the backups replay.
        "drop<=(delete+vacuum)/3": purge["drop_seconds"] * 3 <= purge["delete_seconds"] + purge["vacuum_after_delete_seconds"],
        "drop_wal<=delete_wal/100": purge["drop_wal_bytes"] * 100 <= purge["delete_and_vacuum_wal_bytes"],
        # Moving the rows is one INSERT ... SELECT routed to the months and an index build per partition.
        "migration<=3x_bare_copy": migration["migration_seconds"] <= 3 * migration["bare_copy_seconds"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

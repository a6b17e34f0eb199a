"""Central read API figures, printed as JSON (issue 18): with the chain's people and visits in
PostgreSQL (1,000,000 people, 10,000,000 visits over 200 stores by default), p50/p95 of GET
/v1/segments, a page of GET /v1/people and a segment export over HTTP (`footfall central serve`
with its default workers), beside GET /openapi.json (no database) as the baseline in the same run;
the former per-request scan of every visit (chainstat.scan_segments), timed once, beside them; the
full rebuild of the kept rows (what migration 0007 runs on an upgraded central); and what keeping the
rows adds to applying a batch of 500 visits (the same batches applied with and without it: visits
alone, so merged into the rows, central/chainstat.py `_merge`).

    .venv/bin/python tests/perf/bench_central_read.py [--people 1000000] [--visits 10000000] [--stores 200]

The rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series, seeded), the
visit table's indexes and foreign keys dropped during the load and made again after, as a restore
would. Contacts are real ciphertexts of the central's vault, a few thousand of them shared by
everyone (decrypting one costs the same as decrypting any): the export decrypts every member's.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402
from tests.perf import pgcopy  # noqa: E402
from tests.livecheck import footfall_process  # noqa: E402

BLOBS = 4096  # distinct ciphertexts shared by the people
NOW_SQL = "TIMESTAMP '2026-11-25 12:00:00'"


def mac(device: int) -> str:
    h = f"{device:010x}"
    return "3c:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def store_name(n: int) -> str:
    return f"store-{n:03d}"


def load(cur, vault, people: int, visits: int, stores: int) -> dict[str, float]:
    """Fill the central's tables; returns seconds per step."""
    took: dict[str, float] = {}
    cur.execute("CREATE TEMP TABLE blob (k int PRIMARY KEY, email bytea, name bytea)")
    from psycopg2.extras import execute_values
    execute_values(cur, "INSERT INTO blob VALUES %s",
                   [(k, vault.encrypt(f"guest{k}@example.com", "person.email"), vault.encrypt(f"Guest {k}", "person.name"))
                    for k in range(BLOBS)], page_size=1000)
    home = f"'store-' || lpad(((g - 1) % {stores})::text, 3, '0')"
    other = f"'store-' || lpad((((g - 1) % {stores} + 1 + g % 50) % {stores})::text, 3, '0')"
    mac_sql = "'3c:' || regexp_replace(lpad(to_hex({x}), 10, '0'), '(..)(..)(..)(..)(..)', '\\1:\\2:\\3:\\4:\\5')"
    steps = [
        ("person", f"INSERT INTO person (id, email_index, email_enc, name_enc, language, created_at, updated_at, "
                   f"email_verified_at) SELECT g, md5('bench' || g), b.email, b.name, CASE WHEN g % 5 = 0 THEN 'en' ELSE 'vi' "
                   f"END, {NOW_SQL} - interval '400 days', {NOW_SQL} - interval '1 day', {NOW_SQL} - interval '400 days' "
                   f"FROM generate_series(1, {people}) g JOIN blob b ON b.k = g % {BLOBS}"),
        ("store_lead", f"INSERT INTO store_lead (store_id, lead_uid, person_id, verified_at) "
                       f"SELECT {home}, 'L' || g, g, {NOW_SQL} - interval '400 days' FROM generate_series(1, {people}) g"),
        # Visit analytics granted by 90 %, emails by 60 %, ad audiences by 30 %; SMS by 15 % (no phone: left out).
        ("consent_event", "INSERT INTO consent_event (person_id, store_id, purpose, granted, at, policy_sha256, method) "
                          f"SELECT g, {home}, c.purpose, (g::bigint * 7919) % 100 < c.share, {NOW_SQL} - interval '400 days', "
                          f"repeat('c', 64), 'form' FROM generate_series(1, {people}) g, (VALUES ('visit_analytics', 90), "
                          "('marketing_email', 60), ('ad_audiences', 30), ('marketing_sms', 15)) c (purpose, share)"),
        ("device", f"INSERT INTO device (id, store_id, mac, person_id) SELECT g, {home}, {mac_sql.format(x='g')}, g "
                   f"FROM generate_series(1, {people}) g UNION ALL SELECT {people} + g, {other}, "
                   f"{mac_sql.format(x=f'{people} + g')}, g FROM generate_series(1, {people}) g WHERE (g * 31) % 10 < 3"),
        # Some people come often, most now and then (a skewed draw); recent months busier than old ones.
        ("visit", f"INSERT INTO visit (store_id, device_id, start, \"end\", passerby) "
                  f"SELECT CASE WHEN two THEN {other} ELSE {home} END, CASE WHEN two THEN {people} + g ELSE g END, "
                  f"st, st + (5 + random() * 120) * interval '1 minute', random() < 0.05 "
                  f"FROM (SELECT g, (g * 31) % 10 < 3 AND random() < 0.3 AS two, "
                  f"{NOW_SQL} - power(random(), 1.6) * interval '365 days' AS st "
                  f"FROM (SELECT 1 + floor({people} * power(random(), 1.5))::int AS g "
                  f"FROM generate_series(1, {visits})) x) y"),
    ]
    cur.execute("SELECT setseed(0.18)")
    for table, sql in steps:
        started = time.perf_counter()
        with bare(cur, table):
            cur.execute(sql)
        took[table] = round(time.perf_counter() - started, 1)
    for table in ("person", "device"):
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    return took


class bare:
    """A table without its secondary indexes and foreign keys while it is filled; made again after."""

    def __init__(self, cur, table: str):
        self.cur, self.table = cur, table

    def __enter__(self):
        cur = self.cur
        cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype = 'f'", (self.table,))
        self.fks = cur.fetchall()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND schemaname = current_schema() "
                    "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
                    (self.table, self.table))
        self.indexes = cur.fetchall()
        for name, _ in self.fks:
            cur.execute(f'ALTER TABLE {self.table} DROP CONSTRAINT "{name}"')
        for name, _ in self.indexes:
            cur.execute(f'DROP INDEX "{name}"')

    def __exit__(self, *exc):
        if exc[0] is None:
            for _, definition in self.indexes:  # a partitioned table's reads "ON ONLY": that would skip its partitions
                self.cur.execute(definition.replace(" ON ONLY ", " ON ", 1))
            for name, definition in self.fks:
                self.cur.execute(f'ALTER TABLE {self.table} ADD CONSTRAINT "{name}" {definition}')


def timed_get(port: int, path: str, token: str | None, n: int) -> dict:
    """n sequential GETs on one keep-alive connection: p50/p95 in ms, the status and body size of the last."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    times, status, size = [], 0, 0
    for _ in range(n):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        times.append((time.perf_counter() - started) * 1000)
        status, size = answer.status, len(body)
    conn.close()
    times.sort()
    return {"n": n, "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1), "status": status, "bytes": size}


def batch_cost(capp, stores: int, people: int, rounds: int) -> dict:
    """Batches of 500 visits of store-000's people, applied in this process with the rows kept and,
    alternately, with chainstat.refresh left out: the median ms of each."""
    import datetime

    from central import chainstat, ingest
    from central.db import database
    from central.models import Store
    from portal.core.events import validate
    vault = capp.extensions["central"]["vault"]
    home = list(range(1, people + 1, stores))  # people whose home store is store-000
    keep = chainstat.refresh
    timings: dict[str, list[float]] = {"with": [], "without": []}
    seq, when = 0, datetime.datetime(2026, 11, 25, 8, 0)
    with database.connection_context():
        for r in range(2 * rounds):
            mode = "with" if r % 2 == 0 else "without"
            events = []
            for i in range(500):
                seq += 1
                person = home[(r * 500 + i) % len(home)]
                start = when + datetime.timedelta(seconds=seq)
                events.append(validate({"uid": uuid.uuid4().hex, "topic": "visit.closed", "at": start.isoformat(),
                                        "seq": seq, "data": {"device": mac(person), "start": start.isoformat(sep=" "),
                                                             "end": (start + datetime.timedelta(minutes=30)).isoformat(sep=" "),
                                                             "passerby": False}}))
            chainstat.refresh = keep if mode == "with" else (lambda cur, ids, visits=(): None)
            try:
                started = time.perf_counter()
                out = ingest.apply(Store.get_by_id(store_name(0)), events, vault)
                timings[mode].append((time.perf_counter() - started) * 1000)
            finally:
                chainstat.refresh = keep
            assert out["applied"] == 500 and out["ignored_anonymous"] == 0, out
    out = {f"{mode}_maintenance_median_ms": round(statistics.median(ts), 1) for mode, ts in timings.items()}
    out["overhead_percent"] = round(100 * (out["with_maintenance_median_ms"] / out["without_maintenance_median_ms"] - 1), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20, help="GETs per endpoint")
    parser.add_argument("--batches", type=int, default=10, help="batches of 500 visits per mode")
    args = parser.parse_args()
    with pgserver.postgres_dsn() as dsn:  # FOOTFALL_TEST_DSN when set, else a throwaway server
        return run(args, dsn)


def run(args: argparse.Namespace, dsn: str) -> int:
    from central import add_store, add_token, chainstat
    from central import create_app as central_app
    from central.db import database as central_db
    settings = pgcopy.central_settings(dsn, "read", central_transfers_assessed="meta:2026-01-01,google:2026-01-01")
    schema = settings.central_schema
    capp = central_app(settings)
    vault = capp.extensions["central"]["vault"]
    result: dict = {"benchmark": "central_read", "people": args.people, "visits": args.visits, "stores": args.stores,
                    "postgres": "FOOTFALL_TEST_DSN" if os.environ.get(pgserver.ENV_DSN) else "throwaway (fsync off)"}
    try:
        with central_db.connection_context():
            for n in range(args.stores):
                add_store(store_name(n), f"Store {n}", vault)
            token = add_token("bench", ["people:read", "exports:read", "stores:read"])
            with central_db.atomic():
                result["load_seconds"] = load(central_db.cursor(), vault, args.people, args.visits, args.stores)
            central_db.execute_sql("ANALYZE")  # as after a restore
            started = time.perf_counter()
            with central_db.atomic():
                result["rows_kept"] = chainstat.rebuild(central_db.cursor())
            result["rebuild_seconds"] = round(time.perf_counter() - started, 1)
            central_db.execute_sql("ANALYZE chain_stat")
            import datetime
            started = time.perf_counter()
            found, _ = chainstat.scan_segments(central_db.cursor(), datetime.datetime.utcnow())
            result["former_scan_seconds"] = round(time.perf_counter() - started, 1)
            result["members"] = {key: len(ids) for key, ids in found.items()}
        central_db.close_all()
        env = pgcopy.serve_env(settings)
        os.environ.pop("FOOTFALL_CENTRAL_WORKERS", None)  # the default workers
        smallest = min((k for k, n in result["members"].items() if n), key=result["members"].get)
        with footfall_process(["central", "serve", "--port", "0"], env, timeout=120) as (proc, port):
            n = args.requests
            result["http"] = {
                "baseline_openapi": timed_get(port, "/openapi.json", None, n),
                "segments": timed_get(port, "/v1/segments", token, n),
                "people_page_100": timed_get(port, f"/v1/people?after={args.people // 2}&limit=100", token, n),
                f"export_{smallest}_csv": timed_get(port, f"/v1/segments/{smallest}/export/csv", token, max(3, n // 4)),
            }
        result["batch_of_500_visits"] = batch_cost(capp, args.stores, args.people, args.batches)
    finally:
        central_db.close_all()
        pgserver.drop_schema(dsn, schema)
    http_ = result["http"]
    cost = result["batch_of_500_visits"]
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = {
        "segments_p95_under_1s": http_["segments"]["p95_ms"] < 1000,
        "people_page_p95_under_200ms": http_["people_page_100"]["p95_ms"] < 200,
        "chain_stat_batch_overhead<=+50%": cost["overhead_percent"] <= 50,
        "segments_faster_than_the_former_scan": http_["segments"]["p95_ms"] < 1000 * result["former_scan_seconds"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

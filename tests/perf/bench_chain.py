"""A chain's figures, printed as JSON (issue 18): 200 stores pushing at once into one central store.

Each simulated store is enrolled (`add_store`: its own key) and pushes, over real HTTP to
`footfall central serve` with its default workers, signed gzip batches of the events an appliance
sends (people with verified contacts, their consents, their devices' links, then mostly closed
visits), numbered with a growing seq as an outbox numbers them, one batch in flight per store,
oldest first; every fifth batch is sent twice (the retry of a lost answer). Some shoppers visit
several stores (merged by blind index). Printed: aggregate events/s, batch latency (median, p99),
what the central store holds against what was sent (nothing lost, nothing doubled), beside a bare
COPY of the same visit rows into the same PostgreSQL in the same run (into a bare table, into the
central's own visit table, partitioned by month, and into the former one with foreign keys).

    .venv/bin/python tests/perf/bench_chain.py [--stores 200] [--batches 5] [--batch 500]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402
from tests.perf import pgcopy  # noqa: E402
from tests.livecheck import footfall_process  # noqa: E402

VISITS_PER_PERSON = 6  # each person: a lead, two consents, a device link, then these visits
SHARED_EVERY = 50  # one person in 50 also shops at other stores (the same email: one person)
SEQ0 = 1_700_000_000_000_000  # µs on a clock (2023), as the appliance's outbox numbers its events; never ahead of the central's


def index(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def store_events(store: int, count: int) -> list[dict]:
    """A store's outbox: `count` events in order, each with its seq."""
    events: list[dict] = []
    p = 0
    while len(events) < count:
        uid = f"s{store}-p{p}"
        email = f"shared{p // SHARED_EVERY}@example.com" if p % SHARED_EVERY == 0 else f"{uid}@example.com"
        mac = f"3c:22:{store >> 8:02x}:{store & 255:02x}:{(p >> 8) & 255:02x}:{p & 255:02x}"
        at = "2026-11-20T10:00:00"
        person = [
            {"topic": "lead.upserted", "data": {"lead": uid, "email": email, "phone": None, "name": "Lan", "language": "vi",
                                               "email_index": index(email), "phone_index": None, "email_verified": True,
                                               "phone_verified": False, "chain_sharing": True}},
            {"topic": "consent.recorded", "data": {"lead": uid, "purpose": "wifi_terms", "granted": True,
                                                  "policy_sha256": "a" * 64, "method": "portal_form"}},
            {"topic": "consent.recorded", "data": {"lead": uid, "purpose": "marketing_email", "granted": True,
                                                  "policy_sha256": "b" * 64, "method": "portal_form"}},
            {"topic": "device.linked", "data": {"device": mac, "lead": uid}},
        ]
        for v in range(VISITS_PER_PERSON):
            day = 1 + (p + v) % 28
            person.append({"topic": "visit.closed", "data": {
                "device": mac, "start": f"2026-10-{day:02d} {8 + v:02d}:00:00", "end": f"2026-10-{day:02d} {8 + v:02d}:40:00",
                "passerby": False}})
        for e in person:
            events.append({"uid": uuid.uuid4().hex, "topic": e["topic"], "at": at, "data": e["data"],
                           "seq": SEQ0 + len(events) * 3})
        p += 1
    return events[:count]


def post(port: int, store_id: str, key: bytes, body: bytes) -> tuple[int, dict, float]:
    from portal.core import wire
    started = time.perf_counter()
    ts = int(time.time())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/v1/ingest", body=body, headers={
            "Content-Type": "application/octet-stream", "Content-Encoding": "gzip", wire.STORE_HEADER: store_id,
            wire.TIMESTAMP_HEADER: str(ts), wire.SIGNATURE_HEADER: wire.sign(key, ts, body)})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw or b"{}"), time.perf_counter() - started


def copy_baseline(dsn: str, schema: str, visits: list[tuple]) -> float:
    """COPY the same visit rows (store, device, start, end, passerby) into a bare table: rows/s."""
    return pgcopy.bare_visits_rate(dsn, schema, ((s, d, a, b, False) for s, d, a, b in visits))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5, help="batches per store")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    args = parser.parse_args()
    with pgserver.postgres_dsn() as dsn:  # FOOTFALL_TEST_DSN when set, else a throwaway server
        return run(args, dsn)


def run(args: argparse.Namespace, dsn: str) -> int:
    from central import add_store
    from central import create_app as central_app
    from central.db import database as central_db

    settings = pgcopy.central_settings(dsn, "chain")
    schema = settings.central_schema
    capp = central_app(settings)
    ids = [f"store-{i:03d}" for i in range(args.stores)]
    with central_db.connection_context():
        keys = {sid: add_store(sid, f"Store {sid}", capp.extensions["central"]["vault"]) for sid in ids}
    central_db.close_all()

    planned: dict[str, list[bytes]] = {}
    sent = {"events": 0, "visits": 0, "consents": 0}
    emails: set[str] = set()
    visits: list[tuple] = []
    for n, sid in enumerate(ids):
        events = store_events(n, args.batches * args.batch)
        planned[sid] = [gzip.compress(json.dumps({"events": events[i:i + args.batch]}, separators=(",", ":")).encode(), 6)
                        for i in range(0, len(events), args.batch)]
        sent["events"] += len(events)
        for e in events:
            if e["topic"] == "visit.closed":
                visits.append((sid, e["data"]["device"], e["data"]["start"], e["data"]["end"]))
            elif e["topic"] == "consent.recorded":
                sent["consents"] += 1
            elif e["topic"] == "lead.upserted":
                emails.add(e["data"]["email"])
    sent["visits"], sent["people"] = len(visits), len(emails)

    # The central store as shipped: `footfall central serve` with its default workers (central_workers).
    env = pgcopy.serve_env(settings)
    os.environ.pop("FOOTFALL_CENTRAL_WORKERS", None)  # footfall_process passes this process's environment on
    latencies: list[float] = []
    answers = {"applied": 0, "duplicates": 0}
    failures: list[str] = []
    lock = threading.Lock()
    result: dict = {"benchmark": "chain", "stores": args.stores, "batches_per_store": args.batches,
                    "events_per_batch": args.batch, "central_workers": settings.central_workers,
                    "postgres": "FOOTFALL_TEST_DSN" if os.environ.get(pgserver.ENV_DSN) else "throwaway (fsync off)"}
    with footfall_process(["central", "serve", "--port", "0"], env, timeout=120) as (proc, port):
        start_line = threading.Barrier(args.stores + 1)

        def store(sid: str) -> None:
            start_line.wait()
            for n, body in enumerate(planned[sid]):
                for _ in range(2 if n % 5 == 4 else 1):  # every fifth batch twice: a lost answer's retry
                    try:
                        status, answer, took = post(port, sid, keys[sid], body)
                    except OSError as exc:
                        status, answer, took = 0, {"error": str(exc)}, 0.0
                    with lock:
                        if status != 200:
                            failures.append(f"{sid}: {status} {answer.get('error', '')}"[:200])
                            return
                        latencies.append(took)
                        answers["applied"] += answer["applied"]
                        answers["duplicates"] += answer["duplicates"]

        threads = [threading.Thread(target=store, args=(sid,)) for sid in ids]
        for t in threads:
            t.start()
        start_line.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    try:
        with central_db.connection_context():
            one = lambda sql: central_db.execute_sql(sql).fetchone()[0]  # noqa: E731
            held = {"events_applied": one("SELECT coalesce(sum(events_applied), 0) FROM store"),
                    "people": one("SELECT count(*) FROM person"), "consents": one("SELECT count(*) FROM consent_event"),
                    "visits": one("SELECT count(*) FROM visit"),
                    "visits_doubled": one('SELECT count(*) FROM (SELECT store_id, device_id, start FROM visit '
                                          'GROUP BY 1, 2, 3 HAVING count(*) > 1) d')}
        copy_rate = copy_baseline(dsn, schema, visits)
        from tests.perf.bench_sync import copy_into_visit
        table_rate, fk_rate = copy_into_visit(dsn, schema, [(s, d, a, b, False) for s, d, a, b in visits])
    finally:
        central_db.close_all()
        pgserver.drop_schema(dsn, schema)
    rate = sent["events"] / elapsed
    exact = (not failures and held["events_applied"] == sent["events"] == answers["applied"]
             and held["people"] == sent["people"] and held["consents"] == sent["consents"]
             and held["visits"] == sent["visits"] and held["visits_doubled"] == 0)
    p99 = percentile(latencies, 0.99) if latencies else None
    result.update({
        "seconds": round(elapsed, 1), "events_sent": sent["events"], "requests": len(latencies),
        "events_per_s": round(rate), "batch_latency_s": {"median": round(statistics.median(latencies), 3) if latencies else None,
                                                         "p99": round(p99, 3) if p99 is not None else None},
        "duplicates_answered": answers["duplicates"], "failures": failures[:5], "sent": sent, "held": held,
        "baseline": {"copy_rows_per_s": round(copy_rate), "rows": len(visits),
                     "copy_into_visit_rows_per_s": round(table_rate),  # the central's table: by month, no foreign key
                     "copy_into_visit_with_fks_rows_per_s": round(fk_rate)},  # the table before migration 0008
        "ratio_to_copy": round(rate / copy_rate, 3), "ratio_to_copy_into_visit": round(rate / table_rate, 3)})
    result["goals"] = {"nothing_lost_or_doubled": exact, "ratio_to_copy>=0.2": rate / copy_rate >= 0.2,
                       "p99_batch_latency_s<=10": p99 is not None and p99 <= 10}
    print(json.dumps(result, indent=2))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

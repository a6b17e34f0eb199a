"""Sync figures, printed as JSON (issues 6, 18): events/s from a store's outbox to committed rows in
PostgreSQL over HTTP (signed gzip batches, the central served by gunicorn, IN_FLIGHT batches in
flight), beside a bare COPY of the same rows measured in the same run (into a bare table, into the
central's own visit table, partitioned by month without foreign keys, and into the visit table as
it was before, with its foreign keys); the time for one store to drain a backlog; and where the
time goes, each stage alone on the same batches: the appliance reading and encoding its outbox
(sync.prepare), the central inflating, parsing and validating (central.batch), and the central
applying them in its process without HTTP (central.ingest.apply, into a second store).

    .venv/bin/python tests/perf/bench_sync.py [--events 1000000] [--batch 5000] [--in-flight 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import pgserver  # noqa: E402
from tests.perf import pgcopy  # noqa: E402
from tests.livecheck import footfall_process  # noqa: E402


DEVICES = 5000


def mac_of(i: int) -> str:
    d = i % DEVICES
    return f"3c:22:fb:00:{d >> 8:02x}:{d & 255:02x}"


def fill_outbox(n: int, vault) -> list[tuple]:
    """A store's backlog: the 5,000 people behind its devices (a verified lead and its device link
    each: the central store keeps no visit of a device linked to no one, issue 15), then `n`
    closed visits of those devices (what a store mostly sends). Returns the visits' rows."""
    from portal.db import database
    from portal.models import Lead
    leads = []
    for d in range(DEVICES):
        email = f"bench{d}@example.com"
        leads.append({"uid": f"bench-{d}", "email_enc": vault.encrypt(email, "lead.email"),
                      "email_index": vault.blind_index("email", email), "email_verified_at": "2026-11-23 08:00:00"})
    people = []
    for d in range(DEVICES):
        people.append((uuid.uuid4().hex, "lead.upserted", json.dumps({"lead": f"bench-{d}"}), "2026-11-23 08:00:00", 0))
        people.append((uuid.uuid4().hex, "device.linked", json.dumps({"device": mac_of(d), "lead": f"bench-{d}"}),
                       "2026-11-23 08:00:00", 0))
    rows = []
    first = int(time.time()) - 90 * 86400  # recent: in the visit table's month partitions (central/visits.py)
    for i in range(n):
        start = first + i * 7
        rows.append((uuid.uuid4().hex, "visit.closed", json.dumps({
            "device": mac_of(i), "start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start)),
            "end": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 1500)), "passerby": i % 9 == 0, "source": "lan"}),
            "2026-11-23 08:00:00", 0))
    with database.atomic():
        for i in range(0, DEVICES, 500):
            Lead.insert_many(leads[i:i + 500]).execute()
        everything = people + rows
        for i in range(0, len(everything), 50_000):  # seq: numbered by migration 0023's trigger
            database.cursor().executemany("INSERT INTO outbox_event (uid, topic, payload, created_at, attempts) "
                                          "VALUES (?, ?, ?, ?, ?)", everything[i:i + 50_000])
    return rows


def copy_baseline(dsn: str, schema: str, rows: list[tuple]) -> float:
    """COPY the same visits (store, device, start, end, passerby) into a bare table: rows/s."""
    visits = []
    for _, _, payload, _, _ in rows:
        d = json.loads(payload)
        visits.append(("bench", d["device"], d["start"], d["end"], d["passerby"]))
    return pgcopy.bare_visits_rate(dsn, schema, visits)


def copy_into_visit(dsn: str, schema: str, visits: list[tuple[str, str, str, str, bool]]) -> tuple[float, float]:
    """COPY the same (store, mac, start, end, passerby) rows into the central's own visit table
    (partitioned by month, its key and indexes, no foreign key: migration 0008), after the run, and
    into the table as it was before (one table with foreign keys to store and device): rows/s each.
    A second baseline: what the table itself allows, without any of the sync's work."""
    conn = pgcopy.connect(dsn, schema)
    cur = conn.cursor()
    cur.execute("SELECT store_id, mac, id FROM device")
    ids = {(store, mac): i for store, mac, i in cur.fetchall()}
    conn.close()
    rows = [(s, ids[(s, m)], a, b, p) for s, m, a, b, p in visits]
    partitioned = pgcopy.copy_rate(dsn, schema, "visit", 'store_id, device_id, start, "end", passerby',
                                   (f"{s}\t{d}\t{a}\t{b}\t{'t' if p else 'f'}\n" for s, d, a, b, p in rows))
    return partitioned, pgcopy.unpartitioned_visits_rate(dsn, schema, rows)


def stages(vault, central_vault, size: int) -> dict:
    """Each stage alone on the outbox's batches: events/s of the appliance's encoding, the central's
    reading, and its applying (in this process, into a second store "bench-apply", people batches
    and visit batches apart)."""
    from central import add_store
    from central.batch import read_batch
    from central.db import database as central_db
    from central.ingest import apply
    from central.models import Store
    from portal import sync
    from portal.db import database
    out: dict = {}
    bodies, after = [], 0
    with database.connection_context():
        started = time.perf_counter()
        while (prepared := sync.prepare(vault, size, after_id=after)) is not None:
            bodies.append((len(prepared.ids), prepared.body))
            after = prepared.ids[-1]
        took = time.perf_counter() - started
    total = sum(n for n, _ in bodies)
    out["appliance_encode_events_per_s"] = round(total / took)
    started = time.perf_counter()
    batches = [read_batch(body).events for _, body in bodies]
    out["central_read_events_per_s"] = round(total / (time.perf_counter() - started))
    with central_db.connection_context():
        add_store("bench-apply", "Bench store (apply alone)", central_vault)
        store = Store.get_by_id("bench-apply")
        people = visits = people_s = visits_s = 0.0
        for events in batches:
            started = time.perf_counter()
            assert apply(store, events, central_vault)["applied"] == len(events)
            if any(e.topic != "visit.closed" for e in events):
                people, people_s = people + len(events), people_s + time.perf_counter() - started
            else:
                visits, visits_s = visits + len(events), visits_s + time.perf_counter() - started
    out["central_apply_people_batches_events_per_s"] = round(people / people_s) if people_s else None
    out["central_apply_visit_batches_events_per_s"] = round(visits / visits_s) if visits_s else None
    out["central_apply_seconds"] = {"people_batches": round(people_s, 2), "visit_batches": round(visits_s, 2)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=None, help="batches in flight (default: sync.IN_FLIGHT)")
    args = parser.parse_args()
    # FOOTFALL_TEST_DSN when set, else a throwaway server for this run (tests/pgserver.py).
    with pgserver.postgres_dsn() as dsn:
        return run(args, dsn)


def run(args: argparse.Namespace, dsn: str) -> int:
    from central import add_store
    from central import create_app as central_app
    from central.db import database as central_db
    from portal import create_app, sync
    from portal.config import key_path, load_settings
    from portal.db import database
    from portal.identity import load_or_create_keys

    in_flight = args.in_flight or sync.IN_FLIGHT
    central_settings = pgcopy.central_settings(dsn, "sync")
    schema, tmp = central_settings.central_schema, Path(central_settings.data_dir).parent
    capp = central_app(central_settings)
    with central_db.connection_context():
        store_key = add_store("bench", "Bench store", capp.extensions["central"]["vault"])
    central_db.close_all()
    app = create_app(load_settings(environ={}, data_dir=str(tmp / "store"), log_level="WARNING"))
    rt = app.extensions["footfall"]
    path = key_path(rt.settings)
    with database.connection_context():
        sync.enroll(path, load_or_create_keys(path), rt.vault, "bench", store_key, capp.extensions["central"]["keys"].index)
        keys = load_or_create_keys(path)
        rows = fill_outbox(args.events, rt.vault)
    result: dict = {"benchmark": "sync", "events": args.events, "batch": args.batch, "central_workers": args.workers,
                    "in_flight": in_flight,
                    "postgres": "FOOTFALL_TEST_DSN" if os.environ.get(pgserver.ENV_DSN) else "throwaway (fsync off)"}
    env = {**pgcopy.serve_env(central_settings), "FOOTFALL_CENTRAL_WORKERS": str(args.workers)}
    try:
        with footfall_process(["central", "serve", "--port", "0"], env, timeout=60) as (proc, port):
            target = sync.Target(f"http://127.0.0.1:{port}", "bench", keys.sync_key, allow_http=True)
            start = time.perf_counter()  # the 10,000 people events are timed and counted too
            with database.connection_context():
                while sync.pending():
                    out = sync.drain(target, rt.vault, rt.gateway, "bench", args.batch, budget=3600, in_flight=in_flight)
                    assert "error" not in out, out
            elapsed = time.perf_counter() - start
        with central_db.connection_context():
            committed = central_db.execute_sql("SELECT count(*) FROM visit").fetchone()[0]
        assert committed == args.events, committed
        with database.connection_context():  # the same batches again, a stage at a time
            database.execute_sql("UPDATE outbox_event SET delivered_at = NULL")
        result["stages"] = stages(rt.vault, capp.extensions["central"]["vault"], args.batch)
        with central_db.connection_context():
            central_db.execute_sql("DELETE FROM visit WHERE store_id = 'bench-apply'")
        copy_rate = copy_baseline(dsn, schema, rows)
        table_rate, fk_rate = copy_into_visit(dsn, schema, [
            ("bench", d["device"], d["start"], d["end"], d["passerby"]) for d in (json.loads(r[2]) for r in rows)])
        rate = (args.events + 2 * DEVICES) / elapsed
        result.update({"drain_seconds": round(elapsed, 1), "events_per_s": round(rate), "rows_committed": committed,
                       "copy_rows_per_s": round(copy_rate), "ratio_to_copy": round(rate / copy_rate, 3),
                       "copy_into_visit_rows_per_s": round(table_rate), "ratio_to_copy_into_visit": round(rate / table_rate, 3),
                       "copy_into_visit_with_fks_rows_per_s": round(fk_rate),
                       "copy_into_visit_ratio_to_copy": round(table_rate / copy_rate, 3)})
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["goals"] = {"events_per_s>=20000": rate >= 20_000, "ratio_to_copy>=0.2": rate / copy_rate >= 0.2,
                           "copy_into_visit>=2x_with_fks": table_rate >= 2 * fk_rate}
    finally:
        central_db.close_all()
        pgserver.drop_schema(dsn, schema)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

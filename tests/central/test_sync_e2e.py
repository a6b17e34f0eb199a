"""A store's appliance and the central store over real HTTP: outages, faults, kill -9, nothing lost."""
from __future__ import annotations

import json
import http.client
import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from central.db import database as central_db
from tests.conftest import prove_claims
from portal import sync
from portal.config import key_path
from portal.db import database
from portal.identity import load_or_create_keys
from portal.models import OutboxEvent, Visit
from portal.visitors import Client, SignInForm
from tests.livecheck import footfall_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def central_server(central_settings, tmp_path):
    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema, "FOOTFALL_CENTRAL_WORKERS": "2",
           "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": ROOT}
    with footfall_process(["central", "serve", "--port", "0"], env, timeout=60) as (proc, port):
        yield port


def enroll_store(central_settings, appliance, store_id="hcm-01"):
    """`footfall central add-store` then `footfall sync enroll`, through their functions."""
    from central import create_app as central_app
    from central import add_store
    app = central_app(central_settings)
    with central_db.connection_context():
        key = add_store(store_id, "Store", app.extensions["central"]["vault"])
    index = app.extensions["central"]["keys"].index
    rt = appliance.extensions["footfall"]
    path = key_path(rt.settings)
    sync.enroll(path, load_or_create_keys(path), rt.vault, store_id, key, index)
    keys = load_or_create_keys(path)
    return keys


def activity(visitors, start: int, count: int) -> None:
    """Sign-ins (lead, consents, device link) and closed visits, all into the outbox."""
    from collector.oui import OuiTable
    from collector.sessions import VisitRecord
    from collector.store import Batch, Store
    for i in range(start, start + count):
        mac = f"3c:22:fb:00:{i // 256:02x}:{i % 256:02x}"
        client = Client(f"10.1.{i // 256}.{i % 256}", mac)
        # Visit analytics too: the central store hears of a device (and counts its visits) only then.
        outcome = visitors.sign_in(SignInForm(email=f"g{i}@example.com", terms=True, adult=True, marketing=frozenset({"marketing_email"}),
                                              analytics=frozenset({"visit_analytics"})), client)
        assert outcome.ok
        prove_claims(visitors, outcome, client)  # the guest entered the emailed code
        Store(OuiTable("/nonexistent")).write(Batch((), (VisitRecord(mac, "lan", 1.7e9 + i * 60, 1.7e9 + i * 60 + 1800, 9, False),), ()))


def central_counts():
    """What the central store holds; "applied" counts the events it applied (each store's
    events_applied), which must be the outbox's events, each once."""
    with central_db.connection_context():
        counts = {t: central_db.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("person", "consent_event", "visit")}
        counts["applied"] = central_db.execute_sql("SELECT coalesce(sum(events_applied), 0) FROM store").fetchone()[0]
        return counts


def expected():
    return {"person": database.execute_sql("SELECT count(*) FROM lead").fetchone()[0],
            "consent_event": database.execute_sql("SELECT count(*) FROM consent").fetchone()[0],
            "visit": Visit.select().count(), "applied": OutboxEvent.select().count()}


def test_everything_is_delivered_once(app, visitors, central_settings, central_server):
    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 30)
    target = sync.Target(f"http://127.0.0.1:{central_server}", keys.store_id, keys.sync_key, allow_http=True)
    result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, batch=40)
    assert result["sent"] == expected()["applied"] and result["batches"] >= 4
    assert sync.pending() == 0
    assert central_counts() == expected()


def test_a_days_long_outage_loses_nothing(app, visitors, central_settings, tmp_path):
    keys = enroll_store(central_settings, app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here yet: the central store is down
    target = sync.Target(f"http://127.0.0.1:{port}", keys.store_id, keys.sync_key, allow_http=True)
    clock = [1_800_000_000.0]
    attempts = failures = 0
    for day in range(3):
        activity(visitors, day * 10, 10)
        for _ in range(24 * 12):  # every 5 simulated minutes, as the scheduler would
            clock[0] += 300
            result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 50, clock=lambda: clock[0])
            if "skipped" not in result:
                attempts += 1
                failures = result["failures"]
    assert attempts < 24 * 12 * 3, "backing off, not hammering"
    state = sync._state()
    assert state["failures"] == failures >= 8 and 0 < state["next_at"] - clock[0] <= sync.BACKOFF_CAP
    assert sync.pending() == expected()["applied"]
    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_LOG_LEVEL": "WARNING",
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema, "FOOTFALL_CENTRAL_WORKERS": "2", "PYTHONPATH": ROOT}
    with footfall_process(["central", "serve", "--port", str(port)], env, timeout=60):
        clock[0] = state["next_at"] + 1
        result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 50, clock=lambda: clock[0])
    assert "error" not in result, result
    assert sync.pending() == 0 and sync._state()["failures"] == 0
    assert central_counts() == expected()


class FaultyProxy:
    """Between the appliance and the central store: drops, resets, delays, loses answers, duplicates."""

    BEHAVIOURS = ("drop", "forward", "reset", "delay", "lose_answer", "duplicate", "forward", "lose_answer")

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.plan = itertools.cycle(self.BEHAVIOURS)
        self.seen: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                self.handle(conn, next(self.plan))

    def handle(self, conn, behaviour):
        self.seen[behaviour] = self.seen.get(behaviour, 0) + 1
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("Content-Length", 0)):
            body += conn.recv(65536)
        if behaviour == "drop":
            return
        if behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if behaviour == "delay":
            time.sleep(0.3)
        answer = self.forward(lines[0].split()[1], headers, body)
        if behaviour == "duplicate":
            answer = self.forward(lines[0].split()[1], headers, body)
        if behaviour == "lose_answer":
            return  # the central store applied it; the appliance never hears so
        status, signed, payload = answer
        extra = "".join(f"{k}: {v}\r\n" for k, v in signed.items())  # the answer's signature travels on
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     f"{extra}Connection: close\r\n\r\n".encode() + payload)

    def forward(self, path, headers, body):
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        keep = {k: v for k, v in headers.items() if k.lower().startswith(("x-footfall", "content-encoding", "content-type"))}
        upstream.request("POST", path, body=body, headers=keep)
        response = upstream.getresponse()
        payload = response.read()
        signed = {k: v for k, v in response.getheaders() if k.lower().startswith("x-footfall")}
        upstream.close()
        return response.status, signed, payload

    def close(self):
        self.stop.set()
        self.thread.join(15)
        self.server.close()


def test_a_faulty_network_applies_every_event_exactly_once(app, visitors, central_settings, central_server):
    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 25)
    proxy = FaultyProxy(central_server)
    target = sync.Target(f"http://127.0.0.1:{proxy.port}", keys.store_id, keys.sync_key, allow_http=True)
    clock = [1_800_000_000.0]
    try:
        for _ in range(200):
            if sync.pending() == 0:
                break
            clock[0] += sync.BACKOFF_CAP + 1  # retry as soon as allowed
            sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 10, budget=5, clock=lambda: clock[0])
    finally:
        proxy.close()
    assert sync.pending() == 0
    assert set(proxy.seen) == set(FaultyProxy.BEHAVIOURS)
    assert central_counts() == expected()


@contextmanager
def slow_answers(upstream_port: int, delay: float):
    """Forwards at once, answers late: the central store has applied when the client dies."""
    proxy = FaultyProxy(upstream_port)
    original = proxy.forward

    def late(path, headers, body):
        answer = original(path, headers, body)
        time.sleep(delay)
        return answer
    proxy.forward = late
    proxy.plan = itertools.cycle(["forward"])
    try:
        yield proxy.port
    finally:
        proxy.close()


def test_kill_9_mid_batch_then_restart(app, visitors, central_settings, central_server):
    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 20)
    settings = app.extensions["footfall"].settings
    database.close()
    with slow_answers(central_server, 3.0) as port:
        env = {**os.environ, "PYTHONPATH": ROOT, "FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_LOG_LEVEL": "WARNING",
               "FOOTFALL_CENTRAL_URL": f"http://127.0.0.1:{port}", "FOOTFALL_SYNC_BATCH_EVENTS": "1000",
               "FOOTFALL_SYNC_ALLOW_HTTP": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "portal", "sync", "now"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while central_counts()["applied"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    applied_before = central_counts()["applied"]
    assert applied_before > 0 and sync.pending() == expected()["applied"]  # applied there, not marked here
    env["FOOTFALL_CENTRAL_URL"] = f"http://127.0.0.1:{central_server}"
    done = subprocess.run([sys.executable, "-m", "portal", "sync", "now"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"duplicates": ' in done.stdout and sync.pending() == 0
    assert central_counts() == expected()


def test_backoff_grows_is_capped_and_jittered():
    import random
    rng = random.Random(1)
    delays = [sync.backoff(n, rng) for n in range(1, 20)]
    assert sync.BACKOFF_BASE * 0.5 <= delays[0] <= sync.BACKOFF_BASE
    assert all(d <= sync.BACKOFF_CAP for d in delays) and max(delays) > sync.BACKOFF_CAP * 0.5
    assert len({round(d, 3) for d in delays[10:]}) > 1  # jitter: stores do not retry in lockstep


def test_an_erased_lead_sends_no_personal_data(app, visitors):
    activity(visitors, 0, 1)
    event = OutboxEvent.select().where(OutboxEvent.topic == "lead.upserted").order_by(OutboxEvent.id.desc()).get()
    assert sync.to_wire(event, visitors.vault)["data"]["email"] == "g0@example.com"
    lead = json.loads(event.payload)["lead"]
    visitors.erase(Client("10.1.0.0", "3c:22:fb:00:00:00"), {lead})  # with the proof of this session
    assert sync.to_wire(event, visitors.vault)["data"] == {"lead": event.payload.split('"')[3], "gone": True}


def test_enrollment_reindexes_with_the_chains_key(app, visitors, central_settings):
    from portal.models import Lead
    activity(visitors, 0, 3)
    before = {lead.id: lead.email_index for lead in Lead.select()}
    keys = enroll_store(central_settings, app)
    after = {lead.id: lead.email_index for lead in Lead.select()}
    assert set(before) == set(after) and all(before[i] != after[i] for i in before)
    from portal.identity import Keys, Vault
    chain = Vault(Keys(keys.encryption, keys.index, keys.secret))
    assert Lead.get_by_id(min(after)).email_index == chain.blind_index("email", "g0@example.com")
    assert keys.store_id == "hcm-01" and len(keys.sync_key) == 32


def test_an_erasure_decided_centrally_reaches_the_store(app, visitors, central_settings, central_server):
    from central import add_token
    from portal.models import Lead
    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 2)
    target = sync.Target(f"http://127.0.0.1:{central_server}", keys.store_id, keys.sync_key, allow_http=True)
    sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 100)
    with central_db.connection_context():
        token = add_token("dpo", ["erase:write", "people:read"])
        person = central_db.execute_sql("SELECT min(id) FROM person").fetchone()[0]
    conn = http.client.HTTPConnection("127.0.0.1", central_server, timeout=10)
    conn.request("POST", f"/v1/people/{person}/erase", headers={"Authorization": f"Bearer {token}"})
    assert conn.getresponse().status == 200
    conn.close()
    result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 100)
    assert result["commands"] == 1
    assert Lead.select().where(Lead.erased_at.is_null(False)).count() == 1
    sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 100)  # delivers the acknowledgement
    with central_db.connection_context():
        assert central_db.execute_sql("SELECT count(*) FROM erase_command WHERE acked_at IS NULL").fetchone()[0] == 0


def test_a_store_restored_from_a_backup_loses_and_doubles_nothing(app, visitors, settings, central_settings,
                                                                   central_server):
    """Issue 18: the central store's high-water mark survives a store whose database went back.

    A pushed; B written, then the backup taken (B undelivered in it); B and C pushed; the database
    damaged and restored from the backup (C is gone from the store, not from the chain); D written.
    The next push resends B (already applied: skipped) and D (new: applied), though D's outbox
    ids are the very ids C had: the seq comes from the clock as well, so it never goes back."""
    from portal import create_app, jobs
    from portal.config import database_path
    from portal.gateway.null import NullGateway
    from portal.recovery import check, last_recovery
    from tests.faults.test_corruption import damage

    keys = enroll_store(central_settings, app)
    target = sync.Target(f"http://127.0.0.1:{central_server}", keys.store_id, keys.sync_key, allow_http=True)
    push = lambda v: sync.drain(target, v.vault, v.gateway, keys.store_id, batch=15)  # noqa: E731
    activity(visitors, 0, 5)
    assert "error" not in push(visitors)
    activity(visitors, 5, 5)
    in_backup = OutboxEvent.select().count()
    undelivered_in_backup = sync.pending()
    assert jobs.run_job("backup", settings)["backup"]
    activity(visitors, 10, 5)
    assert "error" not in push(visitors) and sync.pending() == 0
    lost_here = OutboxEvent.select().count() - in_backup  # C: applied at the chain, gone from the store
    last_seq = OutboxEvent.select(OutboxEvent.seq).order_by(OutboxEvent.seq.desc()).scalar()
    before = central_counts()
    assert before["applied"] == OutboxEvent.select().count() and before["visit"] == 15

    database.close()
    db = database_path(settings)
    damage(db)
    again = create_app(settings, gateway=NullGateway())
    assert last_recovery(db).restored_from and check(db) == "ok"
    restored = again.extensions["footfall"].visitors
    assert OutboxEvent.select().count() == in_backup and sync.pending() == undelivered_in_backup > 0
    activity(restored, 15, 5)  # D, after the restore
    fresh = list(OutboxEvent.select().where(OutboxEvent.id > in_backup))
    assert fresh and min(e.seq for e in fresh) > last_seq  # the ids went back, the seqs did not
    assert min(e.id for e in fresh) <= in_backup + lost_here  # D reuses C's outbox ids

    result = push(restored)
    assert "error" not in result and sync.pending() == 0
    assert result["duplicates"] == undelivered_in_backup and result["applied"] == len(fresh)
    after = central_counts()
    assert after["applied"] == OutboxEvent.select().count() + lost_here  # every event of A, B, C and D, once
    assert after["visit"] == 20 and after["person"] == 20
    database.close()

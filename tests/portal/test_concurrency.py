"""Writers meeting on one SQLite file (issue 9): they queue, they never fail at once, and a lock
that cannot be had is a 503 the visitor understands, with nothing half-written."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from portal import segments
from portal.config import database_path
from portal.db import DatabaseBusy, database, init_db
from portal.i18n import translate
from portal.models import Consent, Lead, OutboxEvent, Segment, SegmentMember
from portal.visitors import Client, SignInForm
from tests.conftest import row_counts
from tests.faults.locks import hold_lock_in_file

PER_PROCESS = 40


def _sign_in_many(settings, offset: int, barrier, out) -> None:
    """A second process (a second portal worker, say) signing visitors in."""
    from portal import create_app
    from portal.gateway.null import NullGateway
    app = create_app(settings, gateway=NullGateway())
    visitors = app.extensions["footfall"].visitors
    barrier.wait()
    failures = 0
    for i in range(offset, offset + PER_PROCESS):
        try:
            ok = visitors.sign_in(SignInForm(email=f"p{i}@example.com", terms=True,
                                             adult=True, marketing=frozenset({"marketing_email"})),
                                  Client(f"10.9.{i // 250}.{i % 250 + 1}", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")).ok
        except Exception:  # counted: the test fails on any of them
            ok = False
        failures += not ok
    out.put(failures)


def test_two_processes_and_eight_threads_sign_in_at_once(app, settings):
    """Read-then-write transactions in two processes: SQLite refused the lock upgrade at once."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    database.close()
    procs = [ctx.Process(target=_sign_in_many, args=(settings, n * PER_PROCESS, barrier, out)) for n in range(2)]
    for p in procs:
        p.start()
    visitors = app.extensions["footfall"].visitors
    results = []

    def thread(i):
        results.append(visitors.sign_in(SignInForm(email=f"t{i}@example.com", terms=True),
                                        Client(f"10.8.0.{i + 1}", f"02:00:00:01:00:{i:02x}")).ok)

    barrier.wait()
    threads = [threading.Thread(target=thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert failures == [0, 0] and results == [True] * 8
    assert Lead.select().count() == 2 * PER_PROCESS + 8
    # Terms for everyone, marketing for the processes' visitors: each consent once, each with its event.
    assert Consent.select().count() == 2 * PER_PROCESS * 2 + 8
    assert OutboxEvent.select().where(OutboxEvent.topic == "consent.recorded").count() == Consent.select().count()


def test_a_write_lock_that_cannot_be_had_is_a_503_and_changes_nothing(settings, gateway, make_client):
    from portal import create_app
    app = create_app(settings.__class__(**{**settings.__dict__, "db_lock_wait_ms": 300}), gateway=gateway)
    app.config["TESTING"] = True
    from tests.conftest import PortalClient
    client = PortalClient(app.test_client(), ip="10.0.0.77")
    token = client.token()
    before = row_counts()
    database.stats.reset()
    holder = hold_lock_in_file(database_path(settings), 1.5)
    answer = client.post("/connect", data={"csrf_token": token, "email": "busy@example.com", "terms": "yes"})
    holder.join()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "3"
    body = answer.get_data(as_text=True)
    assert translate("err_busy", "vi") in body and "Traceback" not in body
    assert row_counts() == before
    assert database.stats.snapshot()["busy"] == 1
    again = client.post("/connect", data={"csrf_token": token, "email": "busy@example.com", "terms": "yes"})
    assert again.status_code == 303
    database.close()


def test_begin_raises_database_busy_and_releases_the_queue(tmp_path):
    path = tmp_path / "f.db"
    init_db(path, busy_timeout=200)
    holder = hold_lock_in_file(path, 1.0)
    with pytest.raises(DatabaseBusy):
        with database.atomic():
            Lead.create()
    holder.join()
    with database.atomic():  # the process's writer queue was released: the next writer goes on
        Lead.create()
    assert Lead.select().count() == 1
    database.close()


def test_the_collector_waits_out_a_busy_database_instead_of_dropping_a_batch(tmp_path):
    from collector.oui import OuiTable
    from collector.sessions import VisitRecord
    from collector.store import Batch, Store, Writer
    path = tmp_path / "f.db"
    init_db(path, busy_timeout=200)
    writer = Writer(Store(OuiTable("/nonexistent")))
    writer.start()
    holder = hold_lock_in_file(path, 1.2)
    writer.submit(Batch((), (VisitRecord("3c:22:fb:00:00:01", "lan", 1.7e9, 1.7e9 + 1800, 9, False),), ()))
    holder.join()
    writer.stop()
    assert writer.errors == 0 and writer.busy_waits >= 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM visit").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM outbox_event WHERE topic = 'visit.closed'").fetchone()[0] == 1
    database.close()


def test_segments_written_as_a_difference_equal_a_fresh_computation(app, visitors):
    from collector.oui import OuiTable
    from collector.sessions import VisitRecord
    from collector.store import Batch, Store
    now = time.time()
    for i in range(30):
        mac = f"02:00:00:02:00:{i:02x}"
        assert visitors.sign_in(SignInForm(email=f"s{i}@example.com", terms=True, adult=True,  # segments need
                                           analytics=frozenset({"visit_analytics"})), Client(f"10.7.0.{i + 1}", mac)).ok
        Store(OuiTable("/nonexistent")).write(Batch((), tuple(
            VisitRecord(mac, "lan", now - d * 86400 - 7200, now - d * 86400 - 3600, 9, False)
            for d in range(i % 6)), ()))
    first = segments.recompute()
    stored = set(SegmentMember.select(SegmentMember.segment, SegmentMember.lead).tuples())
    # A stale membership (a person wrongly in every segment, another missing): the next run mends it.
    lead = Lead.get(Lead.id == 1)
    SegmentMember.delete().execute()
    for s in Segment.select():
        SegmentMember.insert(segment=s, lead=lead).on_conflict_ignore().execute()
    assert segments.recompute() == first
    assert set(SegmentMember.select(SegmentMember.segment, SegmentMember.lead).tuples()) == stored
    assert sum(first.values()) > 0

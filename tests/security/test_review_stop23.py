"""Adversarial review of stop 23 (issue 18): visits by month without foreign keys, the scheduler's
children and its status, the collector's replay. Each test is a finding or an attack that held;
real PostgreSQL, real processes, real SQLite."""
import datetime
import threading
import time

import psycopg2
import pytest

from central import visits
from central.db import database
from tests import pgserver
from tests.central.test_visit_partitions import NOW, ago, orphans, person_with_visits, rows, stat_equals_scan, visits_of


def _mover_and_watcher(pg_dsn, central_settings):
    """A session on the central's schema (it makes a month) and one that watches the locks."""
    mover = psycopg2.connect(**pgserver.connect_kwargs(pg_dsn), options=f"-c search_path={central_settings.central_schema}")
    watcher = psycopg2.connect(**pgserver.connect_kwargs(pg_dsn))
    watcher.autocommit = True
    return mover, watcher


def test_an_erasure_racing_a_month_made_from_the_default_partition_leaves_no_visit(central_app, central_settings, stores,
                                                                                   pg_dsn):
    """A visit dated past the months made ahead waits in the default partition. When `ensure` makes
    its month (the central starting, the daily purge) while an erasure deletes that person's visits,
    the erasure's DELETE was planned over the partitions as they were: it must not miss the rows
    moved into the new month (a visit of no device, of an erased person, would stay)."""
    from central.people import erase_person
    client = central_app.test_client()
    future = NOW + datetime.timedelta(days=200)
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(2), future])
    assert rows(f"SELECT count(*) FROM {visits.DEFAULT}") == [(1,)]
    mover, watcher = _mover_and_watcher(pg_dsn, central_settings)
    errors = []

    def erase():
        try:
            with database.connection_context(), database.atomic():
                erase_person(database.cursor(), lan, origin=None)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    erasure = threading.Thread(target=erase)
    try:
        visits.create_month(mover.cursor(), visits.month_of(future))  # moved, attached, not committed yet
        erasure.start()
        assert pgserver.lock_waiters(watcher.cursor(), 1), "the erasure never waited for the month being made"
        mover.commit()
    finally:
        erasure.join(30)
        mover.close()
        watcher.close()
    assert errors == []
    assert rows("SELECT tableoid::regclass::text FROM visit") == []
    assert orphans() == 0 and visits_of(lan) == 0 and stat_equals_scan()


# -- the scheduler's status, read by the privacy desk -----------------------------------------------

@pytest.fixture
def settings(settings):
    """The shared settings, with two-factor optional (the manager signs in with a password)."""
    import dataclasses
    return dataclasses.replace(settings, panel_require_2fa=False)


@pytest.fixture
def manager(app, monkeypatch):
    from argon2 import PasswordHasher

    from portal import accounts, passwords
    from tests.panel.conftest import PASSWORD, PanelClient
    monkeypatch.setattr(passwords, "HASHER", passwords.BoundedHasher(PasswordHasher(time_cost=1, memory_cost=1024,
                                                                                    parallelism=1)))
    accounts.create_manager("manager1", PASSWORD, "manager")
    client = PanelClient(app.test_client())
    assert client.login("manager1").status_code == 302
    return client


@pytest.mark.parametrize("body", [
    "[]", "null", "42", '"scheduler"',                              # JSON, but not an object
    '{"process": ["scheduler"], "alive": true}',                      # a name that is no name
    '{"process": "scheduler", "alive": true, "next_runs": []}',
    '{"process": "scheduler", "alive": true, "next_runs": "purge"}',
    '{"process": "scheduler", "alive": true, "next_runs": {"purge": 1764100000}}',
    '{"process": "scheduler", "alive": true, "next_runs": {"purge": ["2026-11-26T03:30:00+07:00"]}}',
    '{"process": "scheduler", "alive": true, "next_runs": {"purge": "9999-12-31T23:59:59-12:00"}}',
    '{"process": "scheduler", "alive": true, "next_runs": {"purge": "0001-01-01T00:00:00+14:00"}}',
    '{"process": "scheduler", "alive": true, "next_runs": {"purge": "' + "9" * 100_000 + '"}}',
])
def test_a_corrupt_scheduler_status_never_breaks_the_privacy_desk_or_the_health_page(manager, settings, body):
    """health/scheduler.json is read on every privacy desk page: a damaged one (a power cut, a
    disk error, a hand edit) shows the next purge from the job table, never a 500."""
    from pathlib import Path

    from portal import health
    folder = Path(settings.data_dir) / "health"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / "scheduler.json").write_text(body)
    page = manager.get("/panel/privacy")
    assert page.status_code == 200
    assert "Next purge" in page.get_data(as_text=True)
    assert health.next_run(settings.data_dir, "purge") is None or \
        health.next_run(settings.data_dir, "purge").tzinfo is not None
    assert isinstance(health.read_processes(settings.data_dir), dict)


def test_a_naive_next_run_in_the_status_is_not_taken_for_utc(settings):
    """The scheduler writes its next runs with their offset; a time without one is not the
    scheduler's (the desk falls back to the job table rather than show a time off by the zone)."""
    from pathlib import Path

    from portal import health
    folder = Path(settings.data_dir) / "health"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / "scheduler.json").write_text('{"process": "scheduler", "alive": true, '
                                           '"next_runs": {"purge": "2026-11-26T03:30:00"}}')
    assert health.next_run(settings.data_dir, "purge") is None


# -- the scheduler's children -----------------------------------------------------------------------

def _peak_rss_kb(pid: int) -> int:
    from pathlib import Path
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_child_flooding_its_output_does_not_grow_the_scheduler(tmp_path):
    """A job that prints without end (a loop gone wrong, a library's debug output) must not make
    the slim scheduler hold all of it (communicate keeps every byte until the child exits): on a
    Pi with 512 MB, 200 MB of output would be 200 MB more in the scheduler, and one log line."""
    from tests.portal.test_scheduler_children import Driver
    flood = ("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(200 * 1024): sys.stdout.write(line)\n"
             "print('flooded')")
    d = Driver(tmp_path, {"flood": {"every": 1, "limit": 120, "code": flood}})
    try:
        d.wait_for(lambda: d.jobs().get("runs", 0) >= 1 and "job flood" in d.text(), timeout=120, what="the flood's end")
        peak = _peak_rss_kb(d.proc.pid)
    finally:
        d.stop()
    assert peak < 120 * 1024, f"the scheduler peaked at {peak // 1024} MB"
    assert len(d.text()) < 1024 * 1024  # the journal gets a bounded line, not the flood


# -- the collector's replay -------------------------------------------------------------------------

def _pcap(records, order="little", magic=0xA1B2C3D4, unit=1e6) -> bytes:
    out = (magic.to_bytes(4, order) + (2).to_bytes(2, order) + (4).to_bytes(2, order)
           + bytes(8) + (65535).to_bytes(4, order) + (1).to_bytes(4, order))
    for ts, frame, claimed in records:
        sec = int(ts)
        out += (sec.to_bytes(4, order) + int((ts - sec) * unit).to_bytes(4, order)
                + claimed.to_bytes(4, order) * 2 + frame)
    return out


FLAVOURS = {"le_usec": ("little", 0xA1B2C3D4, 1e6), "be_usec": ("big", 0xA1B2C3D4, 1e6),
            "le_nsec": ("little", 0xA1B23C4D, 1e9), "be_nsec": ("big", 0xA1B23C4D, 1e9)}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("tail", [f"cut_{n}" for n in (0, 1, 11, 12, 13, 14, 15, 41)]
                         + [f"short_{n}" for n in range(0, 15)])
def test_a_capture_ending_inside_the_ethertype_or_in_tiny_frames_reads_the_same_both_ways(tmp_path, tail, flavour):
    """The fast path reads the ethertype with the record header when the file holds it: a last
    record cut inside (or just around) the ethertype, and whole frames of 0 to 14 bytes at the
    very end of the file, are read as the frame-by-frame reference reads them."""
    from tests.collector.test_fastpath import MAC, T0, both_ways
    from tests.perf.bench_collector import arp_frame
    records = [(T0 + i * 60, arp_frame(MAC, 3), 60) for i in range(12)]
    kind, n = tail.split("_")
    n = int(n)
    whole = arp_frame(MAC, 3)
    if kind == "cut":  # the header claims 60 bytes, the file ends after n
        records.append((T0 + 800, whole[:n], 60))
    else:  # complete records of n bytes, the last one ending the file
        records += [(T0 + 800, whole[:n], n), (T0 + 801, whole[:n], n)]
    pcap = tmp_path / "tail.pcap"
    pcap.write_bytes(_pcap(records, *FLAVOURS[flavour]))
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(tmp_path, pcap)
    assert fast_stats == ref_stats and fast_rows == ref_rows
    assert fast_stats["truncated_records"] == (1 if kind == "cut" else 0)
    assert fast_stats["frames"] == (12 if kind == "cut" else 14)
    assert len(fast_rows["visits"]) == 1


@pytest.mark.parametrize("days", [-365, 3], ids=["old_capture", "capture_dated_ahead"])
def test_a_replay_leaves_the_live_collectors_saved_runs_and_their_names_alone(tmp_path, days):
    """A live collector saved its runs in progress (open_run), one followed, one under the day's
    pseudonym; a replay into the same database (an old capture, or one dated days ahead: a box
    whose clock was wrong) must leave those rows as they were, and the restarted live collector
    must take both runs up again (the anonymous one adopted by its MAC under a live key)."""
    import sqlite3

    from collector import service
    from collector.sessions import LAN
    from portal.config import load_settings
    from portal.db import database
    from tests.collector.test_replay import follow
    from tests.perf.bench_collector import arp_frame
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), oui_file="/nonexistent")
    followed, anonymous = bytes.fromhex("3c22fb000011"), bytes.fromhex("3c22fb000022")
    follow(settings.data_dir, "3c:22:fb:00:00:11")
    now = time.time()

    def live():
        return service._pipeline(settings, frozenset())

    pipeline, writer = live()
    pipeline.feed_many([(now - 120, arp_frame(followed, 11)), (now - 120, arp_frame(anonymous, 22)),
                        (now - 60, arp_frame(followed, 11)), (now - 60, arp_frame(anonymous, 22))])
    pipeline.flush()
    writer.stop()
    database.close()
    db = tmp_path / "data" / "footfall.db"

    def saved():
        with sqlite3.connect(db) as c:
            return sorted(c.execute("SELECT d.mac, r.source, r.start, r.last, r.sightings FROM open_run r "
                                    "JOIN device d ON d.id = r.device_id").fetchall())
    before = saved()
    assert len(before) == 2 and before[0][0] == "3c:22:fb:00:00:11" and before[1][0].startswith("anon-")
    start = now + days * 86400
    pcap = tmp_path / "other.pcap"
    pcap.write_bytes(_pcap([(start + i * 60, arp_frame(mac, 5), 60) for i in range(20)
                            for mac in (followed, anonymous, bytes.fromhex("3c22fb000033"))]))
    stats = service.replay(settings, pcap)
    assert stats["visits"] == 3
    assert saved() == before
    pipeline, writer = live()
    try:
        pipeline.restore(writer.store.load_runs())
        pipeline.feed_many([(now, arp_frame(followed, 11)), (now, arp_frame(anonymous, 22))])
        runs = pipeline.sessions.runs[LAN]
        assert {"3c:22:fb:00:00:11", "3c:22:fb:00:00:22"} <= set(runs)  # both taken up by their MAC
        assert pipeline._orphans == 0
        assert runs["3c:22:fb:00:00:22"].start == pytest.approx(now - 120, abs=1)
    finally:
        writer.stop()
        database.close()


def test_a_key_made_for_a_period_far_ahead_never_pushes_the_current_key_out_of_the_file(tmp_path):
    """The key file holds two periods: a replay naming a device days ahead made a third key, and
    the file kept the two latest, dropping the current one (a restarted live collector lost it)."""
    from collector.pseudonyms import Pseudonyms
    path = tmp_path / "pseudonym.key"
    names = Pseudonyms(24, path)
    now = names.wall()
    current = names.period(now)
    today = names.text("3c:22:fb:00:00:22", current)
    names.text("3c:22:fb:00:00:22", current + 1)
    names.text("3c:22:fb:00:00:22", names.period(now + 5 * 86400))
    again = Pseudonyms(24, path)
    assert current in again.alive() and again.text("3c:22:fb:00:00:22", current) == today


# -- a store's dates, a batch racing an erasure -----------------------------------------------------

def test_a_store_dating_visits_at_the_calendars_edges_makes_no_partition_and_no_purge_fail(central_app, central_settings,
                                                                                         stores, monkeypatch):
    """Year 1, 1969, year 9999 (a hostile store, a clock gone wrong): the batch is applied, no
    partition is made for them (the months come from the central's clock), the purge deletes the
    old ones, reports the one ahead, and chain_stat still equals the scan."""
    import json

    import central.models
    from tests.central.test_retention import cli
    client = central_app.test_client()
    with database.connection_context():
        made = sorted(visits.months(database.cursor()))
    edges = [datetime.datetime(1, 1, 1, 0, 0), datetime.datetime(1969, 12, 31, 23, 0), datetime.datetime(9999, 12, 31, 22, 0)]
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(2), *edges])
    assert visits_of(lan) == 4 and stat_equals_scan()
    with database.connection_context():
        assert sorted(visits.months(database.cursor())) == made
    monkeypatch.setattr(central.models, "utcnow", lambda: NOW)
    done = cli(central_settings, "purge")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)["visits"]
    assert report["visits_dropped"] == 2 and report["visits_ahead"] == 1
    with database.connection_context():
        assert sorted(visits.months(database.cursor())) == made
    assert sorted(r[0] for r in rows("SELECT start FROM visit")) == [ago(2), edges[2]]
    assert orphans() == 0 and stat_equals_scan()


# Found here, fixed by the lead: central/ingest.py _apply_links read the person unlocked; an erasure that
# changes no unique column (a person kept apart holds no index) took no lock conflicting with the batch's
# FOR KEY SHARE, so its DELETE of the devices could not see the one the batch links. It reads them FOR SHARE.


@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "kept_apart"])
def test_an_erasure_racing_a_batch_that_links_a_device_to_the_person_leaves_no_device_or_visit(central_app, stores,
                                                                                               pg_dsn, sharing):
    """A store links a new device to Lan and sends its visits while the chain erases Lan (the API).
    Held when Lan shares with the chain: the erasure clears her unique email index, which locks her
    row against the batch's foreign key check, so it waits for the batch and then sees the device.
    Kept apart (no index to clear), nothing orders them: the batch read Lan as not erased, the
    erasure's DELETE could not see the device not committed yet, and the MAC and its visits stay,
    linked to an erased person."""
    from central.people import erase_person
    client = central_app.test_client()
    from tests.central.fixtures import event, post_batch
    from tests.central.test_ingest import lead
    from tests.central.test_visit_partitions import visit
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", chain_sharing=sharing), event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
        event("consent.recorded", lead="L1", purpose="visit_analytics", granted=True),
        visit("3c:22:fb:00:00:01", ago(3))]).status_code == 200
    lan = rows("SELECT person_id FROM store_lead WHERE lead_uid = 'L1'")[0][0]
    assert rows("SELECT email_index IS NOT NULL FROM person WHERE id = %s", lan) == [(sharing,)]
    holder, cur = pgserver.hold_chain_row(pg_dsn, lan)
    statuses, errors = [], []

    def push():
        statuses.append(post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"],
                                   [event("device.linked", device="3c:22:fb:00:00:07", lead="L1"),
                                    visit("3c:22:fb:00:00:07", ago(1))]).status_code)

    def erase():
        try:
            with database.connection_context(), database.atomic():
                erase_person(database.cursor(), lan, origin=None)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    batch, erasure = threading.Thread(target=push), threading.Thread(target=erase)
    try:
        batch.start()
        assert pgserver.lock_waiters(cur, 1), "the batch never reached its chain_stat refresh"
        erasure.start()
        pgserver.lock_waiters(cur, 2)
    finally:
        holder.close()  # the lock goes with its session
        batch.join(30)
        erasure.join(30)
    assert statuses == [200] and errors == []
    assert rows("SELECT erased_at IS NOT NULL FROM person WHERE id = %s", lan) == [(True,)]
    assert rows("SELECT mac FROM device") == [] and rows("SELECT count(*) FROM visit") == [(0,)]
    assert orphans() == 0 and stat_equals_scan()


def test_a_central_clock_at_the_end_of_the_calendar_still_starts(central_app, central_settings):
    """A central whose clock reads December 9999 (a broken RTC, a hand-set date): the months ahead
    would be in year 10000; the central must still start (and make what the calendar holds)."""
    with database.connection_context(), database.atomic():
        cur = database.cursor()
        created = visits.ensure(cur, datetime.datetime(9999, 12, 15), central_settings.central_retention_days)
        assert "visit_999911" in created and "visit_999912" not in created
        assert not any(name.startswith("visit_1000") for name in created)
        assert visits.expired(cur, datetime.datetime(9999, 12, 15), central_settings.central_retention_days)[0]


def test_sigterm_during_prepare_stops_it_and_the_scheduler_at_once(tmp_path):
    """`footfall jobs prepare` may take minutes (a damaged database restored): a stop meanwhile
    (systemctl stop, a reboot) ends it and the scheduler cleanly, and starts no job."""
    import signal

    from tests.portal.test_scheduler_children import Driver, gone
    pid, runs = tmp_path / "prepare.pid", tmp_path / "runs"
    d = Driver(tmp_path, {"any": {"every": 1, "limit": 30, "code": f"open({str(runs)!r}, 'a').write('x')"}},
               grace=2.0, prepare=f"import os, time\nopen({str(pid)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)")
    try:
        d.wait_for(lambda: pid.exists() and pid.read_text(), what="the preparation running")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
    finally:
        d.stop()
    assert gone(int(pid.read_text()))
    assert not runs.exists() and "scheduler started" not in d.text()


def test_a_child_killed_by_a_signal_is_a_failure_and_the_scheduler_goes_on(tmp_path):
    from tests.portal.test_scheduler_children import Driver
    runs = tmp_path / "runs"
    d = Driver(tmp_path, {"crash": {"every": 1, "limit": 30, "code": (
        f"import os, signal\nopen({str(runs)!r}, 'a').write('x')\nos.kill(os.getpid(), signal.SIGSEGV)")}})
    try:
        d.wait_for(lambda: runs.exists() and len(runs.read_text()) >= 2, what="two runs of the crashing job")
        d.wait_for(lambda: d.jobs().get("failed", 0) >= 1, what="the failure counted")
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
    assert f"job crash failed (exit status {-signal_number('SIGSEGV')})" in d.text()


def signal_number(name: str) -> int:
    import signal
    return int(getattr(signal, name))


def _leaving_driver(tmp_path, name: str, code: str, pids, what: str):
    """A scheduler running job `name` (which writes each leftover's pid to `pids`) every second,
    once a second run has come and the first run's leftover is gone; stopped if either never comes."""
    from tests.portal.test_scheduler_children import Driver, gone
    d = Driver(tmp_path, {name: {"every": 1, "limit": 120, "code": code}}, grace=1.0)
    try:
        d.wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 2, timeout=60, what="a second run")
        first = int(pids.read_text().split()[0])
        d.wait_for(lambda: gone(first), timeout=10, what=what)
    except BaseException:
        d.stop()
        raise
    return d


def test_a_job_leaving_a_process_behind_on_its_output_neither_blocks_the_scheduler_nor_outlives_it(tmp_path):
    """A job that starts something in the background (holding its standard output) and exits: the
    scheduler goes on with its next runs, and what the job left is stopped with its group."""
    from tests.portal.test_scheduler_children import gone
    pids = tmp_path / "pids"
    code = (f"import subprocess, sys\nkid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            f"open({str(pids)!r}, 'a').write(f'{{kid.pid}}\\n')\nprint('left one behind')")
    d = _leaving_driver(tmp_path, "leaves", code, pids, "the first run's leftover stopped")
    try:
        assert "job leaves: left one behind" in d.text()
    finally:
        d.stop()
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in map(int, pids.read_text().split())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(pid) for pid in map(int, pids.read_text().split()))


def test_a_leftover_ignoring_sigterm_on_the_jobs_output_is_killed(tmp_path):
    pids = tmp_path / "pids"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    code = (f"import subprocess, sys, time\nkid = subprocess.Popen([sys.executable, '-c', {stubborn!r}])\n"
            f"time.sleep(0.5)\nopen({str(pids)!r}, 'a').write(f'{{kid.pid}}\\n')")
    _leaving_driver(tmp_path, "stubborn", code, pids, "the stubborn leftover killed").stop()


def test_a_purge_that_stopped_after_dropping_months_leaves_chain_stat_to_the_next_run(central_app, central_settings,
                                                                                      stores, monkeypatch):
    """The months dropped and committed, then a crash before chain_stat's refresh: the next purge
    finds the rows that counted dropped visits (month partitions and the default partition's,
    passers-by among them) and chain_stat equals the scan again."""
    import json

    import central.models
    from tests.central.test_retention import cli
    client = central_app.test_client()
    old, older = ago(365 + 62), ago(365 * 12)  # a month partition to drop; before every partition (default)
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [older, old, ago(1)])
    with database.connection_context(), database.atomic():
        visits.ensure(database.cursor(), NOW, 500)
    assert rows("SELECT tableoid::regclass::text FROM visit WHERE start = %s", older) == [(visits.DEFAULT,)]
    with database.connection_context(), database.atomic():
        dropped = visits.drop_expired(database.cursor(), NOW, central_settings.central_retention_days)
    assert dropped["visits_dropped"] == 2 and not stat_equals_scan()  # the crash: chain_stat not refreshed
    monkeypatch.setattr(central.models, "utcnow", lambda: NOW)
    done = cli(central_settings, "purge")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["visits"]["chain_stat_refreshed"] == 1
    assert visits_of(lan) == 1 and stat_equals_scan()


def test_a_batch_racing_a_month_made_from_the_default_partition_is_applied_into_that_month(central_app,
                                                                                          central_settings, stores,
                                                                                          pg_dsn):
    """A store sends a visit of a month that has no partition yet while `ensure` makes it: the
    batch's COPY routed the row to the default partition before the month was attached, and
    waits there. It must be applied (not a 500 for a partition constraint), its visit in its month."""
    from tests.central.fixtures import post_batch
    from tests.central.test_visit_partitions import visit
    client = central_app.test_client()
    future = NOW + datetime.timedelta(days=200)
    person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(2)])
    mover, watcher = _mover_and_watcher(pg_dsn, central_settings)
    statuses = []

    def push():
        statuses.append(post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"],
                                   [visit("3c:22:fb:00:00:01", future)]).status_code)

    batch = threading.Thread(target=push)
    try:
        visits.create_month(mover.cursor(), visits.month_of(future))
        batch.start()
        assert pgserver.lock_waiters(watcher.cursor(), 1), "the batch never waited for the month being made"
        mover.commit()
    finally:
        batch.join(30)
        mover.close()
        watcher.close()
    assert statuses == [200]
    assert rows("SELECT tableoid::regclass::text FROM visit WHERE start = %s", future) == \
        [(visits.name_of(visits.month_of(future)),)]
    assert stat_equals_scan()


def test_visits_follow_merges_and_splits_and_go_with_every_erasure(central_app, stores):
    """Lan at two stores (one person), a second record of hers merged into the first at hcm-01,
    then hn-02 keeps her apart (a split), a device relinked from one record to the other: every
    erasure afterwards takes exactly the visits of the devices it deletes, and none is left of
    no device."""
    from tests.central.fixtures import event, post_batch
    from tests.central.test_ingest import lead
    from tests.central.test_visit_partitions import visit
    client = central_app.test_client()
    grant = lambda uid: event("consent.recorded", lead=uid, purpose="visit_analytics", granted=True)  # noqa: E731
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(1), ago(40)])
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L2", email=None, phone="+84912345678"), grant("L2"), event("device.linked", device="3c:22:fb:00:00:02", lead="L2"),
        visit("3c:22:fb:00:00:02", ago(5)), event("lead.merged", lead="L2", into="L1")]).status_code == 200
    assert post_batch(client, "hn-02", stores["hn-02"], [
        lead("B1"), grant("B1"), event("device.linked", device="00:1a:11:00:00:01", lead="B1"),
        visit("00:1a:11:00:00:01", ago(3))]).status_code == 200
    assert rows("SELECT DISTINCT person_id FROM store_lead") == [(lan,)]
    assert visits_of(lan) == 4 and stat_equals_scan()
    assert post_batch(client, "hn-02", stores["hn-02"], [lead("B1", chain_sharing=False)]).status_code == 200
    apart = rows("SELECT person_id FROM store_lead WHERE lead_uid = 'B1'")[0][0]
    assert apart != lan and (visits_of(lan), visits_of(apart)) == (3, 1) and stat_equals_scan()
    # hcm-01 relinks Lan's first device to a new record of someone else, then erases Lan
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("M1", email="minh@example.com"), grant("M1"), event("device.linked", device="3c:22:fb:00:00:01", lead="M1"),
        event("lead.erased", lead="L1", verified=True)]).status_code == 200
    minh = rows("SELECT person_id FROM store_lead WHERE lead_uid = 'M1'")[0][0]
    assert visits_of(lan) == 0 and visits_of(minh) == 2 and visits_of(apart) == 1
    assert orphans() == 0 and stat_equals_scan()
    assert post_batch(client, "hn-02", stores["hn-02"], [event("lead.erased", lead="B1", verified=True)]).status_code == 200
    assert post_batch(client, "hcm-01", stores["hcm-01"], [event("devices.erased", devices=["3c:22:fb:00:00:01"])]
                      ).status_code == 200
    assert rows("SELECT count(*) FROM visit") == [(0,)] and orphans() == 0 and stat_equals_scan()

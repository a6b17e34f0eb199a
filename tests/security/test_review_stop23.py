"""Adversarial review of stop 23 (issue 18): visits by month without foreign keys, the scheduler's
children and its status, the collector's replay. Each test is a finding or an attack that held;
real PostgreSQL, real processes, real SQLite."""
import datetime
import threading

import psycopg2
import pytest

from central import visits
from central.db import database
from tests import pgserver
from tests.central.test_visit_partitions import NOW, ago, orphans, person_with_visits, rows, stat_equals_scan, visits_of


def _waiting(cur, n):
    """True once n sessions of this database wait for a lock."""
    for _ in range(400):
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        if cur.fetchone()[0] >= n:
            return True
        threading.Event().wait(0.05)
    return False


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
    mover = psycopg2.connect(**pgserver.connect_kwargs(pg_dsn),
                             options=f"-c search_path={central_settings.central_schema}")
    watcher = psycopg2.connect(**pgserver.connect_kwargs(pg_dsn))
    watcher.autocommit = True
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
        assert _waiting(watcher.cursor(), 1), "the erasure never waited for the month being made"
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

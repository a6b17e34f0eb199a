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

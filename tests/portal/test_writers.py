"""`portal.db.WRITERS` says which process writes which tables; SQLite's authorizer, watching every
statement of the collector and the scheduler's jobs, checks that it stays true."""
from __future__ import annotations

import sqlite3
import time

import pytest

from portal import jobs
from portal.db import WRITERS, database
from portal.visitors import Client, SignInForm
from tests.soak.harness import store_pcap

_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}


@pytest.fixture
def written(monkeypatch):
    """Tables written on every connection the database opens from now on."""
    tables: set[str] = set()
    original = database._add_conn_hooks

    def hooks(conn):
        original(conn)

        def authorizer(action, table, *_):
            if action in _WRITES and table and not table.startswith("sqlite_"):
                tables.add(table)
            return sqlite3.SQLITE_OK
        conn.set_authorizer(authorizer)

    monkeypatch.setattr(database, "_add_conn_hooks", hooks)
    database.close()
    return tables


def test_the_collector_writes_only_its_tables(app, written, tmp_path):
    from collector.service import replay
    settings = app.extensions["footfall"].settings
    pcap = tmp_path / "shop.pcap"
    store_pcap(pcap, 1, 5, time.time() - 7200)
    written.clear()
    stats = replay(settings, pcap)
    assert stats["visits"] == 5
    assert written and written <= WRITERS["collector"], written - WRITERS["collector"]


def test_the_scheduler_jobs_write_only_their_tables(app, visitors, written):
    settings = app.extensions["footfall"].settings
    assert visitors.sign_in(SignInForm(email="w@example.com", terms=True), Client("10.0.0.5", "02:00:00:00:00:05")).ok
    database.close()
    written.clear()
    for name in ("segments", "purge", "push", "backup", "signin_visits", "forget"):
        jobs.run_job(name, settings)
    assert written and written <= WRITERS["scheduler"], written - WRITERS["scheduler"]

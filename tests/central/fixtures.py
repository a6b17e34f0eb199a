"""Real PostgreSQL for the central store: one server per session, a schema per test, dropped afterwards.

Registered for the whole suite from tests/conftest.py (tests/security uses it too). The server
is FOOTFALL_TEST_DSN when set, else a throwaway one started by tests/pgserver.py on first use.
"""
from __future__ import annotations

import gzip
import json
import os
import time
import uuid

import pytest

from tests import pgserver
from tests.conftest import require


@pytest.fixture(scope="session")
def pg_dsn():
    """Started lazily: a session that runs no central test starts no server."""
    if os.environ.get(pgserver.ENV_DSN):
        try:
            pgserver.check_reachable(os.environ[pgserver.ENV_DSN])
        except pgserver.ServerError as exc:
            pytest.fail(str(exc))  # named on purpose: never quietly fall back to another server
        yield os.environ[pgserver.ENV_DSN]
        return
    require(pgserver.bin_dir() is not None, "initdb and pg_ctl not found: install the Debian package postgresql")
    server = pgserver.start_throwaway()
    try:
        yield server.dsn
    finally:
        pgserver.stop_throwaway(server)


@pytest.fixture
def schema(pg_dsn):
    name = f"ff_{uuid.uuid4().hex[:12]}"
    yield name
    from central.db import database
    database.close_all()
    pgserver.drop_schema(pg_dsn, name)


@pytest.fixture
def central_settings(pg_dsn, schema, tmp_path):
    from portal.config import load_settings
    return load_settings(environ={}, data_dir=str(tmp_path / "central"), central_dsn=pg_dsn, central_schema=schema,
                         log_level="WARNING",  # the chain assessed both ad platforms (exports to them allowed)
                         central_transfers_assessed="meta:2026-01-01,google:2026-01-01")


@pytest.fixture
def central_app(central_settings):
    from central import create_app
    app = create_app(central_settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def stores(central_app):
    from central import add_store
    from central.db import database
    with central_app.app_context(), database.connection_context():
        vault = central_app.extensions["central"]["vault"]
        return {sid: add_store(sid, f"Store {sid}", vault) for sid in ("hcm-01", "hn-02")}


def event(topic, uid=None, at="2026-11-20T10:00:00", **data):
    return {"uid": uid or uuid.uuid4().hex, "topic": topic, "at": at, "data": data}


def post_batch(client, store_id, key, events, timestamp=None, body=None, headers=None):
    from central.ingest import sign
    body = body if body is not None else gzip.compress(json.dumps({"events": events}).encode())
    ts = int(time.time()) if timestamp is None else timestamp
    h = {"Content-Encoding": "gzip", "X-Footfall-Store": store_id, "X-Footfall-Timestamp": str(ts),
         "X-Footfall-Signature": sign(key, ts, body), **(headers or {})}
    return client.post("/v1/ingest", data=body, headers=h)

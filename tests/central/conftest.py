"""Real PostgreSQL for the central store: a schema per test, dropped afterwards."""
from __future__ import annotations

import gzip
import json
import os
import time
import uuid

import pytest

from tests.conftest import require

DSN = os.environ.get("FOOTFALL_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_reachable() -> bool:
    try:
        import psycopg2
        from urllib.parse import urlsplit
        parts = urlsplit(DSN)
        psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username, dbname=parts.path.strip("/"),
                         connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.fixture
def schema():
    require(postgres_reachable(), f"no PostgreSQL answers at {DSN}")
    name = f"ff_{uuid.uuid4().hex[:12]}"
    yield name
    import psycopg2
    from urllib.parse import urlsplit

    from central.db import database
    database.close_all()
    parts = urlsplit(DSN)
    conn = psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username, dbname=parts.path.strip("/"))
    conn.autocommit = True
    conn.cursor().execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture
def central_settings(schema, tmp_path):
    from portal.config import load_settings
    return load_settings(environ={}, data_dir=str(tmp_path / "central"), central_dsn=DSN, central_schema=schema,
                         log_level="WARNING")


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

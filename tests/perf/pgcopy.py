"""What the central store's benchmarks share (bench_sync, bench_chain, bench_central_read): a central
on a schema of its own, the environment that serves it, and the bare COPY baseline they compare
against (the same visit rows copied into a table with no index, key or trigger, in the same run)."""
from __future__ import annotations

import io
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from tests import pgserver


ROOT = Path(__file__).resolve().parents[2]


def central_settings(dsn: str, name: str, **extra):
    """Settings of a central store on a new schema `ff_<name>_...`, its data in a new temporary folder."""
    from portal.config import load_settings
    tmp = Path(tempfile.mkdtemp(prefix=f"footfall-{name}-"))
    return load_settings(environ={}, data_dir=str(tmp / "central"), central_dsn=dsn,
                         central_schema=f"ff_{name}_{uuid.uuid4().hex[:8]}", log_level="WARNING", **extra)


def serve_env(settings) -> dict[str, str]:
    """The environment `footfall central serve` reads those settings from."""
    return {"FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_CENTRAL_DSN": settings.central_dsn,
            "FOOTFALL_CENTRAL_SCHEMA": settings.central_schema, "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}


def connect(dsn: str, schema: str):
    import psycopg2
    return psycopg2.connect(**pgserver.connect_kwargs(dsn), options=f"-c search_path={schema}")


def copy_rate(dsn: str, schema: str, table: str, columns: str, lines: Iterable[str]) -> float:
    """COPY tab-separated `lines` into `table` (`columns`), committed: rows per second."""
    buffer = io.StringIO("".join(lines))
    count = buffer.getvalue().count("\n")
    conn = connect(dsn, schema)
    try:
        cur = conn.cursor()
        start = time.perf_counter()
        cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
        conn.commit()
        return count / (time.perf_counter() - start)
    finally:
        conn.close()


def bare_visits_rate(dsn: str, schema: str, visits: Iterable[tuple[str, str, str, str, bool]]) -> float:
    """(store, device, start, end, passerby) rows into a bare table: rows per second."""
    conn = connect(dsn, schema)
    try:
        conn.cursor().execute('CREATE TABLE copy_visit (store_id text, device text, start timestamp, '
                              '"end" timestamp, passerby boolean)')
        conn.commit()
    finally:
        conn.close()
    return copy_rate(dsn, schema, "copy_visit", 'store_id, device, start, "end", passerby',
                     (f"{s}\t{d}\t{a}\t{b}\t{'t' if p else 'f'}\n" for s, d, a, b, p in visits))


def unpartitioned_visits_rate(dsn: str, schema: str, visits: Iterable[tuple[str, int, str, str, bool]]) -> float:
    """(store, device id, start, end, passerby) rows into the visit table as it was before migration
    0008 (one table, primary key on id, two indexes, foreign keys to store and device): rows/s."""
    conn = connect(dsn, schema)
    try:
        conn.cursor().execute(
            "CREATE TABLE copy_visit_fk (id BIGSERIAL PRIMARY KEY, store_id VARCHAR(255) NOT NULL REFERENCES store (id) "
            "ON DELETE CASCADE, device_id BIGINT NOT NULL REFERENCES device (id) ON DELETE CASCADE, start TIMESTAMP NOT NULL, "
            '"end" TIMESTAMP NOT NULL, passerby BOOLEAN NOT NULL); '
            "CREATE INDEX ON copy_visit_fk (store_id, start); CREATE INDEX ON copy_visit_fk (device_id)")
        conn.commit()
    finally:
        conn.close()
    return copy_rate(dsn, schema, "copy_visit_fk", 'store_id, device_id, start, "end", passerby',
                     (f"{s}\t{d}\t{a}\t{b}\t{'t' if p else 'f'}\n" for s, d, a, b, p in visits))

"""The bare COPY baseline the central store's benchmarks compare against (bench_sync, bench_chain):
the same visit rows copied into a table with no index, key or trigger, in the same run."""
from __future__ import annotations

import io
import time
from collections.abc import Iterable

from tests import pgserver


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

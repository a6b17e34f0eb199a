"""One writer thread: batches of device updates, closed visits and runs in progress, each
written in one transaction. The pipeline never waits on SQLite; the queue is bounded so a
stalled disk slows capture's hand-off instead of eating memory."""
from __future__ import annotations

import ctypes
import itertools
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from peewee import OperationalError

from collector.oui import OuiTable
from collector.sessions import VisitRecord
from portal.core.macs import randomized
from portal.core.times import epoch, stamp
from portal.db import database, is_busy

logger = logging.getLogger(__name__)

# Each batch goes to SQLite as one JSON array per statement (json_each), in order: one step of
# C per statement instead of one per row, and the GIL is free while SQLite works.
# The vendor is filled once, for a device that has none yet ('' marks an unknown prefix: asked
# once); randomized addresses have no vendor behind them and pass NULL, leaving it as it is.
_UPSERT_DEVICES = """
INSERT INTO device (mac, first_seen, last_seen, last_ip, randomized, dhcp_fingerprint, dhcp_vendor, hostname, vendor)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7,
       value ->> 8
FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT(mac) DO UPDATE SET
  first_seen = min(first_seen, excluded.first_seen),
  last_seen = max(last_seen, excluded.last_seen),
  last_ip = coalesce(excluded.last_ip, last_ip),
  dhcp_fingerprint = coalesce(excluded.dhcp_fingerprint, dhcp_fingerprint),
  dhcp_vendor = coalesce(excluded.dhcp_vendor, dhcp_vendor),
  hostname = coalesce(excluded.hostname, hostname),
  vendor = coalesce(vendor, excluded.vendor)
"""
_INSERT_MISSING = """
INSERT INTO device (mac, first_seen, last_seen, randomized)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT(mac) DO NOTHING
"""
# Every MAC of a visit or a run has its device row by then (the two statements above).
_INSERT_VISITS = """
INSERT INTO visit (device_id, start, "end", source, passerby)
SELECT d.id, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3
FROM json_each(?) AS j JOIN device AS d ON d.mac = j.value ->> 4 ORDER BY j.key
"""
_INSERT_EVENTS = """
INSERT INTO outbox_event (uid, topic, payload, created_at, attempts)
SELECT value ->> 0, 'visit.closed', value ->> 1, ?, 0 FROM json_each(?) ORDER BY key
"""
_UPSERT_RUNS = """
INSERT INTO open_run (device_id, source, start, last, sightings)
SELECT d.id, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3
FROM json_each(?) AS j JOIN device AS d ON d.mac = j.value ->> 4 WHERE true ORDER BY j.key
ON CONFLICT(device_id, source) DO UPDATE SET start = excluded.start, last = excluded.last, sightings = excluded.sightings
"""
_DELETE_RUNS = """
DELETE FROM open_run WHERE (device_id, source) IN (
  SELECT d.id, j.value ->> 0 FROM json_each(?) AS j JOIN device AS d ON d.mac = j.value ->> 1)
"""




def visit_payload(mac: str, start: str, end: str, passerby: bool, source: str) -> str:
    """The outbox payload of a closed visit: the text json.dumps gives for this dict (all its
    strings are plain ASCII: a MAC in hex, two stamps, a source name), written without it."""
    return (f'{{"device": "{mac}", "start": "{start}", "end": "{end}", '
            f'"passerby": {"true" if passerby else "false"}, "source": "{source}"}}')


def uuid4_hexes(n: int) -> list[str]:
    """n random UUIDs (version 4) as uuid.uuid4().hex writes them, from one read of urandom."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, 32 * n, 32)]


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    mac: str
    first_seen: float
    last_seen: float
    ip: str | None
    randomized: bool
    prl: str | None
    vendor_class: str | None
    hostname: str | None


@dataclass(frozen=True, slots=True)
class RunUpdate:
    mac: str
    source: str
    start: float | None  # None: the run ended
    last: float | None
    sightings: int


@dataclass(frozen=True)
class Batch:
    devices: tuple[DeviceUpdate, ...]
    visits: tuple[VisitRecord, ...]
    runs: tuple[RunUpdate, ...]


class Store:
    """Writes batches; used by the writer thread only (one writer)."""

    def __init__(self, oui: OuiTable) -> None:
        self.oui = oui
        self.written_visits = 0

    def load_runs(self) -> Iterator[tuple[str, str, float, float, int]]:
        """Runs saved in progress, streamed (50,000 of them should not sit in a list)."""
        rows = database.execute_sql(
            "SELECT d.mac, r.source, r.start, r.last, r.sightings FROM open_run r JOIN device d ON d.id = r.device_id")
        for mac, source, start, last, n in rows:
            yield mac, source, epoch(start), epoch(last), n

    def write(self, batch: Batch) -> None:
        execute = _execute_json
        with database.atomic():
            if batch.devices:
                vendor = self.oui.vendor
                execute(_UPSERT_DEVICES, ([
                    (d.mac, stamp(d.first_seen), stamp(d.last_seen), d.ip, d.randomized, d.prl, d.vendor_class,
                     d.hostname, None if d.randomized else (vendor(d.mac) or "")) for d in batch.devices],))
            macs = {v.mac for v in batch.visits} | {r.mac for r in batch.runs}
            missing = macs - {d.mac for d in batch.devices}
            if missing:  # written by an earlier batch, unless the portal erased it since
                seen: dict[str, tuple[float, float]] = {}
                for item in (*batch.visits, *(r for r in batch.runs if r.start is not None)):
                    lo, hi = seen.get(item.mac, (item.start, item.start))
                    seen[item.mac] = (min(lo, item.start), max(hi, getattr(item, "end", None) or item.last))
                execute(_INSERT_MISSING, ([(m, stamp(seen[m][0]), stamp(seen[m][1]), randomized(m))
                                           for m in missing if m in seen],))
            if batch.visits:
                rows = [(stamp(v.start), stamp(v.end), v.source, v.passerby, v.mac) for v in batch.visits]
                execute(_INSERT_VISITS, (rows,))
                # The central store learns each closed visit (same transaction: never one without the other).
                lan = [row for row in rows if row[2] == "lan"]
                execute(_INSERT_EVENTS, (stamp(time.time()), [
                    (uid, visit_payload(mac, start, end, passerby, source))
                    for uid, (start, end, source, passerby, mac) in zip(uuid4_hexes(len(lan)), lan)]))
                self.written_visits += len(batch.visits)
            live = [(r.source, stamp(r.start), stamp(r.last), r.sightings, r.mac) for r in batch.runs if r.start is not None]
            ended = [(r.source, r.mac) for r in batch.runs if r.start is None]
            if live:
                execute(_UPSERT_RUNS, (live,))
            if ended:
                execute(_DELETE_RUNS, (ended,))


_json = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
JSON_ROWS = 2000  # rows per statement: the JSON text and SQLite's parse of it stay small


def _execute_json(sql: str, params: tuple) -> None:
    """Run `sql` whose last parameter is a JSON array, for the rows of params[-1], in order."""
    *first, rows = params
    for i in range(0, len(rows), JSON_ROWS):
        database.execute_sql(sql, (*first, _json(rows[i:i + JSON_ROWS])))


def _trim() -> None:
    """Give memory freed by a batch back to the OS (glibc keeps it otherwise)."""
    if _libc is not None:
        _libc.malloc_trim(0)


try:
    _libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


class Writer(threading.Thread):
    """The one thread that writes. submit() hands a batch over; stop() drains and joins."""

    _STOP = object()

    def __init__(self, store: Store, depth: int = 8) -> None:
        super().__init__(name="collector-writer", daemon=True)
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.errors = 0
        self.busy_waits = 0
        self.busy_retries = 20

    def submit(self, batch: Batch) -> None:
        self.queue.put(batch)

    def run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is self._STOP:
                return
            try:
                self._write(batch)
                del batch
                _trim()
            except Exception:
                self.errors += 1
                logger.exception("could not write a batch of %d devices, %d visits", len(batch.devices), len(batch.visits))

    def _write(self, batch: Batch) -> None:
        """Write, waiting out a database that stays busy (a long job, a backup) instead of dropping
        the batch: the queue in front is bounded, so capture slows down rather than losing visits."""
        for attempt in itertools.count():
            try:
                return self.store.write(batch)
            except OperationalError as exc:
                if not is_busy(exc) or attempt >= self.busy_retries:
                    raise
                self.busy_waits += 1
                logger.warning("database busy; writing the batch again (%d)", attempt + 1)
                time.sleep(min(2.0, 0.1 * 2 ** attempt))

    def stop(self, timeout: float = 30) -> None:
        self.queue.put(self._STOP)
        self.join(timeout)

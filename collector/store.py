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
from dataclasses import dataclass, field
from typing import Iterator

from peewee import OperationalError

from collector.oui import OuiTable
from collector.pseudonyms import Pseudonyms, followed_macs, forget_unfollowed, is_pseudonym
from collector.sessions import VisitRecord
from portal.clock import seq_now
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
# A pseudonymous device (collector/pseudonyms.py): its name, when it was seen, the randomized bit.
_UPSERT_ANONYMOUS = """
INSERT INTO device (mac, first_seen, last_seen, randomized, anonymous)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 1 FROM json_each(?) WHERE true ORDER BY key
ON CONFLICT(mac) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)
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
INSERT INTO outbox_event (uid, topic, payload, created_at, attempts, seq)
SELECT value ->> 0, 'visit.closed', value ->> 1, ?, 0, max(coalesce((SELECT max(seq) FROM outbox_event), 0) + 1, ?) + key
FROM json_each(?) ORDER BY key
"""
# (A row may carry more than the five values read: the randomized bit of its device, see _write.)
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
# A pseudonym whose run gave its row up without a visit (its device's person agreed meanwhile, or
# the run was renamed) is left with nothing to count: it goes (secure_delete zeroes it).
# (Each name found by its index: CROSS JOIN keeps SQLite from scanning every anonymous device.)
_DELETE_EMPTY_PSEUDONYMS = """
DELETE FROM device WHERE id IN (
  SELECT d.id FROM json_each(?) AS j CROSS JOIN device AS d ON d.mac = j.value WHERE d.anonymous = 1
    AND NOT EXISTS (SELECT 1 FROM visit v WHERE v.device_id = d.id)
    AND NOT EXISTS (SELECT 1 FROM open_run r WHERE r.device_id = d.id))
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
    randomized: bool = False  # under a pseudonym (mac): the randomized bit of the device behind it


@dataclass(frozen=True)
class Batch:
    devices: tuple[DeviceUpdate, ...]      # followed devices only
    visits: tuple[VisitRecord, ...]
    runs: tuple[RunUpdate, ...]            # rows to delete (start None) come first
    anonymous: dict[str, bool] = field(default_factory=dict)  # the pseudonyms among the visits' names: randomized bit


class Store:
    """Writes batches; used by the writer thread only (one writer). After a batch, every
    FOLLOWED_REFRESH seconds, it reads who may be followed into `pseudonyms.followed`."""

    FOLLOWED_REFRESH = 10.0

    def __init__(self, oui: OuiTable, pseudonyms: Pseudonyms | None = None) -> None:
        self.oui = oui
        self.pseudonyms = pseudonyms
        self.written_visits = 0
        self._followed_at = float("-inf")

    def refresh_followed(self) -> None:
        """Who may be followed now; at the first refresh, and whenever someone is no longer
        followed, what DHCP said of such devices is cleared (forget_unfollowed)."""
        if self.pseudonyms is not None:
            followed = followed_macs(database)
            first = self._followed_at == float("-inf")
            lost = self.pseudonyms.followed - followed
            self.pseudonyms.followed = followed
            self._followed_at = time.monotonic()
            if first or lost:
                forget_unfollowed(database)

    def load_runs(self) -> Iterator[tuple[str, str, float, float, int]]:
        """Runs saved in progress, streamed (50,000 of them should not sit in a list)."""
        rows = database.execute_sql(
            "SELECT d.mac, r.source, r.start, r.last, r.sightings FROM open_run r JOIN device d ON d.id = r.device_id")
        for mac, source, start, last, n in rows:
            yield mac, source, epoch(start), epoch(last), n

    def write(self, batch: Batch) -> None:
        self._write(batch)
        if time.monotonic() - self._followed_at >= self.FOLLOWED_REFRESH:
            self.refresh_followed()

    def _write(self, batch: Batch) -> None:
        execute = _execute_json
        anonymous = batch.anonymous
        with database.atomic():
            if batch.devices:
                vendor = self.oui.vendor
                execute(_UPSERT_DEVICES, ([
                    (d.mac, stamp(d.first_seen), stamp(d.last_seen), d.ip, d.randomized, d.prl, d.vendor_class,
                     d.hostname, None if d.randomized else (vendor(d.mac) or "")) for d in batch.devices],))
            rows = [(stamp(v.start), stamp(v.end), v.source, v.passerby, v.mac) for v in batch.visits]
            # One row a pseudonym's visit (the stamps shared): the upsert widens first and last seen.
            execute(_UPSERT_ANONYMOUS, (((row[4], row[0], row[1], anonymous[row[4]]) for row in rows
                                         if row[4] in anonymous),))
            macs = {v.mac for v in batch.visits if v.mac not in anonymous} | {
                r.mac for r in batch.runs if not is_pseudonym(r.mac)}
            missing = macs - {d.mac for d in batch.devices}
            if missing:  # written by an earlier batch, unless the portal erased it since
                seen: dict[str, tuple[float, float]] = {}
                for item in (*batch.visits, *(r for r in batch.runs if r.start is not None)):
                    if item.mac not in missing:
                        continue
                    lo, hi = seen.get(item.mac, (item.start, item.start))
                    seen[item.mac] = (min(lo, item.start), max(hi, getattr(item, "end", None) or item.last))
                execute(_INSERT_MISSING, ([(m, stamp(seen[m][0]), stamp(seen[m][1]), randomized(m))
                                           for m in missing if m in seen],))
            ended = [(r.source, r.mac) for r in batch.runs if r.start is None]
            if ended:  # before the runs in progress: one of them may take the same row again
                execute(_DELETE_RUNS, (ended,))
            if rows:
                execute(_INSERT_VISITS, (rows,))
                # The central store learns each closed visit of a followed device (same transaction:
                # never one without the other); a pseudonym's visits stay here, as figures.
                lan = [row for row in rows if row[2] == "lan" and row[4] not in anonymous]
                execute(_INSERT_EVENTS, (stamp(time.time()), seq_now(), [
                    (uid, visit_payload(mac, start, end, passerby, source))
                    for uid, (start, end, source, passerby, mac) in zip(uuid4_hexes(len(lan)), lan)]))
                self.written_visits += len(batch.visits)
            # Runs in progress (50,000 after a restart) as rows, stamped once, a chunk at a time (never
            # all at once): a pseudonym's device row as for its visits, then the run's own row.
            live = ((r.source, stamp(r.start), stamp(r.last), r.sightings, r.mac, r.randomized) for r in batch.runs
                    if r.start is not None)
            while chunk := list(itertools.islice(live, JSON_ROWS)):
                execute(_UPSERT_ANONYMOUS, ([(mac, start, last, bit) for _, start, last, _, mac, bit in chunk
                                             if is_pseudonym(mac)],))
                execute(_UPSERT_RUNS, (chunk,))
            # (A pseudonym with a visit in this batch keeps it: not even looked at.)
            given_up = [mac for source, mac in ended if is_pseudonym(mac) and mac not in anonymous]
            if given_up:  # last: this batch's visits and runs are in by now
                execute(_DELETE_EMPTY_PSEUDONYMS, (given_up,))


_json = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
JSON_ROWS = 2000  # rows per statement: the JSON text and SQLite's parse of it stay small


def _execute_json(sql: str, params: tuple) -> None:
    """Run `sql` whose last parameter is a JSON array, for the rows of params[-1] (any iterable;
    never all in one list), in order."""
    *first, rows = params
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, JSON_ROWS)):
        database.execute_sql(sql, (*first, _json(chunk)))


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

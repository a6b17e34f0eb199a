"""Running the collector: live from interfaces, or replaying a pcap file as fast as it goes."""
from __future__ import annotations

import datetime
import gc
import itertools
import logging
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from collector.capture import (DLT_IEEE802_11_RADIO, LAN_FILTER, MDNS_FILTER, PROBE_FILTER, ArpProber, LiveSource,
                               compile_filter, interface_mac)
from collector.oui import OuiTable
from collector.parse import LINKTYPE_ETHERNET
from collector.pcap import PcapReader
from collector.pipeline import FAST_PATH_ENTRIES, SWEEP_EVERY, Pipeline
from collector.pseudonyms import Pseudonyms, followed_macs, key_path
from collector.steady import SteadyClock
from collector.store import Store, Writer
from portal import clock, erasure_ledger, store_settings
from portal.config import backups_dir, database_path
from portal.db import database, init_db
from portal.health import Heartbeat
from portal.recovery import ensure_sound

logger = logging.getLogger(__name__)
REPLAY_CHUNK = 4096  # frames between two looks at the clock (flush) and at `stop`
REPLAY_FLUSH_FRAMES = 1 << 17  # and a batch for the writer at least this often
# The resident collector remembers fewer frames than a replay (about half a MB; see Pipeline):
# 20,000 frames/s need no cache at all, and its memory counts on a 512 MB box.
LIVE_FAST_PATH_ENTRIES = 2048


def _ignored(settings, *interfaces: str) -> frozenset[str]:
    macs = {m.strip().lower() for m in settings.ignore_macs.split(",") if m.strip()}
    macs.update(m for m in (interface_mac(i) for i in interfaces if i) if m)
    return frozenset(macs)


def _pipeline(settings, ignore: frozenset[str], fast_path_entries: int = FAST_PATH_ENTRIES,
              sweep_seconds: float = SWEEP_EVERY, save_runs: bool = True) -> tuple[Pipeline, Writer]:
    # The collector can lose its last second to a power cut (visits are rebuilt from what is
    # left); the portal's leads and consents keep synchronous=FULL on their own connections.
    ensure_sound(database_path(settings), backups_dir(settings))
    clock.load_floor(settings.data_dir)
    init_db(database_path(settings), synchronous="normal", cache_size=-2000, busy_timeout=settings.db_lock_wait_ms)
    # A database restored from a backup: the erasures and withdrawals since, redone before any
    # device is named (who is followed depends on them). Nothing to read otherwise.
    erasure_ledger.replay()
    # Anonymous by default: the key of the day in a file beside the database (never in it).
    pseudonyms = Pseudonyms(settings.pseudonym_rotation_hours, key_path(settings))
    with database.connection_context():
        settings = store_settings.apply(settings)  # visit thresholds the owner set in the panel
        pseudonyms.followed = followed_macs(database)
    writer = Writer(Store(OuiTable(settings.oui_file), pseudonyms))
    writer.start()
    pipeline = Pipeline(writer, settings.visit_gap_minutes * 60.0, settings.min_dwell_minutes * 60.0, ignore,
                        float(settings.flush_seconds), fast_path_entries, pseudonyms, sweep_seconds, save_runs)
    return pipeline, writer


def stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def replay(settings, path: str | Path, stop: threading.Event | None = None, fast: bool = True) -> dict:
    """Process a capture with its own timestamps as the clock; every run is closed at the end.
    `fast=False` feeds frame by frame through the plain parse (the reference for the fast path)."""
    stop = stop or threading.Event()
    started = time.perf_counter()
    with PcapReader(path) as reader:
        # Idle runs are closed once a gap of capture time rather than every minute, and before
        # each batch (so that none is written in progress only to be deleted): a visit's record
        # is the same whenever its run is closed (its last sighting ends it), only no one
        # watches a replay's runs in progress, and the sweep looks at every run.
        pipeline, writer = _pipeline(settings, _ignored(settings),
                                     sweep_seconds=max(SWEEP_EVERY, settings.visit_gap_minutes * 60.0),
                                     save_runs=False)
        tick, stats = pipeline.tick, pipeline.stats
        if fast and reader.linktype == LINKTYPE_ETHERNET:  # frames read in place from the file's mmap
            feed_records, data, record, unit = pipeline.feed_records, reader.data, reader.record, reader.unit

            def feed(count):
                before = stats.frames
                reader.offset = feed_records(data, reader.offset, count, record, unit)
                if stats.frames - before < count:
                    reader.finish(reader.offset)
                    return False
                return True
        else:  # the reference, and radiotap captures: frame by frame through the plain parse
            frames, plain, linktype = iter(reader), pipeline.feed, reader.linktype

            def feed(count):
                before = stats.frames
                for ts, frame in itertools.islice(frames, count):
                    plain(ts, frame, linktype)
                return stats.frames - before == count
        next_flush = REPLAY_FLUSH_FRAMES
        chunk = 1  # the first look at the clock and at `stop` comes after the first frame
        # The loop makes no reference cycles, while tens of thousands of runs and devices pile up
        # in memory: the cyclic collector's passes over them took a tenth of a replay's time.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while feed(chunk):
                chunk = REPLAY_CHUNK
                if stats.frames >= next_flush:
                    # A batch every so many frames as well as every flush_seconds: the writer
                    # thread commits one while the loop goes on (SQLite works without the GIL).
                    if pipeline.clock is not None:
                        pipeline.sweep(pipeline.clock)
                    pipeline.flush()
                    next_flush = stats.frames + REPLAY_FLUSH_FRAMES
                else:
                    tick()
                if stop.is_set():
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
        pipeline.flush(final=True)
        writer.stop()
        truncated = reader.truncated
    database.close()
    elapsed = time.perf_counter() - started
    stats = asdict(pipeline.stats)
    return {**stats, "truncated_records": truncated, "writer_errors": writer.errors, "writer_busy_waits": writer.busy_waits, "seconds": round(elapsed, 3),
            "frames_per_s": round(stats["frames"] / elapsed) if elapsed else None}


def run_live(settings, stop: threading.Event | None = None, announce=print) -> dict:
    """Capture until stopped; runs in progress are saved, not closed, so a restart carries them on."""
    stop = stop or threading.Event()
    interface = settings.capture_interface or settings.guest_interface
    expression = LAN_FILTER + (f" or {MDNS_FILTER}" if settings.capture_mdns else "")
    sources = [(LiveSource(interface, compile_filter(expression)), 1)]
    if settings.probe_interface:
        sources.append((LiveSource(settings.probe_interface, compile_filter(PROBE_FILTER, DLT_IEEE802_11_RADIO),
                                   DLT_IEEE802_11_RADIO), DLT_IEEE802_11_RADIO))
    pipeline, writer = _pipeline(settings, _ignored(settings, interface), LIVE_FAST_PATH_ENTRIES)
    pipeline.restore(writer.store.load_runs())
    prober = ArpProber(interface, settings.dhcp_leases_file, settings.arp_probe_seconds)
    threads = [threading.Thread(target=_pump, args=(src, linktype, pipeline, stop), daemon=True, name=f"capture-{src.interface}")
               for src, linktype in sources[1:]]
    for t in threads:
        t.start()
    lan, _ = sources[0]
    last_batch = [time.monotonic()]
    # Alive while the capture loop turns (it does at least every second, frames or not) and the
    # writer thread runs: a wedged loop or a dead writer stops the watchdog's pings.
    heartbeat = Heartbeat("collector", settings.data_dir,
                          alive=lambda: time.monotonic() - last_batch[0] < 10 and writer.is_alive(),
                          counters=lambda: {"frames": pipeline.stats.frames, "writer_errors": writer.errors,
                                            "writer_busy_waits": writer.busy_waits,
                                            "kernel_drops": sum(s.kernel_drops for s, _ in sources)})
    heartbeat.ready()
    announce(f"collector listening on {', '.join(s.interface for s, _ in sources)}")
    floor = clock.load_floor(settings.data_dir)
    steady = SteadyClock(floor=floor.replace(tzinfo=datetime.timezone.utc).timestamp() if floor else None)
    try:
        for frames in lan.batches(stop):
            now, step = steady.now()
            last_batch[0] = time.monotonic()
            with _feed_lock:  # a probe-request capture may feed the same pipeline
                if step:
                    logger.warning("the wall clock stepped by %+.0f s: runs in progress moved with it", step)
                    pipeline.shift(step)
                # Frames of one batch arrived within the last half second: dated together, on
                # the steady clock (the kernel's receive time follows the wall clock's steps).
                pipeline.feed_many([(now, frame) for _ts, frame in frames])
                pipeline.tick(now)
            if prober.due(now):
                prober.probe(now)
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        lan.read_stats()
        pipeline.flush()
        writer.stop()
        heartbeat.stop()
        database.close()
    return {**asdict(pipeline.stats), "kernel_packets": sum(s.kernel_packets for s, _ in sources),
            "kernel_drops": sum(s.kernel_drops for s, _ in sources), "capture_errors": sum(s.errors for s, _ in sources),
            "writer_errors": writer.errors, "writer_busy_waits": writer.busy_waits, "arp_probes": prober.sent}


_feed_lock = threading.Lock()


def _pump(source: LiveSource, linktype: int, pipeline: Pipeline, stop: threading.Event) -> None:
    """A second capture (probe requests) feeding the same pipeline."""
    for frames in source.batches(stop):
        with _feed_lock:
            for ts, frame in frames:
                pipeline.feed(ts, frame, linktype)

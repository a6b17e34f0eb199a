"""The collector's pipeline: frames -> sightings -> devices and visits -> batches for the writer."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from collector.parse import LINKTYPE_ETHERNET, Malformed, parse
from collector.sessions import AIR, LAN, Sessionizer
from collector.store import Batch, DeviceUpdate, RunUpdate, Writer
from portal.core.macs import randomized

logger = logging.getLogger(__name__)
SWEEP_EVERY = 60.0  # seconds of capture time between closing idle runs


class DeviceState:
    __slots__ = ("first", "last", "ip", "hostname", "prl", "vendor_class")

    def __init__(self, ts: float) -> None:
        self.first = self.last = ts
        self.ip = self.hostname = self.prl = self.vendor_class = None


@dataclass
class Stats:
    frames: int = 0
    sightings: int = 0
    ignored: int = 0
    malformed: int = 0
    visits: int = 0
    passersby: int = 0
    batches: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Pipeline:
    def __init__(self, writer: Writer, gap: float, min_dwell: float, ignore_macs: frozenset[str] = frozenset(),
                 flush_seconds: float = 5.0) -> None:
        self.writer = writer
        self.sessions = Sessionizer(gap, min_dwell)
        self.ignore = ignore_macs
        self.flush_seconds = flush_seconds
        self.devices: dict[str, DeviceState] = {}
        self.closed: list = []
        self.stats = Stats()
        self._next_sweep = None
        self._next_flush = time.monotonic() + flush_seconds

    def restore(self, runs) -> None:
        for mac, source, start, last, count in runs:
            self.sessions.restore(source, mac, start, last, count)

    def feed(self, ts: float, frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> None:
        """The hot path: one frame."""
        stats = self.stats
        stats.frames += 1
        try:
            s = parse(frame, ts, linktype)
        except Malformed:
            stats.malformed += 1
            return
        if s is None or s.mac in self.ignore:
            stats.ignored += 1
            return
        stats.sightings += 1
        stats.by_kind[s.kind] = stats.by_kind.get(s.kind, 0) + 1
        closed = self.sessions.observe(s.mac, AIR if s.kind == "probe" else LAN, ts)
        if closed is not None:
            self.closed.append(closed)
        device = self.devices.get(s.mac)
        if device is None:
            device = self.devices[s.mac] = DeviceState(ts)
        if ts > device.last:
            device.last = ts
        elif ts < device.first:
            device.first = ts
        if s.ip is not None:
            device.ip = s.ip
        if s.kind == "dhcp":
            device.hostname = s.hostname or device.hostname
            device.prl = s.prl or device.prl
            device.vendor_class = s.vendor_class or device.vendor_class
        if self._next_sweep is None:
            self._next_sweep = ts + SWEEP_EVERY
        elif ts >= self._next_sweep:
            self.sweep(ts)

    def sweep(self, now: float) -> None:
        self.closed.extend(self.sessions.sweep(now))
        self._next_sweep = now + SWEEP_EVERY

    def shift(self, step: float) -> None:
        """The wall clock stepped: runs in progress and the next sweep move with it."""
        self.sessions.shift(step)
        if self._next_sweep is not None:
            self._next_sweep += step

    def tick(self, clock_now: float | None = None) -> None:
        """Called often by the loop: sweep by the wall clock (live) and flush every few seconds."""
        if clock_now is not None and (self._next_sweep is None or clock_now >= self._next_sweep):
            self.sweep(clock_now)
        if time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Hand everything changed since the last flush to the writer; `final` closes every run."""
        if final:
            self.closed.extend(self.sessions.close_all())
        devices = tuple(DeviceUpdate(mac, d.first, d.last, d.ip, randomized(mac), d.prl, d.vendor_class, d.hostname)
                        for mac, d in self.devices.items())
        runs = tuple(RunUpdate(mac, source, run.start if run else None, run.last if run else None,
                               run.count if run else 0) for source, mac, run in self.sessions.take_dirty())
        visits = tuple(self.closed)
        self.devices = {}  # memory stays bounded by who was seen in one flush interval
        self.closed = []
        self.stats.visits += sum(1 for v in visits if not v.passerby)
        self.stats.passersby += sum(1 for v in visits if v.passerby)
        if devices or runs or visits:
            self.writer.submit(Batch(devices, visits, runs))
            self.stats.batches += 1
        self._next_flush = time.monotonic() + self.flush_seconds

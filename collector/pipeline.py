"""The collector's pipeline: frames -> sightings -> devices and visits -> batches for the writer."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

from collector.parse import LINKTYPE_ETHERNET, Malformed, parse, parse_ethernet
from collector.sessions import AIR, LAN, Run, Sessionizer
from collector.store import Batch, DeviceUpdate, RunUpdate, Writer
from portal.core.macs import randomized

logger = logging.getLogger(__name__)
SWEEP_EVERY = 60.0  # seconds of capture time between closing idle runs
# The fast path remembers what a frame meant by the bytes the parser reads from it; the tables
# are emptied at a flush once one holds this many entries (memory stays bounded; the live
# collector keeps a smaller limit than a replay).
FAST_PATH_ENTRIES = 1 << 18
KINDS = ("arp", "mdns", "dhcp")
_IGNORED = ("", None, -1, None, None, None)  # the entry of a MAC in ignore_macs


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
                 flush_seconds: float = 5.0, fast_path_entries: int = FAST_PATH_ENTRIES) -> None:
        self.writer = writer
        self.sessions = Sessionizer(gap, min_dwell)
        self.ignore = ignore_macs
        self.flush_seconds = flush_seconds
        self.devices: dict[str, DeviceState] = {}
        self.closed: list = []
        self.stats = Stats()
        self._next_sweep = None
        self._next_flush = time.monotonic() + flush_seconds
        # Fast path: the parse of a frame, keyed by the bytes it depends on (see feed_many).
        self.fast_path_entries = fast_path_entries
        self._arp: dict[bytes, tuple] = {}
        self._mdns: dict[bytes, tuple] = {}
        self._dhcp: dict[bytes, tuple] = {}

    def restore(self, runs) -> None:
        for mac, source, start, last, count in runs:
            self.sessions.restore(source, mac, start, last, count)

    def feed(self, ts: float, frame: bytes, linktype: int = LINKTYPE_ETHERNET) -> None:
        """One frame, the plain way: parse it into a sighting, then count it. feed_many gives the
        same results faster; this is the reference it is tested against (and the path of probe
        requests over the air)."""
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

    def feed_many(self, frames: Iterable[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET) -> None:
        """The hot path: frames as (timestamp, bytes), with the same results as feed() on each.

        Most frames come from devices already seen, saying what they said before: the same ARP
        announcement, the same mDNS source, the same DHCP options. The parse of such a frame is
        remembered under the bytes the parser reads from it (the key says which bytes, per kind
        of frame, once the checks before it have passed), so a known frame costs one slice and a
        dict lookup, and no object is built for it. Anything else (802.1Q tags, IPv6, IPv4
        options, short frames, other ethertypes) goes through parse() as in feed(). The parser
        is pure, so a remembered result never goes stale; counters are added up once per call.
        """
        if linktype != LINKTYPE_ETHERNET:
            for ts, frame in frames:
                self.feed(ts, frame, linktype)
            return
        arp, mdns, dhcp, limit = self._arp, self._mdns, self._dhcp, self.fast_path_entries
        ignore, devices, closed = self.ignore, self.devices, self.closed
        sessions = self.sessions
        lan, gap, record = sessions.runs[LAN], sessions.gap, sessions._record
        next_sweep = self._next_sweep
        counts = [0, 0, 0]
        n = ignored = malformed = 0
        try:
            for ts, frame in frames:
                n += 1
                size = len(frame)
                table = key = None
                if size >= 42 and frame[12] == 0x08:
                    ether = frame[13]
                    if ether == 0x06:  # ARP: everything _arp reads lies in bytes 6..31
                        table, key = arp, frame[6:32]
                    elif ether == 0x00 and frame[14] == 0x45:  # IPv4 without options
                        if frame[23] != 17:
                            ignored += 1  # not UDP
                            continue
                        port = (frame[36] << 8) | frame[37]
                        if port == 5353:  # the source MAC (multicast bit included) and address
                            table, key = mdns, frame[6:12] + frame[26:30]
                        elif port == 67:
                            if size >= 282 and not frame[6] & 0x01 and frame[42:45] == b"\x01\x01\x06":
                                # A BOOTREQUEST: ciaddr, chaddr, the cookie and the options (their
                                # length fixes the frame's) are all _dhcp reads.
                                table, key = dhcp, frame[54:58] + frame[70:76] + frame[278:]
                        else:
                            ignored += 1  # other UDP
                            continue
                entry = table.get(key) if table is not None else None
                if entry is None:
                    try:
                        s = parse_ethernet(frame, ts)
                    except Malformed:
                        malformed += 1
                        continue
                    if s is None:
                        ignored += 1
                        continue
                    if s.mac in ignore:
                        entry = _IGNORED
                    elif s.kind == "dhcp":
                        entry = (s.mac, s.ip, 2, s.hostname, s.prl, s.vendor_class)
                    else:
                        entry = (s.mac, s.ip, 0 if s.kind == "arp" else 1)
                    if table is not None and len(table) < limit:
                        table[key] = entry
                kind = entry[2]
                if kind < 0:
                    ignored += 1
                    continue
                counts[kind] += 1
                mac = entry[0]
                # Sessionizer.observe, inline.
                run = lan.get(mac)
                if run is None:
                    lan[mac] = Run(ts, ts)
                elif ts - run.last > gap:
                    closed.append(record(mac, LAN, run))
                    lan[mac] = Run(ts, ts, saved=run.saved)
                else:
                    run.dirty = True
                    if ts > run.last:
                        run.last = ts
                    elif ts < run.start:
                        run.start = ts
                    run.count += 1
                device = devices.get(mac)
                if device is None:
                    device = devices[mac] = DeviceState(ts)
                elif ts > device.last:
                    device.last = ts
                elif ts < device.first:
                    device.first = ts
                if entry[1] is not None:
                    device.ip = entry[1]
                if kind == 2:
                    device.hostname = entry[3] or device.hostname
                    device.prl = entry[4] or device.prl
                    device.vendor_class = entry[5] or device.vendor_class
                if next_sweep is None:
                    next_sweep = self._next_sweep = ts + SWEEP_EVERY
                elif ts >= next_sweep:
                    self.sweep(ts)
                    next_sweep = self._next_sweep
        finally:
            stats = self.stats
            stats.frames += n
            stats.ignored += ignored
            stats.malformed += malformed
            stats.sightings += sum(counts)
            for name, count in zip(KINDS, counts):
                if count:
                    stats.by_kind[name] = stats.by_kind.get(name, 0) + count

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
        for table in (self._arp, self._mdns, self._dhcp):
            if len(table) >= self.fast_path_entries:
                table.clear()
        self.closed = []
        self.stats.visits += sum(1 for v in visits if not v.passerby)
        self.stats.passersby += sum(1 for v in visits if v.passerby)
        if devices or runs or visits:
            self.writer.submit(Batch(devices, visits, runs))
            self.stats.batches += 1
        self._next_flush = time.monotonic() + self.flush_seconds

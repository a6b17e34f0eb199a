"""The collector's pipeline: frames -> sightings -> devices and visits -> batches for the writer."""
from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable

from collector.parse import LINKTYPE_ETHERNET, Malformed, ethernet_fields, parse
from collector.pseudonyms import Pseudonyms, is_pseudonym
from collector.sessions import AIR, LAN, Run, Sessionizer, VisitRecord
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
# feed_many's record header: the frame's timestamp as a double (a fraction of 0), its length.
_LIVE_RECORD = struct.Struct("<dII")
_WIDE: dict[str, struct.Struct] = {}  # a record's header format -> the same, then the ethertype's bytes


def _randomized(mac: str) -> bool:
    """The randomized bit of a MAC; a run restored under a pseudonym has its row already (False is
    not written over it)."""
    return False if is_pseudonym(mac) else randomized(mac)


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
    """Runs are kept by MAC in memory only; what reaches the writer names each device as
    `pseudonyms` says (collector/pseudonyms.py): a followed device by its MAC, any other by the
    pseudonym of the period its run started in (in memory keys when none are given)."""

    def __init__(self, writer: Writer, gap: float, min_dwell: float, ignore_macs: frozenset[str] = frozenset(),
                 flush_seconds: float = 5.0, fast_path_entries: int = FAST_PATH_ENTRIES,
                 pseudonyms: Pseudonyms | None = None, sweep_seconds: float = SWEEP_EVERY,
                 save_runs: bool = True) -> None:
        self.writer = writer
        # Runs in progress are saved at each flush (open_run) so that a restarted collector goes on
        # with them; a replay has no "later" to go on in (its file is read again whole), so it
        # saves none and a flush costs it the closed visits only, not a row per device present.
        self.save_runs = save_runs
        self.pseudonyms = pseudonyms if pseudonyms is not None else Pseudonyms()
        self._clock: float | None = None  # the latest time seen (frames, or the live loop's clock)
        # How many runs restored under a pseudonym are still keyed by it, waiting for their device's
        # MAC (or their end). Only they are keyed by a pseudonym; every other run by its MAC.
        self._orphans = 0
        self.sessions = Sessionizer(gap, min_dwell)
        self.ignore = ignore_macs
        self.flush_seconds = flush_seconds
        self.devices: dict[str, DeviceState] = {}
        self.closed: list = []
        self.stats = Stats()
        self.sweep_seconds = sweep_seconds
        self._next_sweep = None
        self._next_flush = time.monotonic() + flush_seconds
        # Fast path: the parse of a frame, keyed by the bytes it depends on (see feed_many).
        self.fast_path_entries = fast_path_entries
        self._arp: dict[bytes, tuple] = {}
        self._mdns: dict[bytes, tuple] = {}
        self._dhcp: dict[bytes, tuple] = {}

    def restore(self, runs) -> None:
        """Runs saved in progress. One saved under a pseudonym is kept under it until a MAC seen
        again has that pseudonym under a key still alive (the same period): then it is that MAC's
        (_adopt); until then it is swept like any other run, and closed under its pseudonym."""
        for name, source, start, last, count in runs:
            run = self.sessions.restore(source, name, start, last, count)
            if is_pseudonym(name):
                run.name = name
                self._orphans += 1

    def _adopt(self, mac: str, runs: dict, source: str = LAN) -> Run | None:
        """The run restored under `mac`'s pseudonym, now keyed by `mac` (None if there is none).

        Its saved row stays named as it was (run.row, the pseudonym). From now on the device is
        named as any other at each flush: by its MAC when its person agreed (the flush then gives
        the pseudonym's row up), else by the pseudonym of its run's period (the same one)."""
        names = self.pseudonyms
        for period, text in names.candidates(mac):
            run = runs.pop(text, None)
            if run is None:
                continue
            self._orphans -= 1
            runs[mac] = run
            name = names.name(mac, run.start, source)
            if name == period:  # recomputable from the key alive: the string need not stay
                run.name, run.row = None, name
            elif name.__class__ is str:  # followed now: the flush names it by its MAC
                run.name = None
            return run
        return None

    def _forget_orphans(self, closed: list[VisitRecord]) -> None:
        if self._orphans:
            self._orphans -= sum(1 for v in closed if is_pseudonym(v.mac))

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
        source = AIR if s.kind == "probe" else LAN
        if self._orphans and s.mac not in self.sessions.runs[source]:
            self._adopt(s.mac, self.sessions.runs[source], source)
        if self._clock is None or ts > self._clock:
            self._clock = ts
        closed = self.sessions.observe(s.mac, source, ts)
        if closed is not None:
            self.closed.append(closed)
        # What DHCP and ARP say is kept for a followed device only (over the air: aggregate only).
        if source == LAN and s.mac in self.pseudonyms.followed:
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
            self._next_sweep = ts + self.sweep_seconds
        elif ts >= self._next_sweep:
            self.sweep(ts)

    def feed_many(self, frames: Iterable[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET) -> None:
        """Frames as (timestamp, bytes), with the same results as feed() on each: laid end to end
        as records (_LIVE_RECORD: the timestamp as a double) and read in place by feed_records."""
        if linktype != LINKTYPE_ETHERNET:
            for ts, frame in frames:
                self.feed(ts, frame, linktype)
            return
        pack = _LIVE_RECORD.pack
        records = []
        for ts, frame in frames:
            records.append(pack(ts, 0, len(frame)))
            records.append(frame)
        data = b"".join(records)
        self.feed_records(data, 0, len(records) // 2, _LIVE_RECORD, 1.0)

    def feed_records(self, data, off: int, count: int, record: struct.Struct, unit: float) -> int:
        """The hot path: up to `count` Ethernet frames read in place from `data` (a pcap file's
        mmap, or feed_many's buffer) from offset `off`, each behind a header `record` unpacks as
        (seconds, fraction in `unit`s, captured length); returns the offset after the last
        frame read (a record cut short by the end of `data` is left there, unread).

        Most frames come from devices already seen, saying what they said before: the same ARP
        announcement, the same mDNS source, the same DHCP options. The parse of such a frame is
        remembered under the bytes the parser reads from it (the key says which bytes, per kind
        of frame, once the checks before it have passed), so a known frame costs one slice of
        the buffer and a dict lookup: no frame, sighting or tuple is built for it. Anything else
        (802.1Q tags, IPv6, IPv4 options, short frames, other ethertypes) is sliced out and goes
        through the parser (ethernet_fields, what parse() reads as in feed()). The parser is
        pure, so a remembered result never goes stale; counters are added up once per call.
        """
        arp, mdns, dhcp, limit = self._arp, self._mdns, self._dhcp, self.fast_path_entries
        ignore, devices, closed, followed = self.ignore, self.devices, self.closed, self.pseudonyms.followed
        sessions = self.sessions
        lan, gap, record_of = sessions.runs[LAN], sessions.gap, sessions._record
        unpack, head, end = record.unpack_from, record.size, len(data)
        # The header and the frame's ethertype in one unpack (its two bytes as they lie, read
        # only when the frame holds them); the last record of `data` may be too short for it.
        wide = _WIDE.get(record.format)
        if wide is None:
            wide = _WIDE[record.format] = struct.Struct(record.format + "12xBB")
        unpack_wide, wide_end = wide.unpack_from, end - wide.size
        next_sweep = self._next_sweep
        if next_sweep is None:
            next_sweep = float("-inf")  # the first sighting sets it
        counts = [0, 0, 0]
        n = ignored = malformed = 0
        # The latest sighting's time, as feed() keeps it (what a replay sweeps by before a batch).
        latest = self._clock if self._clock is not None else float("-inf")
        try:
            for n in range(count):  # n: the frames read before this one
                base = off + head
                if base > end:
                    break
                if off <= wide_end:
                    sec, frac, size, ether_high, ether = unpack_wide(data, off)
                else:
                    sec, frac, size = unpack(data, off)
                    ether_high = ether = 0
                if base + size > end:
                    break
                off = base + size
                ts = sec + frac * unit
                table = entry = None
                if size >= 42 and ether_high == 0x08:
                    if ether == 0x06:  # ARP: everything _arp reads lies in bytes 6..31
                        table, key = arp, data[base + 6:base + 32]
                        entry = arp.get(key)
                    elif ether == 0x00 and data[base + 14] == 0x45:  # IPv4 without options
                        if data[base + 23] != 17:
                            ignored += 1  # not UDP
                            continue
                        port = (data[base + 36] << 8) | data[base + 37]
                        if port == 5353:  # the source MAC (multicast bit included) and address
                            table, key = mdns, data[base + 6:base + 12] + data[base + 26:base + 30]
                            entry = mdns.get(key)
                        elif port == 67:
                            if size >= 282 and not data[base + 6] & 0x01 and data[base + 42:base + 45] == b"\x01\x01\x06":
                                # A BOOTREQUEST: ciaddr, chaddr, the cookie and the options (their
                                # length fixes the frame's) are all _dhcp reads.
                                table, key = dhcp, data[base + 54:base + 58] + data[base + 70:base + 76] + data[base + 278:off]
                                entry = dhcp.get(key)
                        else:
                            ignored += 1  # other UDP
                            continue
                if entry is None:
                    try:
                        fields = ethernet_fields(data[base:off])
                    except Malformed:
                        malformed += 1
                        continue
                    if fields is None:
                        ignored += 1
                        continue
                    if fields[0] in ignore:
                        entry = _IGNORED
                    elif fields[1] == "dhcp":  # (mac, ip, 2, hostname, prl, vendor_class)
                        entry = (fields[0], fields[2], 2, *fields[3:6])
                    else:
                        entry = (fields[0], fields[2], 0 if fields[1] == "arp" else 1)
                    if table is not None and len(table) < limit:
                        table[key] = entry
                kind = entry[2]
                if kind < 0:
                    ignored += 1
                    continue
                counts[kind] += 1
                if ts > latest:
                    latest = ts
                mac = entry[0]
                # Sessionizer.observe, inline.
                run = lan.get(mac)
                if run is None and self._orphans:
                    run = self._adopt(mac, lan)
                if run is None:
                    lan[mac] = Run(ts, ts)
                else:
                    last = run.last
                    if ts - last > gap:
                        closed.append(record_of(mac, LAN, run))
                        lan[mac] = Run(ts, ts, saved=run.saved, row=run.row)
                    else:
                        run.dirty = True
                        if ts > last:
                            run.last = ts
                        elif ts < run.start:
                            run.start = ts
                        run.count += 1
                if followed and mac in followed:  # what a device says is kept for a followed one only
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
                if ts >= next_sweep:
                    if self._next_sweep is None:
                        self._next_sweep = ts + self.sweep_seconds
                    else:
                        self.sweep(ts)
                    next_sweep = self._next_sweep
            else:
                n = count
        finally:
            if latest > float("-inf"):
                self._clock = latest
            stats = self.stats
            stats.frames += n
            stats.ignored += ignored
            stats.malformed += malformed
            stats.sightings += sum(counts)
            for name, seen in zip(KINDS, counts):
                if seen:
                    stats.by_kind[name] = stats.by_kind.get(name, 0) + seen
        return off

    @property
    def clock(self) -> float | None:
        """The latest time seen (frames, or the live loop's clock)."""
        return self._clock

    def sweep(self, now: float) -> None:
        closed = self.sessions.sweep(now)
        self._forget_orphans(closed)
        self.closed.extend(closed)
        self._next_sweep = now + self.sweep_seconds

    def shift(self, step: float) -> None:
        """The wall clock stepped: runs in progress and the next sweep move with it."""
        self.sessions.shift(step)
        if self._next_sweep is not None:
            self._next_sweep += step

    def tick(self, clock_now: float | None = None) -> None:
        """Called often by the loop: sweep by the wall clock (live) and flush every few seconds."""
        if clock_now is not None and (self._clock is None or clock_now > self._clock):
            self._clock = clock_now
        if clock_now is not None and (self._next_sweep is None or clock_now >= self._next_sweep):
            self.sweep(clock_now)
        if time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Hand everything changed since the last flush to the writer; `final` closes every run.

        Each device is named here, never earlier: followed devices by their MAC (with what DHCP
        said of them; whatever name their run had before), others by the pseudonym of the period
        their run started in, without hostname, fingerprint or address. A saved run whose name
        changed (its person agreed or withdrew) gives its old row up. Over the air nothing is
        saved in progress and every closed run is counted under the day's one aggregate name.
        Then, when the clock has left the period, the keys of past periods go (see _rotate)."""
        sessions, names = self.sessions, self.pseudonyms
        if final:
            closed = sessions.close_all()
            self._forget_orphans(closed)
            self.closed.extend(closed)
        followed, name_of, text_of = names.followed, names.name, names.text
        anonymous: dict[str, bool] = {}  # the visits' pseudonyms (a run's carries its randomized bit)
        # Rows of runs that ended go first: a run that began since may take the same name again.
        ended = [RunUpdate(text_of(mac, run.row), source, None, None, 0) for source, mac, run in sessions.ended]
        if not self.save_runs:
            sessions.ended = []  # (take_dirty, below, takes them otherwise)
        live = []
        for source, mac, run in (sessions.take_dirty() if self.save_runs else ()):
            if run is None:
                continue  # in `ended` above
            if source == AIR and run.row is None:
                run.saved = False  # over the air: never saved in progress (rows restored from before are kept up)
                continue
            name = mac if source == LAN and mac in followed else run.name or name_of(mac, run.start, source)
            text = text_of(mac, name)
            if run.row is not None and run.row != name:
                ended.append(RunUpdate(text_of(mac, run.row), source, None, None, 0))
            run.row = name
            live.append(RunUpdate(text, source, run.start, run.last, run.count, _randomized(mac)))
        visits = []
        for v in self.closed:
            if v.source == AIR:
                text = names.aggregate(v.start)
                anonymous[text] = False
            else:
                text = v.mac if v.mac in followed else text_of(v.mac, v.name or name_of(v.mac, v.start, v.source))
                if text is not v.mac or is_pseudonym(v.mac):
                    anonymous[text] = _randomized(v.mac)
            visits.append(VisitRecord(text, v.source, v.start, v.end, v.sightings, v.passerby))
        devices = tuple(DeviceUpdate(mac, d.first, d.last, d.ip, randomized(mac), d.prl, d.vendor_class, d.hostname)
                        for mac, d in self.devices.items() if mac in followed)  # (no longer followed since: dropped)
        runs = (*ended, *live)
        visits = tuple(visits)
        self.devices = {}  # memory stays bounded by who was seen in one flush interval
        for table in (self._arp, self._mdns, self._dhcp):
            if len(table) >= self.fast_path_entries:
                table.clear()
        self.closed = []
        self.stats.visits += sum(1 for v in visits if not v.passerby)
        self.stats.passersby += sum(1 for v in visits if v.passerby)
        if devices or runs or visits:
            self.writer.submit(Batch(devices, visits, runs, anonymous))
            self.stats.batches += 1
        if self._clock is not None:
            # A replay's clock is its capture's: one dated ahead (a box whose clock was wrong) must
            # not destroy the keys of the periods the live collector is still in (its saved runs
            # would then never be adopted again); the wall clock bounds how far a replay rotates.
            period = names.due(self._clock if self.save_runs else min(self._clock, names.wall()))
            if period is not None:
                self._rotate(period)
        self._next_flush = time.monotonic() + self.flush_seconds

    def _rotate(self, period: int) -> None:
        """The clock entered `period`: runs still open from earlier periods keep the names they
        have (fixed as text now), then the earlier keys are destroyed."""
        names = self.pseudonyms
        name_of, text_of = names.name, names.text
        runs = self.sessions.runs[LAN]  # over the air, closed runs go under an aggregate name
        for mac, run in runs.items():
            if run.name is None:
                name = name_of(mac, run.start)
                if name.__class__ is int and name < period:
                    run.name = text_of(mac, name)
            if run.row.__class__ is int and run.row < period:
                run.row = text_of(mac, run.row)
        # Runs restored under a pseudonym of a period now gone cannot be adopted any more: their
        # device's MAC no longer gives that pseudonym. They stay until swept (or end at a flush).
        names.rotate(period)

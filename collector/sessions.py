"""Sightings -> visits. A visit is a run of sightings with no gap longer than `gap` that lasts at
least `min_dwell`; shorter runs are passers-by, kept apart. Time is whatever the sightings say
(packet timestamps), so a replay always yields the same visits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

LAN, AIR = "lan", "air"  # on the guest network, or probe requests heard over the air


@dataclass(frozen=True, slots=True)
class VisitRecord:
    mac: str
    source: str
    start: float
    end: float
    sightings: int
    passerby: bool
    name: str | None = None  # the collector's name for the device when it was fixed during the run


class Run:
    # saved: the database holds a row of this (source, mac) in open_run (restored, or written by a
    # flush), so the run's end must delete it; a run that starts and ends between two flushes
    # never had a row, and its end costs the writer nothing.
    # row, name: opaque to the sessionizer; the pipeline's name of the saved row, and of the
    # device when it had to be fixed before the run ended (collector/pseudonyms.py).
    __slots__ = ("start", "last", "count", "dirty", "saved", "row", "name")

    def __init__(self, start: float, last: float, count: int = 1, saved: bool = False, row=None) -> None:
        self.start, self.last, self.count = start, last, count
        self.dirty = True
        self.saved = saved
        self.row = row
        self.name = None


class Sessionizer:
    def __init__(self, gap: float, min_dwell: float) -> None:
        self.gap, self.min_dwell = gap, min_dwell
        self.runs: dict[str, dict[str, Run]] = {LAN: {}, AIR: {}}
        # Changed runs carry a flag (no set of 50,000 MACs); ended ones with a row wait here until taken.
        self.ended: list[tuple[str, str, Run]] = []

    def restore(self, source: str, mac: str, start: float, last: float, count: int) -> Run:
        """A run in progress when the collector stopped."""
        run = self.runs[source][mac] = Run(start, last, count, saved=True, row=mac)
        run.dirty = False
        return run

    def observe(self, mac: str, source: str, ts: float) -> VisitRecord | None:
        """Count a sighting; returns the run it ended, if the gap since the last one was too long."""
        runs = self.runs[source]
        run = runs.get(mac)
        if run is None:
            runs[mac] = Run(ts, ts)
            return None
        if ts - run.last > self.gap:
            closed = self._record(mac, source, run)
            runs[mac] = Run(ts, ts, saved=run.saved, row=run.row)  # the next run takes over the saved row
            return closed
        run.dirty = True
        if ts > run.last:
            run.last = ts
        elif ts < run.start:  # slightly out-of-order frames
            run.start = ts
        run.count += 1
        return None

    def sweep(self, now: float) -> list[VisitRecord]:
        """End the runs that have been silent for longer than the gap."""
        closed = []
        for source, runs in self.runs.items():
            idle = [mac for mac, run in runs.items() if now - run.last > self.gap]
            for mac in idle:
                run = runs.pop(mac)
                closed.append(self._record(mac, source, run))
                if run.saved:
                    self.ended.append((source, mac, run))
        return closed

    def close_all(self) -> list[VisitRecord]:
        closed = [self._record(mac, source, run) for source, runs in self.runs.items() for mac, run in runs.items()]
        for source, runs in self.runs.items():
            self.ended.extend((source, mac, run) for mac, run in runs.items() if run.saved)
            runs.clear()
        return closed

    def take_dirty(self) -> Iterable[tuple[str, str, Run | None]]:
        """Runs changed since the last call: (source, mac, run or None when it ended). What is
        taken is about to be written: those runs have a row from now on."""
        ended, self.ended = self.ended, []
        for source, mac, _run in ended:
            if mac not in self.runs[source]:  # not reopened since
                yield source, mac, None
        for source, runs in self.runs.items():
            for mac, run in runs.items():
                if run.dirty:
                    run.dirty = False
                    run.saved = True
                    yield source, mac, run

    def shift(self, step: float) -> None:
        """The wall clock stepped by `step` seconds (collector/steady.py): move every run in
        progress with it, so that it neither ends (a step forward) nor swallows the next (back)."""
        for runs in self.runs.values():
            for run in runs.values():
                run.start += step
                run.last += step
                run.dirty = True

    def open_count(self) -> int:
        return sum(len(runs) for runs in self.runs.values())

    def _record(self, mac: str, source: str, run: Run) -> VisitRecord:
        dwell = run.last - run.start
        return VisitRecord(mac, source, run.start, run.last, run.count, dwell < self.min_dwell, run.name)

"""`footfall scheduler`: the job table's timers in one slim process, each run in a child process.

Why children (issue 18, tests/perf/bench_appliance.py): a scheduler that ran its jobs itself held
everything they import (peewee, the models, cryptography, the sync client) for good, about 46 MB
of the Pi's 512. This process holds the job table, its timers and a list of children (about 18
MB); a job's memory is given back when its child exits. The timers are this module's own (Every,
Daily) rather than APScheduler's, whose import alone (asyncio, ssl, importlib.metadata,
multiprocessing) costs about 10 MB here. The price of children is a Python start per run (about
0.25 s of CPU on the benchmark machine) and a peak while a child runs, stated beside the idle
figure.

The rules of the APScheduler scheduler before are kept: a job never overlaps itself (a run that
comes due while the last is still running or waiting is skipped), missed runs coalesce into one,
and a run more than an hour late (a machine that slept, a clock set forward) is skipped. Children
run one at a time (one worker), so the peak is this process plus one child, never the whole table
at once. A child still running after its job's `limit_seconds` is stopped (SIGTERM, then
SIGKILL); a child that fails is logged and the next run tries again. SIGTERM here starts no new
child and stops the running one within `GRACE_SECONDS`: every job is idempotent and
transactional, so a stopped run loses only time.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

GRACE_SECONDS = 10.0  # between a child's SIGTERM and its SIGKILL (systemd's TimeoutStopSec is 30)
MISFIRE_GRACE_SECONDS = 3600  # a run later than this is skipped; the next one comes as planned
PREPARE = "prepare"  # the first child: `footfall jobs prepare` (portal/jobs.py: prepare)
PREPARE_LIMIT_SECONDS = 280  # the unit's TimeoutStartSec is 300


@dataclass(frozen=True)
class Every:
    """Every so many seconds, the first one that long after the start."""
    seconds: float

    def first(self, now: float) -> float:
        return now + self.seconds

    def following(self, due: float, now: float) -> float:
        """The next due time after now on this timer's grid: the runs missed meanwhile are one."""
        return due + self.seconds * (int((now - due) // self.seconds) + 1)

    def horizon(self) -> float:
        return self.seconds


@dataclass(frozen=True)
class Daily:
    """At a local time of the appliance every day, or on one weekday (0 is Monday)."""
    hour: int
    minute: int
    weekday: int | None = None

    def first(self, now: float) -> float:
        day = date.fromtimestamp(now)
        for days in range(9):
            d = day + timedelta(days=days)
            if self.weekday is None or d.weekday() == self.weekday:
                # mktime reads the machine's zone and its summer time (is_dst -1: the zone decides)
                at = time.mktime((d.year, d.month, d.day, self.hour, self.minute, 0, 0, 0, -1))
                if at > now:
                    return at
        raise AssertionError("a day within nine")

    def following(self, due: float, now: float) -> float:
        # Past the hour a clock set back in autumn repeats: one run per day, not two.
        return self.first(max(due, now) + 3601)

    def horizon(self) -> float:
        return 8 * 86400.0


def job_command(name: str, config: str | None = None) -> list[str]:
    """The child that runs one job: `footfall jobs run NAME`, with this process's interpreter."""
    args = ["prepare"] if name == PREPARE else ["run", name]
    return [sys.executable, "-m", "portal", "jobs", *args, *(["--config", config] if config else [])]


class Children:
    """The job children: started one by one, bounded in time, stopped together."""

    def __init__(self, command: Callable[[str], Sequence[str]], grace: float | None = None) -> None:
        self.command, self.grace = command, GRACE_SECONDS if grace is None else grace
        self.running: dict[int, subprocess.Popen] = {}
        self.counts = {"runs": 0, "failed": 0, "stopped_over_limit": 0}
        self._lock = threading.RLock()  # stop() runs in a signal handler, maybe amid run()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self, name: str, limit: float) -> int | None:
        """Run job NAME in a child and wait for it; its exit status, None when stopping or stopped."""
        with self._lock:
            if self._stopping:
                return None
            # Its own session: a stop reaches what the job itself started (`ip neigh`), and a
            # Ctrl+C at a terminal reaches this process only, which stops the child in order.
            child = subprocess.Popen(self.command(name), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, errors="replace", start_new_session=True)
            self.running[child.pid] = child
            self.counts["runs"] += 1
        try:
            try:
                out, _ = child.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                with self._lock:
                    self.counts["stopped_over_limit"] += 1
                logger.error("job %s still running after %d s: stopped", name, limit)
                self._end(child)
                child.communicate()
                return None
            if child.returncode == 0:
                logger.info("job %s: %s", name, out.strip())
            elif self._stopping:
                logger.info("job %s stopped (the scheduler is stopping)", name)
            else:
                with self._lock:
                    self.counts["failed"] += 1
                # The child wrote its traceback to standard error (this unit's journal).
                logger.error("job %s failed (exit status %d)", name, child.returncode)
            return child.returncode
        finally:
            with self._lock:
                self.running.pop(child.pid, None)

    def figures(self) -> dict:
        """Runs, failures, runs stopped over their limit, the largest child's peak RSS and the CPU
        time the children took (a Python start each: the price of giving their memory back)."""
        import resource

        with self._lock:
            counts = dict(self.counts)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {**counts, "child_peak_rss_kb": usage.ru_maxrss,
                "children_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2)}

    def _end(self, child: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, None)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                return
            try:
                child.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        """No new child from now on; SIGTERM to the running ones (returns at once: a signal handler)."""
        with self._lock:
            self._stopping = True
            children = list(self.running.values())
        for child in children:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self) -> None:
        """After stop(): the children gone within the grace, the slow ones killed."""
        deadline = time.monotonic() + self.grace
        with self._lock:
            children = list(self.running.values())
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._end(child)


class Timetable:
    """Which jobs are due, run by one worker thread in children, one at a time."""

    def __init__(self, jobs: dict, timers: dict, children: Children, now: float) -> None:
        self.jobs, self.timers, self.children = jobs, timers, children
        self.due = {name: timer.first(now) for name, timer in timers.items()}
        self.waiting: deque[str] = deque()
        self.pending: set[str] = set()  # waiting or running: a job never overlaps itself
        self._ready = threading.Condition()

    def tick(self, now: float) -> None:
        """Queue what came due; a due time the clock went back past is planned again from now."""
        for name, timer in self.timers.items():
            due = self.due[name]
            if due - now > timer.horizon():
                self.due[name] = timer.first(now)
                continue
            if due > now:
                continue
            self.due[name] = timer.following(due, now)
            if now - due > MISFIRE_GRACE_SECONDS:
                logger.warning("job %s skipped: %d s late (the machine slept or its clock moved)", name, now - due)
            elif name in self.pending:
                logger.warning("job %s skipped: its last run is still running or waiting", name)
            else:
                with self._ready:
                    self.pending.add(name)
                    self.waiting.append(name)
                    self._ready.notify()

    def work(self, stop: threading.Event) -> None:
        """The worker: each waiting job in a child, in the order they came due."""
        while not stop.is_set():
            with self._ready:
                if not self.waiting:
                    self._ready.wait(1.0)
                    continue
                name = self.waiting.popleft()
            try:
                self.children.run(name, self.jobs[name].limit_seconds)
            except Exception:  # a child that cannot even start (no memory, no such file): logged, next time again
                logger.exception("job %s could not run", name)
            finally:
                with self._ready:
                    self.pending.discard(name)


def run(settings, config: str | None = None, jobs: dict | None = None,
        command: Callable[[str], Sequence[str]] | None = None, on_ready: Callable[[], None] | None = None) -> int:
    """Run the scheduler until SIGTERM or SIGINT; the process's exit status."""
    from portal.health import Heartbeat

    if jobs is None:
        from portal.jobs import JOBS as jobs
    children = Children(command or (lambda name: job_command(name, config)))
    stop_event = threading.Event()
    # Alive while the loop below still turns: it ticks at least every second.
    ticked = [time.monotonic()]
    heartbeat = Heartbeat("scheduler", settings.data_dir,
                          alive=lambda: time.monotonic() - ticked[0] < 3 * heartbeat.interval,
                          counters=lambda: {"jobs": children.figures()}, database=False)

    def stop(*_):
        children.stop()
        stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    # The database checked (a damaged one restored) and the erasure ledger redone, before any job.
    status = children.run(PREPARE, PREPARE_LIMIT_SECONDS)
    if status is None or stop_event.is_set():
        return 0 if children.stopping else 1
    if status != 0:
        logger.error("the scheduler's preparation failed (`footfall jobs prepare`): no job started")
        return 1
    timers = {}
    for name, job in jobs.items():
        idle = job.idle_because(settings)
        if idle:  # a child every few seconds to learn that it has nothing to do: not started at all
            logger.info("job %s not scheduled: %s", name, idle)
        else:
            timers[name] = job.trigger(settings)
    table = Timetable(jobs, timers, children, time.time())
    worker = threading.Thread(target=table.work, args=(stop_event,), name="scheduler-children", daemon=True)
    worker.start()
    logger.info("scheduler started: %s", ", ".join(jobs))
    heartbeat.ready()
    if on_ready:
        on_ready()
    while not stop_event.wait(1.0 - time.time() % 1.0):
        ticked[0] = time.monotonic()
        table.tick(time.time())
    heartbeat.stop()
    children.wait()
    worker.join(timeout=children.grace)
    return 0

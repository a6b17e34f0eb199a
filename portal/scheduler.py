"""`footfall scheduler`: the job table's timers in one slim process, each run in a child process.

Why children (issue 18, tests/perf/bench_appliance.py): a scheduler that ran its jobs itself held
everything they import (peewee, the models, cryptography, the sync client) for good, about 46 MB
of the Pi's 512; this process holds APScheduler and the job table (about 27 MB) and a job's
memory is given back when its child exits. The price is a Python start per run (about 0.25 s of
CPU on the benchmark machine) and a peak while a child runs, stated beside the idle figure.

The rules of the in-process scheduler are kept: a job never overlaps itself (max_instances=1:
its APScheduler job lasts as long as its child), missed runs coalesce into one, and a run more
than an hour late is skipped. Children run one at a time (a single-worker executor), so the peak
is this process plus one child, never the whole table at once. A child still running after its
job's `limit_seconds` is stopped (SIGTERM, then SIGKILL); a child that fails is logged and the
next run tries again. SIGTERM here starts no new child and stops the running ones within
`GRACE_SECONDS`: every job is idempotent and transactional, so a stopped run loses only time.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

GRACE_SECONDS = 10.0  # between a child's SIGTERM and its SIGKILL (systemd's TimeoutStopSec is 30)
PREPARE = "prepare"  # the first child: `footfall jobs prepare` (portal/jobs.py: prepare)
PREPARE_LIMIT_SECONDS = 280  # the unit's TimeoutStartSec is 300


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
                                     text=True, start_new_session=True)
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
        """Runs, failures, runs stopped over their limit, and the largest child's peak RSS."""
        import resource

        with self._lock:
            counts = dict(self.counts)
        return {**counts, "child_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}

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


def run(settings, config: str | None = None, jobs: dict | None = None,
        command: Callable[[str], Sequence[str]] | None = None, on_ready: Callable[[], None] | None = None) -> int:
    """Run the scheduler until SIGTERM or SIGINT; the process's exit status."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from portal.health import Heartbeat

    if jobs is None:
        from portal.jobs import JOBS as jobs
    children = Children(command or (lambda name: job_command(name, config)))
    # Two executors: the children one at a time; the liveness tick never waits behind a child.
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1), "children": ThreadPoolExecutor(1)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    for job in jobs.values():
        scheduler.add_job(children.run, job.trigger(settings), args=(job.name, job.limit_seconds), id=job.name,
                          name=job.help, executor="children")
    # Alive while APScheduler's own loop still runs jobs: a tick job every heartbeat.
    ticked = [time.monotonic()]
    heartbeat = Heartbeat("scheduler", settings.data_dir, alive=lambda: time.monotonic() - ticked[0] < 3 * heartbeat.interval,
                          counters=lambda: {"jobs": children.figures()}, database=False)
    scheduler.add_job(lambda: ticked.__setitem__(0, time.monotonic()), IntervalTrigger(seconds=heartbeat.interval),
                      id="heartbeat", name="Liveness tick")

    def stop(*_):
        children.stop()
        if scheduler.running:
            heartbeat.stop()
            scheduler.shutdown(wait=False)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    # The database checked (a damaged one restored) and the erasure ledger redone, before any job.
    status = children.run(PREPARE, PREPARE_LIMIT_SECONDS)
    if status is None:
        return 0 if children.stopping else 1
    if status != 0:
        logger.error("the scheduler's preparation failed (`footfall jobs prepare`): no job started")
        return 1
    logger.info("scheduler started: %s", ", ".join(jobs))
    heartbeat.ready()
    if on_ready:
        on_ready()
    if children.stopping:  # a SIGTERM before the loop started
        heartbeat.stop()
        return 0
    scheduler.start()
    children.wait()
    return 0

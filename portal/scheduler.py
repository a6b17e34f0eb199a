"""`footfall scheduler`: the job table's timers in one slim process, each run in a child process.

Why children (issue 18, tests/perf/bench_appliance.py): a scheduler that ran its jobs itself held
everything they import (peewee, the models, cryptography, the sync client) for good, about 46 MB
of the Pi's 512. This process holds APScheduler, the job table's triggers and a list of children
(about 21 MB); a job's memory is given back when its child exits. APScheduler imports asyncio,
which loads TLS when it can: this process opens no connection (its children do), so TLS is kept
out of it (`no_tls`), about 4 MB. The price of children is a Python start per run (about 0.25 s
of CPU on the benchmark machine) and a peak while a child runs, stated beside the idle figure.

APScheduler's rules are those of the scheduler before: a job never overlaps itself
(max_instances 1: a run that comes due while the last is still running or waiting is skipped),
missed runs coalesce into one, and a run more than an hour late (a machine that slept, a clock
set forward) is skipped. Children run one at a time (an executor of one thread), so the peak is
this process plus one child, never the whole table at once; the liveness tick has an executor of
its own, so a long backup does not look like a hung scheduler. A child still running after its job's `limit_seconds` is stopped (SIGTERM, then
SIGKILL); what a child started and left behind when it exits is stopped with its process group;
its output is read as it comes, its last OUTPUT_CHARS kept for the log; a child that fails is
logged and the next run tries again. SIGTERM here starts no new
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
from typing import Callable, Sequence

logger = logging.getLogger("portal.scheduler")  # also when run as __main__ (the unit)

GRACE_SECONDS = 10.0  # between a child's SIGTERM and its SIGKILL (systemd's TimeoutStopSec is 30)
MISFIRE_GRACE_SECONDS = 3600  # a run later than this is skipped; the next one comes as planned
PREPARE = "prepare"  # the first child: `footfall jobs prepare` (portal/jobs.py: prepare)
PREPARE_LIMIT_SECONDS = 280  # the unit's TimeoutStartSec is 300
OUTPUT_CHARS = 16384  # of a child's standard output, the last ones kept (for the log)


def no_tls() -> None:
    """Keep TLS out of this process (before APScheduler's import): asyncio, which APScheduler
    imports, loads the ssl module when it can and does without it when it cannot. Jobs run in
    children, which load what they need."""
    if "asyncio" not in sys.modules:
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


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
                                     start_new_session=True)
            self.running[child.pid] = child
            self.counts["runs"] += 1
        try:
            # Not communicate(): it keeps every byte a child prints until it exits (a job printing
            # without end grew this slim process by gigabytes). The last OUTPUT_CHARS are kept.
            reader = _Tail(child.stdout)
            try:
                child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                with self._lock:
                    self.counts["stopped_over_limit"] += 1
                logger.error("job %s still running after %d s: stopped", name, limit)
                self._end(child)
                reader.finish(self.grace)
                return None
            # What the job started and left behind (its group) goes with it: it would hold the
            # output open, and outlive the run that the log says is over.
            self._end(child, group_only=True)
            out = reader.finish(self.grace)
            if reader.is_alive():  # a leftover that ignores SIGTERM and still holds the output
                self._kill_group(child)
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

    def _end(self, child: subprocess.Popen, group_only: bool = False) -> None:
        """SIGTERM to the child's group, SIGKILL after the grace. `group_only`: the child has exited
        (and was reaped); what is left of its group is signalled, waited for only through `_Tail`."""
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, None)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                return
            if group_only:
                return
            try:
                child.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    @staticmethod
    def _kill_group(child: subprocess.Popen) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

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


class _Tail(threading.Thread):
    """Reads a child's standard output as it comes, keeping only its last OUTPUT_CHARS."""

    def __init__(self, stream) -> None:
        import codecs

        super().__init__(name="child-output", daemon=True)
        self.stream, self.kept, self.dropped = stream, "", 0
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self.start()

    def run(self) -> None:
        fd = self.stream.fileno()
        try:
            for chunk in iter(lambda: os.read(fd, 65536), b""):  # what is there, not a full 64 kB
                self.kept += self._decode(chunk)
                if len(self.kept) > 2 * OUTPUT_CHARS:
                    self.dropped += len(self.kept) - OUTPUT_CHARS
                    self.kept = self.kept[-OUTPUT_CHARS:]
        except (OSError, ValueError):  # closed under it: what was read is kept
            pass

    def finish(self, timeout: float) -> str:
        """What was kept, once the output ends (a grandchild holding it open: after `timeout`)."""
        self.join(timeout)
        kept = self.kept[-OUTPUT_CHARS:]
        dropped = self.dropped + len(self.kept) - len(kept)
        if not self.is_alive():
            self.stream.close()
        return f"[{dropped} characters before] {kept}" if dropped else kept


def _next_runs(planned: list) -> dict[str, str]:
    """Each scheduled job's next run (ISO 8601, with its offset): the panel shows the next purge
    from here (portal/health.py: next_run), without APScheduler of its own."""
    return {job.id: job.next_run_time.isoformat() for timetable in planned for job in timetable.get_jobs()
            if job.id != "heartbeat" and job.next_run_time is not None}


def _run_child(children: Children, name: str, limit: float) -> None:
    try:
        children.run(name, limit)
    except Exception:  # a child that cannot even start (no memory, no such file): logged, next time again
        logger.exception("job %s could not run", name)


def run(settings, config: str | None = None, jobs: dict | None = None,
        command: Callable[[str], Sequence[str]] | None = None, on_ready: Callable[[], None] | None = None) -> int:
    """Run the scheduler until SIGTERM or SIGINT; the process's exit status."""
    from portal.health import Heartbeat

    if jobs is None:
        from portal.jobs import JOBS as jobs
    children = Children(command or (lambda name: job_command(name, config)))
    stop_event = threading.Event()
    # Alive while APScheduler's own loop still starts jobs: the liveness tick below.
    ticked = [time.monotonic()]
    planned: list = []  # APScheduler's scheduler, once started: its next run times go in the status
    heartbeat = Heartbeat("scheduler", settings.data_dir,
                          alive=lambda: time.monotonic() - ticked[0] < 3 * heartbeat.interval,
                          counters=lambda: {"jobs": children.figures(), "next_runs": _next_runs(planned)}, database=False)

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
    no_tls()
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    timetable = BackgroundScheduler(
        executors={"children": ThreadPoolExecutor(1), "default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS})
    for name, job in jobs.items():
        idle = job.idle_because(settings)
        if idle:  # a child every few seconds to learn that it has nothing to do: not started at all
            logger.info("job %s not scheduled: %s", name, idle)
        else:
            timetable.add_job(_run_child, job.trigger(settings), args=(children, name, job.limit_seconds), id=name,
                              name=job.help, executor="children")
    # Alive while APScheduler's own loop still starts jobs: a tick every heartbeat, on an executor
    # of its own (a child running for an hour is not a hung scheduler).
    timetable.add_job(lambda: ticked.__setitem__(0, time.monotonic()), IntervalTrigger(seconds=heartbeat.interval),
                      id="heartbeat", name="Liveness tick")
    # APScheduler says "Running job ..." at INFO for every run, the tick's too: its warnings (a
    # run skipped, missed) stay; this module logs each child's result.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    ticked[0] = time.monotonic()
    timetable.start()
    planned.append(timetable)
    logger.info("scheduler started: %s", ", ".join(jobs))
    heartbeat.ready()
    if on_ready:
        on_ready()
    while not stop_event.wait(1.0):
        pass
    timetable.shutdown(wait=False)
    heartbeat.stop()
    children.wait()
    return 0


def serve(settings, config: str | None = None) -> int:
    """`footfall scheduler` and `python -m portal.scheduler` (what the systemd unit runs): logging as
    every command sets it, "scheduler running" once ready, then run()."""
    from portal.jobs import JOBS

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready():
        print(f"scheduler running: {', '.join(JOBS)}", flush=True)

    # The children read the same settings: the same --config (or $FOOTFALL_CONFIG, inherited).
    return run(settings, config=config, on_ready=ready)


def main(argv: Sequence[str] | None = None) -> int:
    """The scheduler without the command line's library (click, and every command's module: about
    4 MB of the Pi's memory for as long as the scheduler runs): the systemd unit starts this."""
    import argparse
    import os

    from portal.process import appliance_process

    appliance_process()
    from portal.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m portal.scheduler",
                                     description="Run the scheduled jobs (as `footfall scheduler`).")
    parser.add_argument("--config", help="TOML settings file (default: $FOOTFALL_CONFIG).")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return serve(settings, os.path.abspath(args.config) if args.config else None)


if __name__ == "__main__":
    sys.exit(main())

"""Health of a box nobody watches: each long-running process's heartbeat (systemd's watchdog and a
small status file), and one report for `footfall health` and the owner's panel page.

Each process writes `<data_dir>/health/<process>.json` every heartbeat: its counters (write
transactions, lock waits, busy answers, errors) and whether its own liveness check passed. Under
systemd (NOTIFY_SOCKET, WATCHDOG_USEC) it also says READY=1 once serving and WATCHDOG=1 at each
passing check, so a hung process (its check failing) is killed and restarted by systemd.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from portal import clock

logger = logging.getLogger(__name__)

STALE_SECONDS = 120


def sd_notify(message: str) -> bool:
    """Send one sd_notify(3) datagram to systemd; False when not run under a notify socket."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = "\0" + target[1:] if target.startswith("@") else target
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        logger.warning("sd_notify %s failed: %s", message, exc)
        return False


def watchdog_interval(default: float = 15.0) -> float:
    """Half of systemd's WatchdogSec when it is set (WATCHDOG_USEC), else `default`."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    return max(0.2, int(usec) / 2e6) if usec.isascii() and usec.isdigit() else default


class Heartbeat(threading.Thread):
    """Every interval: run the process's liveness check; if it passes, ping the watchdog; always
    write the status file. stop() writes a last one and tells systemd the process is stopping."""

    def __init__(self, process: str, data_dir: str | os.PathLike, alive: Callable[[], bool],
                 counters: Callable[[], dict] | None = None, interval: float | None = None,
                 database: bool = True) -> None:
        super().__init__(name=f"{process}-heartbeat", daemon=True)
        self.process, self.alive, self.counters = process, alive, counters or (lambda: {})
        self.interval = interval or watchdog_interval()
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "health" / f"{process}.json"
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self.failed_checks = 0
        # The process's own database counters; False for the scheduler, whose jobs run in children
        # (portal/scheduler.py) and which keeps peewee out of its memory.
        self.database = database
        self._stop = threading.Event()

    def ready(self) -> None:
        """Serving now: tell systemd, and check from the next interval on (the portal's server
        loop starts right after this call; a check now would wait for it)."""
        sd_notify("READY=1")
        self.write(True)
        self.start()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        try:
            ok = bool(self.alive())
        except Exception:
            logger.exception("liveness check of %s failed", self.process)
            ok = False
        if ok:
            sd_notify("WATCHDOG=1")
            clock.note_good(self.data_dir)
        else:
            self.failed_checks += 1
            logger.error("%s failed its liveness check: systemd's watchdog will restart it if this lasts", self.process)
        self.write(ok)
        give_back_free_memory()
        return ok

    def write(self, alive: bool, stopped: bool = False) -> None:
        status = {"process": self.process, "pid": os.getpid(), "started": self.started, "stopped": stopped,
                  "updated": datetime.datetime.now().isoformat(timespec="seconds"), "alive": alive,
                  "failed_checks": self.failed_checks, **self._database(), **self.counters()}
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(status, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:  # a full card must not stop the heartbeat itself
            logger.warning("cannot write %s: %s", self.path, exc.strerror)

    def _database(self) -> dict:
        if not self.database:
            return {}
        from portal.db import database
        return {"database": database.stats.snapshot()}

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        self._stop.set()
        self.write(False, stopped=True)


_MALLOC_TRIM: list = []  # glibc's malloc_trim, looked up once; empty where there is none


def give_back_free_memory() -> None:
    """Return the pages malloc holds free to the system (glibc's malloc_trim), once a heartbeat.

    glibc keeps what a process freed for its next allocations; after a burst (the portal's
    sign-ins and panel pages, a collector's busy hour) that is megabytes of RSS nobody uses:
    about 5 MB of the portal's after load (tests/perf/bench_appliance.py), on a box with 512 MB
    for everything. Elsewhere than glibc: nothing."""
    if not _MALLOC_TRIM:
        import ctypes
        try:
            _MALLOC_TRIM.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _MALLOC_TRIM.append(None)
    if _MALLOC_TRIM[0] is not None:
        _MALLOC_TRIM[0](0)


def http_alive(host: str, port: int, host_header: str, timeout: float = 5.0) -> bool:
    """The portal answers its own RFC 8908 API through its web server's worker threads: a server
    whose threads are all stuck (a wedged database, a hung gateway call) fails this."""
    import http.client

    target = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    conn = http.client.HTTPConnection(target, port, timeout=timeout)
    try:
        conn.request("GET", "/api/captive", headers={"Host": host_header, "User-Agent": "footfall-watchdog"})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def next_run(data_dir: str | os.PathLike, job: str, now: float | None = None) -> datetime.datetime | None:
    """When the running scheduler will run `job` next, from its status (None when no live
    scheduler says so: not running, stale, or the job is not scheduled)."""
    status = read_processes(data_dir, now).get("scheduler")
    if not status or status["stale"] or status.get("stopped") or not status.get("alive"):
        return None
    planned = status.get("next_runs")
    value = planned.get(job) if isinstance(planned, dict) else None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None  # the scheduler writes its offset: a naive time is not its


def read_processes(data_dir: str | os.PathLike, now: float | None = None) -> dict[str, dict]:
    now = now or time.time()
    out = {}
    for path in sorted((Path(data_dir) / "health").glob("*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(status, dict) or not isinstance(status.get("process", path.stem), str):
            continue  # damaged (a power cut, a hand edit): as if it were not there
        status["age_seconds"] = round(now - path.stat().st_mtime)
        status["stale"] = status["age_seconds"] > STALE_SECONDS
        out[status.get("process", path.stem)] = status
    return out

"""The scheduler runs each job in a child process (portal/scheduler.py): real processes throughout.

A driver process runs portal.scheduler.run with a job table of its own whose children are small
Python programs (fail, hang, sleep), so each rule is seen on a real child: a failure is logged and
the scheduler goes on, a job never overlaps itself, a hung child is stopped at its limit, and
SIGTERM stops the children (and what they started). Then the timers' arithmetic (coalescing,
misfires, the clock going back, summer time), and the real `footfall scheduler` with what its own
process holds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portal import scheduler

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import json, logging, sys
from portal import scheduler
from portal.config import load_settings
from portal.jobs import Job, every

logging.basicConfig(level="INFO", stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s", force=True)
spec = json.loads(sys.argv[1])
scheduler.GRACE_SECONDS = spec["grace"]
jobs = {name: Job(name, None, lambda s, seconds=job["every"]: every(seconds), name, job["limit"])
        for name, job in spec["jobs"].items()}
argv = {name: [sys.executable, "-c", job["code"]] for name, job in spec["jobs"].items()}
argv["prepare"] = [sys.executable, "-c", spec.get("prepare", "print('{}')")]
sys.exit(scheduler.run(load_settings(None), jobs=jobs, command=argv.__getitem__,
                       on_ready=lambda: print("ready", flush=True)))
"""


class Driver:
    def __init__(self, tmp_path: Path, jobs: dict, grace: float = 2.0, prepare: str | None = None) -> None:
        spec = {"jobs": jobs, "grace": grace, **({"prepare": prepare} if prepare else {})}
        (tmp_path / "data").mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FOOTFALL_DATA_DIR": str(tmp_path / "data"),
               "WATCHDOG_USEC": "1000000", "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.log = tmp_path / "scheduler.log"
        self.health = tmp_path / "data" / "health" / "scheduler.json"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec)], env=env, cwd=tmp_path,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def wait_for(self, check, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"not seen: {what}\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text()

    def jobs(self) -> dict:
        try:
            return json.loads(self.health.read_text())["jobs"]
        except (OSError, ValueError, KeyError):
            return {}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._out.close()


@pytest.fixture
def driver(tmp_path):
    started = []

    def start(jobs: dict, **kw) -> Driver:
        started.append(Driver(tmp_path, jobs, **kw))
        return started[-1]
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_a_failing_child_is_logged_and_the_scheduler_goes_on(driver, tmp_path):
    runs = tmp_path / "runs"
    d = driver({"fails": {"every": 1, "limit": 30,
                          "code": f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)"}})
    d.wait_for(lambda: runs.exists() and len(runs.read_text()) >= 3, what="three runs of the failing job")
    assert d.proc.poll() is None, d.text()
    assert d.text().count("ERROR portal.scheduler: job fails failed (exit status 3)") >= 2
    d.wait_for(lambda: d.jobs().get("failed", 0) >= 2, what="failures counted in the status file")
    assert d.stop() == 0


def test_a_job_never_overlaps_itself(driver, tmp_path):
    trace = tmp_path / "trace"
    code = (f"import os, time\nf = open({str(trace)!r}, 'a', buffering=1)\nf.write('start\\n')\n"
            "time.sleep(2.5)\nf.write('end\\n')")
    d = driver({"slow": {"every": 1, "limit": 30, "code": code}})
    d.wait_for(lambda: trace.exists() and trace.read_text().count("end") >= 2, what="two runs of the slow job")
    assert d.stop() == 0
    lines = trace.read_text().split()
    # Due every second, each run takes 2.5 s: never a second start before the first ended.
    assert all(a != b for a, b in zip(lines, lines[1:])), lines
    # APScheduler's max_instances 1 says so when a run comes due while the last still runs.
    assert "skipped: maximum number of running instances reached (1)" in d.text()


def test_a_hung_child_is_stopped_at_its_limit_even_when_it_ignores_sigterm(driver, tmp_path):
    pids = tmp_path / "pids"
    code = (f"import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\ntime.sleep(1000)")
    d = driver({"hangs": {"every": 1, "limit": 1, "code": code}}, grace=1.0)
    d.wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 2, what="a second run after the hung one")
    first = int(pids.read_text().split()[0])
    assert gone(first)
    assert "ERROR portal.scheduler: job hangs still running after 1 s: stopped" in d.text()
    d.wait_for(lambda: d.jobs().get("stopped_over_limit", 0) >= 1, what="the stop counted")
    assert d.stop() == 0


def test_sigterm_stops_the_running_child_and_what_it_started(driver, tmp_path):
    pids = tmp_path / "pids"
    code = (f"import os, subprocess, time\nkid = subprocess.Popen(['sleep', '1000'])\n"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{kid.pid}}')\ntime.sleep(1000)")
    d = driver({"long": {"every": 1, "limit": 3600, "code": code}}, grace=5.0)
    d.wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, what="the long child and its own child")
    child, grandchild = map(int, pids.read_text().split())
    assert d.stop() == 0
    assert gone(child) and gone(grandchild)
    assert "job long failed" not in d.text()
    assert "job long stopped (the scheduler is stopping)" in d.text()


def test_a_failed_preparation_starts_no_job(driver, tmp_path):
    runs = tmp_path / "runs"
    d = driver({"any": {"every": 1, "limit": 30, "code": f"open({str(runs)!r}, 'a').write('x')"}},
               prepare="raise SystemExit(2)")
    assert d.proc.wait(timeout=30) == 1
    d.stop()
    assert "job prepare failed (exit status 2)" in d.text()
    assert "no job started" in d.text()
    assert not runs.exists()


def test_the_job_table_runs_on_apscheduler_triggers_at_local_times_through_summer_time(machine_zone):
    """The triggers are APScheduler's (a fixed choice of the project): daily jobs at the appliance's
    local time whatever the season, interval jobs on their interval."""
    import datetime

    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from portal import jobs
    from portal.config import load_settings

    machine_zone("Europe/Berlin")
    zone = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    settings = load_settings(environ={})
    assert isinstance(jobs.JOBS["backup"].trigger(settings), CronTrigger)
    assert isinstance(jobs.JOBS["segments"].trigger(settings), IntervalTrigger)
    # 02:45 local in winter and in summer (on the night the clocks go back, APScheduler's cron
    # runs it in both 02:45s: every job is idempotent).
    now = datetime.datetime(2026, 10, 26, 1, 0, tzinfo=zone)
    first = jobs.next_run("backup", settings, now)
    assert (first.astimezone(zone).strftime("%d %H:%M"), first.utcoffset()) == ("26 02:45", datetime.timedelta(hours=1))
    summer = jobs.next_run("backup", settings, datetime.datetime(2026, 7, 1, 12, 0, tzinfo=zone))
    assert (summer.astimezone(zone).strftime("%d %H:%M"), summer.utcoffset()) == ("02 02:45", datetime.timedelta(hours=2))
    # Mondays at 08:15 (weekly summary), local time in summer.
    monday = jobs.next_run("weekly_summary", settings, datetime.datetime(2026, 3, 27, 12, 0, tzinfo=zone))
    assert (monday.astimezone(zone).strftime("%a %d %H:%M"), monday.utcoffset()) == ("Mon 30 08:15",
                                                                                      datetime.timedelta(hours=2))
    assert jobs.JOBS["segments"].trigger(settings).interval == datetime.timedelta(minutes=15)


def _run(args, env):
    return subprocess.run([sys.executable, "-m", "portal", *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_real_scheduler_runs_its_jobs_in_children_and_holds_none_of_their_libraries(tmp_path):
    env = {**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path), "FOOTFALL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
           "FOOTFALL_WEBHOOK_INTERVAL_SECONDS": "1", "WATCHDOG_USEC": "1000000"}
    env.pop("NOTIFY_SOCKET", None)
    assert _run(["init-db"], env).returncode == 0
    log = open(tmp_path / "out.log", "w")
    # As its systemd unit starts it: without the command line's library (portal/scheduler.py: main).
    unit = (ROOT / "systemd" / "footfall-scheduler.service").read_text()
    assert "ExecStart=/opt/footfall/venv/bin/python -m portal.scheduler\n" in unit
    proc = subprocess.Popen([sys.executable, "-m", "portal.scheduler"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    status = tmp_path / "health" / "scheduler.json"
    try:
        deadline = time.monotonic() + 60
        jobs = {}
        while time.monotonic() < deadline and jobs.get("runs", 0) < 3:
            time.sleep(0.2)
            try:
                jobs = json.loads(status.read_text())["jobs"]
            except (OSError, ValueError, KeyError):
                pass
        assert jobs.get("runs", 0) >= 3 and jobs["failed"] == 0, (tmp_path / "out.log").read_text()
        assert jobs["child_peak_rss_kb"] > 0
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        # The jobs' libraries stay in the children: no cryptography, no SQLite, no Jinja in here.
        for library in ("cryptography", "_sqlite3", "markupsafe", "_argon2", "libssl"):
            assert library not in maps, library
        # Its plan, in its status: the panel's privacy desk shows the next purge from it.
        from portal import health, jobs as table
        from portal.config import load_settings

        planned = health.next_run(tmp_path, "purge")
        assert planned is not None and planned == table.next_run("purge", load_settings(environ={}), planned
                                                                 - __import__("datetime").timedelta(seconds=1))
        assert health.next_run(tmp_path, "push") is None  # not scheduled: no central_url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()
    text = (tmp_path / "out.log").read_text()
    assert "INFO portal.scheduler: job prepare:" in text
    assert "INFO portal.scheduler: job webhooks: {" in text
    # On its own (no central_url), push would only ever say so: no child for it at all.
    assert "INFO portal.scheduler: job push not scheduled: no central_url: this appliance is on its own" in text


def test_the_units_entry_refuses_a_bad_settings_file_clearly(tmp_path):
    bad = tmp_path / "footfall.toml"
    bad.write_text("retention_days = 'soon'\n")
    done = subprocess.run([sys.executable, "-m", "portal.scheduler", "--config", str(bad)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ") and "retention_days" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "portal.scheduler", "--config", str(tmp_path / "none.toml")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "none.toml" in missing.stderr


def test_push_is_scheduled_once_a_central_store_is_named(tmp_path):
    env = {**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path), "FOOTFALL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
           "FOOTFALL_CENTRAL_URL": "https://central.example.com/", "FOOTFALL_SYNC_INTERVAL_SECONDS": "1"}
    env.pop("NOTIFY_SOCKET", None)
    assert _run(["init-db"], env).returncode == 0
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "portal", "scheduler"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "job push: " not in log.read_text():
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert 'INFO portal.scheduler: job push: {"skipped": "not enrolled' in text, text
    assert "job push not scheduled" not in text


def test_jobs_prepare_and_jobs_run_report_what_they_did(tmp_path):
    env = {**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path), "FOOTFALL_LOG_LEVEL": "WARNING"}
    assert _run(["init-db"], env).returncode == 0
    prepared = _run(["jobs", "prepare"], env)
    assert prepared.returncode == 0, prepared.stderr
    assert json.loads(prepared.stdout) == {"erasures_redone": {"devices": 0, "erased": 0, "withdrawn": 0},
                                           "recovery": None}
    unknown = _run(["jobs", "run", "nosuch"], env)
    assert unknown.returncode == 1 and "unknown job 'nosuch'" in unknown.stderr


@pytest.mark.parametrize(("environment", "applied"), [({}, True), ({"MALLOC_ARENA_MAX": "4"}, False)])
def test_appliance_processes_keep_two_malloc_arenas_unless_the_environment_says(environment, applied):
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    code = "from portal.cli_common import few_malloc_arenas; print(few_malloc_arenas())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, **environment}, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(applied)


TRIM = """
import sys
from portal.health import Heartbeat
def rss(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
blocks = [bytes(4000) for _ in range(10000)]  # 40 MB through malloc (above pymalloc's 512 bytes)
keep = blocks[::50]  # a few kept, spread over the heap: its top cannot simply shrink
del blocks
before = rss()
Heartbeat("test", sys.argv[1], alive=lambda: True, database=False).beat()
print(before, rss())
"""


def test_a_heartbeat_gives_the_free_memory_back(tmp_path):
    """What glibc keeps after a burst goes back to the system (portal/health.py: every heartbeat)."""
    before, after = map(int, subprocess.run([sys.executable, "-c", TRIM, str(tmp_path)], capture_output=True,
                                            text=True, check=True).stdout.split())
    assert before - after >= 20, (before, after)

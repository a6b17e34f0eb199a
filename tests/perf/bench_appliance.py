"""The whole appliance's memory (issue 18): the portal after load, the collector at 50,000 devices
and the scheduler after its jobs, running together on one database, as on a Raspberry Pi Zero 2 W
(512 MB for everything).

The scheduler runs as systemd runs it (its unit's ExecStart=, `python -m portal.scheduler`): its timers in its own process, each
job in a child (`footfall jobs run NAME`, portal/scheduler.py). Webhooks come due every 2 s here
(push is not scheduled: no central store), so it has run children of its own before it is measured
("steady": between children); the other jobs' timers are minutes to a week apart, so each of them
runs once the way the scheduler runs it, as a child, with its peak RSS from the kernel's rusage
and its CPU time ("job_children"). "peak" is the steady total plus the largest child: the
scheduler runs one child at a time. Each process gets its unit's Environment= lines and
WATCHDOG_USEC from its WatchdogSec= (its heartbeat, which also gives malloc's free pages back:
portal/health.py); "steady" is measured once each has had a heartbeat since the load.

Reports per process VmRSS (what each holds, shared libraries counted in each), VmHWM (its peak)
and PSS (shared pages divided among the processes sharing them: what they take together), and
beside them the same run's baseline, three bare Python interpreters. Needs root (the collector
captures on a veth inside network namespaces it creates). Prints JSON; every entry of "goals" must
be true. Run: `make bench-appliance` (not part of `make test`).
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.livecheck import footfall_process  # noqa: E402
from tests.perf.bench_collector import SENDER, Veth, arp_frame, mac_of, start_collector, stop_collector  # noqa: E402
from tests.visitors_load import Tally, Visitor, source_ip, timed_sign_in  # noqa: E402

PASSWORD = "quick brown fox 1234"


def memory(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: round(int(status.split(name + ":")[1].split()[0]) / 1024, 1)  # noqa: E731
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss = round(int(rollup.split("\nPss:")[1].split()[0]) / 1024, 1)
    return {"rss_mb": field("VmRSS"), "peak_rss_mb": field("VmHWM"), "pss_mb": pss}


def load_portal(port: int, sign_ins: int, env: dict) -> dict:
    """Visitors sign in (4 at a time), then a manager reads the dashboard, leads and segments."""
    tally, numbers, lock = Tally(), iter(range(sign_ins)), threading.Lock()

    def worker():
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            timed_sign_in(Visitor(port, source_ip(n)), f"mem{n}@example.com", tally, ("marketing_email",))
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from tests.perf.bench_panel import Session
    session = Session(port)
    session.login("bench", PASSWORD)
    pages = 0
    for _ in range(5):
        for path in ("/panel/", "/panel/leads", "/panel/segments", "/panel/privacy", "/panel/settings"):
            status, _, _ = session.request("GET", path)
            pages += status == 200
    return {"sign_ins": len(tally.acknowledged), "server_errors": tally.server_errors(), "panel_pages_ok": pages}


def seed_devices(data: Path, devices: int) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 60))
    with sqlite3.connect(data / "footfall.db") as db:
        db.executemany("INSERT INTO device (mac, first_seen, last_seen, randomized) VALUES (?, ?, ?, ?)",
                       [(mac_of(i, i % 3 == 0).hex(":"), stamp, stamp, i % 3 == 0) for i in range(devices)])
        db.execute("INSERT INTO open_run (device_id, source, start, last, sightings) "
                   "SELECT id, 'lan', ?, ?, 1 FROM device", (stamp, stamp))


JOBS_RUN_AS_CHILDREN = ("push", "segments", "segments-full", "checkpoint", "signin_visits", "forget", "name_index",
                        "activation", "purge", "backup", "weekly_summary")


# The child's peak from the kernel's rusage, read by a bare interpreter that starts it: a child
# forked from this (large) process would carry this process's peak in its own ru_maxrss.
PEAK_OF = ("import json, os, subprocess, sys\n"
           "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
           "err = p.stderr.read().decode(errors='replace'); _, status, usage = os.wait4(p.pid, 0)\n"
           "print(json.dumps({'exit': os.waitstatus_to_exitcode(status), 'peak_kb': usage.ru_maxrss,\n"
           "                  'cpu': usage.ru_utime + usage.ru_stime, 'stderr': err[-500:]}))")


def child_peak(argv: list[str], env: dict) -> dict:
    """Run one job's child to its end: exit status and its peak RSS."""
    out = json.loads(subprocess.run([sys.executable, "-c", PEAK_OF, *argv], env=env, check=True,
                                    capture_output=True, text=True).stdout)
    return {"exit": out["exit"], "peak_rss_mb": round(out["peak_kb"] / 1024, 1), "cpu_seconds": round(out["cpu"], 2),
            **({"stderr": out["stderr"]} if out["stderr"] else {})}


def scheduler_children(pid: int) -> list[int]:
    """Its children, from every thread's list (the scheduler starts them from a worker thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def unit_environment(process: str) -> dict:
    """What the process's systemd unit gives it: its Environment= lines (FOOTFALL_CONFIG aside) and
    WATCHDOG_USEC from WatchdogSec= (its heartbeat, half of that, also gives free memory back)."""
    env = {}
    for line in (ROOT / "systemd" / f"footfall-{process}.service").read_text().splitlines():
        if line.startswith("Environment="):
            for pair in line.split("=", 1)[1].split():
                key, _, value = pair.partition("=")
                if key != "FOOTFALL_CONFIG":
                    env[key] = value
        elif line.startswith("WatchdogSec="):
            env["WATCHDOG_USEC"] = str(int(line.split("=", 1)[1].rstrip("s")) * 1_000_000)
    return env


def unit_command(process: str) -> list[str]:
    """The process's systemd unit's ExecStart=, with this virtual environment's bin/ for the
    installed one's (/opt/footfall/venv/bin/)."""
    for line in (ROOT / "systemd" / f"footfall-{process}.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            words = line.split("=", 1)[1].split()
            program = Path(words[0])
            if program.parent == Path("/opt/footfall/venv/bin"):
                program = Path(sys.executable).with_name(program.name)
            return [str(program), *words[1:]]
    raise AssertionError(f"footfall-{process}.service has no ExecStart=")


def wait_for_heartbeats(data: Path, processes: tuple[str, ...], since: float, timeout: float) -> dict:
    """Wait until each process wrote its status file after `since` (a heartbeat since the load):
    the steady state. Returns how long after `since` each one did (None: not within the timeout)."""
    seen: dict = {p: None for p in processes}
    deadline = time.time() + timeout
    while time.time() < deadline and None in seen.values():
        for p in processes:
            path = data / "health" / f"{p}.json"
            if seen[p] is None and path.exists() and path.stat().st_mtime > since:
                seen[p] = round(path.stat().st_mtime - since, 1)
        time.sleep(0.2)
    return seen


def bare_baseline() -> dict:
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)]
    time.sleep(1.0)
    try:
        figures = [memory(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return {"rss_mb": round(sum(f["rss_mb"] for f in figures), 1), "pss_mb": round(sum(f["pss_mb"] for f in figures), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--sign-ins", type=int, default=300)
    parser.add_argument("--budget-mb", type=float, default=150.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"benchmark": "appliance", "error": "needs root (network namespaces for the collector)"}))
        return 1
    result: dict = {"benchmark": "appliance", "baseline_three_bare_pythons": bare_baseline(),
                    "unit_environment": {p: unit_environment(p) for p in ("portal", "collector", "scheduler")}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LOG_LEVEL": "WARNING"}
        subprocess.run([sys.executable, "-m", "portal", "init-db"], env=env, check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "portal", "manager", "add", "bench", "--role", "owner", "--password-stdin"],
                       input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True)
        seed_devices(data, args.devices)
        frames = Path(tmp) / "frames.json"
        frames.write_text(json.dumps([arp_frame(mac_of(i, i % 3 == 0), i).hex() for i in range(args.devices)]))
        portal_env = {"FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
                      "FOOTFALL_PORTAL_URL": "http://portal.test:8080", "FOOTFALL_PANEL_REQUIRE_2FA": "false",
                      "FOOTFALL_RATE_LIMIT_COUNT": "1000000", "FOOTFALL_LOG_LEVEL": "WARNING",
                      **result["unit_environment"]["portal"]}
        footfall = Path(sys.executable).with_name("footfall")  # the console script the unit runs
        command = [str(footfall)] if footfall.exists() else [sys.executable, "-m", "portal"]
        # Webhooks every 2 s; a heartbeat a second (WATCHDOG_USEC without NOTIFY_SOCKET) so the
        # status file with its counts is fresh.
        scheduler_env = {**env, **result["unit_environment"]["scheduler"], "FOOTFALL_WEBHOOK_INTERVAL_SECONDS": "2",
                         "WATCHDOG_USEC": "2000000"}
        with footfall_process(["portal"], portal_env) as (portal, port), Veth() as net:
            result["portal_load"] = load_portal(port, args.sign_ins, env)
            collector = start_collector(net.gw, data, {"FOOTFALL_FLUSH_SECONDS": "2",
                                                      **result["unit_environment"]["collector"]})
            scheduler = subprocess.Popen(unit_command("scheduler"), env=scheduler_env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                assert "scheduler running" in scheduler.stdout.readline()
                threading.Thread(target=scheduler.stdout.read, daemon=True).start()
                subprocess.run(["ip", "netns", "exec", net.tx, sys.executable, "-c", SENDER, str(frames), "5000",
                                str(args.devices / 5000)], check=True, capture_output=True)
                # Every other job once, as the scheduler runs it: a child of its own, to its end.
                result["job_children"] = {job: child_peak([*command, "jobs", "run", job], env)
                                          for job in JOBS_RUN_AS_CHILDREN}
                # The scheduler's own children (push, webhooks) until it has run a few, sampling
                # the three together while one runs; then measured between children.
                status_file = data / "health" / "scheduler.json"
                def runs() -> int:
                    try:
                        return json.loads(status_file.read_text())["jobs"]["runs"]
                    except (OSError, ValueError, KeyError):
                        return 0
                deadline, during, first = time.monotonic() + 60, [], runs()
                while time.monotonic() < deadline and runs() < max(6, first + 3):
                    for child in scheduler_children(scheduler.pid):
                        try:
                            pids = (portal.pid, collector.pid, scheduler.pid, child)
                            during.append(sum(memory(p)["rss_mb"] for p in pids))
                        except (OSError, IndexError):
                            pass  # the child ended meanwhile
                    time.sleep(0.05)
                while scheduler_children(scheduler.pid):
                    time.sleep(0.05)
                # Steady: each process has had a heartbeat since the load ended (as the units run
                # them: every WatchdogSec/2), and the scheduler is between children.
                interval = int(result["unit_environment"]["portal"].get("WATCHDOG_USEC", 30_000_000)) / 2e6
                result["heartbeat_seconds_after_load"] = wait_for_heartbeats(
                    data, ("portal", "collector"), time.time(), 2 * interval + 5)
                while scheduler_children(scheduler.pid):
                    time.sleep(0.05)
                time.sleep(0.5)
                figures = {"portal": memory(portal.pid), "collector": memory(collector.pid),
                           "scheduler": memory(scheduler.pid)}
                scheduler_jobs = json.loads(status_file.read_text())["jobs"]
            finally:
                scheduler.terminate()
                scheduler.wait(timeout=30)
                collector_stats = stop_collector(collector)
    result.update(figures)
    result["scheduler_own_children"] = {**scheduler_jobs, "together_rss_mb_sampled_while_one_ran":
                                        round(max(during), 1) if during else None,
                                        "cpu_seconds_per_child": round(scheduler_jobs["children_cpu_seconds"]
                                                                       / max(1, scheduler_jobs["runs"]), 2)}
    result["collector_sightings"] = collector_stats["sightings"]
    total_rss = round(sum(f["rss_mb"] for f in figures.values()), 1)
    total_pss = round(sum(f["pss_mb"] for f in figures.values()), 1)
    largest_child = max([c["peak_rss_mb"] for c in result["job_children"].values()]
                        + [round(scheduler_jobs["child_peak_rss_kb"] / 1024, 1)])
    result.update({"total_rss_mb": total_rss, "total_pss_mb": total_pss,
                   "total_rss_above_bare_mb": round(total_rss - result["baseline_three_bare_pythons"]["rss_mb"], 1),
                   "peak_rss_mb_with_the_largest_job_child": round(total_rss + largest_child, 1)})
    # The figure is RSS summed over the three, which counts every shared library (the
    # interpreter, two OpenSSLs, SQLite) three times; PSS is what they take together. The goal
    # is on the steady state; the peak while a job's child runs is reported beside it.
    result["goals"] = {f"rss_together<={args.budget_mb:g}MB": total_rss <= args.budget_mb,
                       f"pss_together<={args.budget_mb:g}MB": total_pss <= args.budget_mb,
                       "portal_load_without_errors": result["portal_load"]["server_errors"] == 0
                       and result["portal_load"]["sign_ins"] == args.sign_ins,
                       "collector_saw_every_device": collector_stats["sightings"] >= args.devices,
                       "scheduler_ran_its_own_children_without_failure": scheduler_jobs["runs"] >= 6
                       and scheduler_jobs["failed"] == 0 and scheduler_jobs["stopped_over_limit"] == 0,
                       "every_job_child_succeeded": all(c["exit"] == 0 for c in result["job_children"].values())}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The field day's appliance: `footfall portal` (nftables), `footfall collector` and `footfall
scheduler` in the gateway namespace from ONE TOML file, the central store beside it, and what
the test reads back from both ends. Phones and the manager are scripts run in their namespaces
(fieldday_phone.py, fieldday_manager.py)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.dhcp_lan import GW
from tests.e2e.fieldday_net import OFFICE_GW, OFFICE_NET, FieldNet
from tests.e2e.netns import HERE, ROOT

STORE_ID = "field-01"
SYNC_PORT = 18443           # the relay's port on the gateway's loopback
STOP_BOUND = 20.0           # a process that has not stopped by then fails the test
MANAGER_USER, MANAGER_PASSWORD = "manh", "Quay-thu-ngan-7391-sang"
COMMANDS = {"portal": ("portal",), "collector": ("collector",), "scheduler": ("scheduler",)}
READY = {"portal": "listening on", "collector": "collector listening on guest0", "scheduler": "scheduler running"}


def config_text(workdir: Path, sync_interval: int) -> str:
    values = {
        "data_dir": str(workdir / "data"), "store_name": "Field Day", "privacy_contact": "privacy@fieldday.vn", "gateway": "nftables", "guest_interface": "guest0",
        "uplink_interface": "up0", "listen_host": "0.0.0.0", "listen_port": 8080, "portal_url": f"http://{GW}:8080",
        "portal_hosts": f"{OFFICE_GW}:8080", "panel_networks": OFFICE_NET, "panel_require_2fa": False, "capture_interface": "guest0", "flush_seconds": 1,
        "visit_gap_minutes": 1, "min_dwell_minutes": 1, "arp_probe_seconds": 10, "dhcp_leases_file": str(workdir / "dnsmasq.leases"),
        "central_url": f"http://127.0.0.1:{SYNC_PORT}", "sync_allow_http": True, "sync_interval_seconds": sync_interval,
        "log_level": "INFO", "email_driver": "console", "sms_driver": "console",  # codes in the portal's log
    }
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


class Appliance:
    """The three processes of the gateway, each restartable after a kill -9."""

    def __init__(self, net: FieldNet, config: Path) -> None:
        self.net, self.config = net, config
        self.procs: dict[str, subprocess.Popen] = {}
        self.exits: dict[str, list[int]] = {name: [] for name in COMMANDS}
        self.starts = {name: 0 for name in COMMANDS}

    def cli(self, *args: str, ns: str | None = None, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        done = subprocess.run([*prefix, sys.executable, "-m", "portal", *args, "--config", str(self.config)],
                              input=stdin, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise RuntimeError(f"footfall {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def start(self, name: str) -> None:
        self.starts[name] += 1
        log = f"{name}-{self.starts[name]}.log"
        proc = self.net.spawn(sys.executable, "-m", "portal", *COMMANDS[name], "--config", str(self.config), ns=self.net.gw,
                              log=log, env={"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        self.net.wait_log(log, READY[name], proc, timeout=60)

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_BOUND)

    def stop(self, name: str) -> int:
        """SIGTERM; the exit status (-9 when it had to be killed after STOP_BOUND)."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self.exits[name].append(code)
        return code

    def log(self, name: str) -> str:
        return "".join((self.net.workdir / f"{name}-{i}.log").read_text(errors="replace")
                       for i in range(1, self.starts[name] + 1))


def run_in(ns: str, script: str, *args: str, stdin: str | None = None, timeout: float = 90) -> dict:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(HERE / script), *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return {"crashed": done.returncode, "stderr": done.stderr[-2000:], "statuses": []}
    return json.loads(done.stdout)


def at_once(jobs: list[tuple]) -> list[dict]:
    """Several phones acting at the same moment (a burst): each job is (ns, script, *args)."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: run_in(*job), jobs))


def portal_url() -> str:
    return f"http://{GW}:8080"


def office_url() -> str:
    return f"http://{OFFICE_GW}:8080"


def manager_visit(net: FieldNet, *mode: str) -> dict:
    return run_in(net.office, "fieldday_manager.py", office_url(), MANAGER_USER, *mode, stdin=MANAGER_PASSWORD + "\n",
                  timeout=120)


def subjects_today(data_dir: Path, here_for: float | None = None) -> int:
    """People (or devices without a sign-in) with a visit in the last hours or, when `here_for`
    is given, a run of sightings still open that started at least `here_for` seconds ago (None:
    any open run): bounds for the dashboard's "visitors today"."""
    open_runs_sql = ("SELECT device_id FROM open_run" if here_for is None else
                     "SELECT device_id FROM open_run WHERE julianday('now') - julianday(start) >= ? / 86400.0")
    return read(data_dir, "SELECT count(DISTINCT coalesce('l' || d.lead_id, 'd' || d.id)) FROM device d WHERE d.id IN ("
                          "SELECT device_id FROM visit WHERE passerby = 0 AND start >= datetime('now', '-6 hours') "
                          f"UNION {open_runs_sql})", () if here_for is None else (here_for,))[0][0]


# -- reading both ends --------------------------------------------------------------------------------

def appliance_rows(data_dir: Path) -> dict:
    db = sqlite3.connect(data_dir / "footfall.db", timeout=30)
    try:
        q = lambda sql: db.execute(sql).fetchall()  # noqa: E731
        return {
            "leads": q("SELECT count(*) FROM lead WHERE erased_at IS NULL")[0][0],
            "consents": q("SELECT count(*) FROM consent")[0][0],
            "devices": {mac: bool(r) for mac, r in q("SELECT mac, randomized FROM device")},
            "linked": {mac for (mac,) in q("SELECT mac FROM device WHERE lead_id IS NOT NULL")},
            "outbox": q("SELECT count(*) FROM outbox_event")[0][0],
            "segments": {key: n for key, n in q("SELECT s.key, count(m.lead_id) FROM segment s "
                                                 "LEFT JOIN segment_member m ON m.segment_id = s.id GROUP BY s.key")},
        }
    finally:
        db.close()


def central_rows(dsn: str, schema: str) -> dict:
    import psycopg2

    from tests.pgserver import connect_kwargs
    conn = psycopg2.connect(**connect_kwargs(dsn), options=f"-c search_path={schema}")
    try:
        with conn.cursor() as cur:
            def q(sql):
                cur.execute(sql)
                return cur.fetchall()
            return {
                "persons": q("SELECT count(*) FROM person WHERE erased_at IS NULL")[0][0],
                "consents": q("SELECT count(*) FROM consent_event")[0][0],
                "devices": {mac for (mac,) in q("SELECT mac FROM device")},
                "visits": sorted((mac, int(p)) for mac, p in q("SELECT d.mac, v.passerby FROM visit v JOIN device d ON d.id = v.device_id")),
                # Each event applied once: the stores' counters of applied events (seq high-water mark, issue 18),
                # and the ids claimed the old way (events of a store not yet sending seqs) never twice.
                "applied": (q("SELECT coalesce(sum(events_applied), 0) FROM store")[0][0],
                            q("SELECT count(*) - count(DISTINCT event_uid) FROM applied_event")[0][0]),
                "segments": dict(q("SELECT segment, count(*) FROM segment_member GROUP BY segment")),
            }
    finally:
        conn.close()


def read(data_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """One read of the appliance's database (outside any transaction, as a reader should)."""
    db = sqlite3.connect(data_dir / "footfall.db", timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def named(mac: str) -> str:
    """A device as the test knows it: its MAC, or "anon" for any pseudonym (issue 15: a device
    nobody agreed to visit analytics for is counted under a pseudonym the test cannot compute)."""
    return "anon" if mac.startswith("anon-") else mac


def visits(data_dir: Path) -> list[tuple[str, int]]:
    return sorted((named(mac), p) for mac, p in read(data_dir, "SELECT d.mac, v.passerby FROM visit v JOIN device d ON d.id = v.device_id"))


def open_runs(data_dir: Path) -> list[str]:
    """The devices with a run in progress (sorted; "anon" once per pseudonym)."""
    return sorted(named(mac) for (mac,) in read(data_dir, "SELECT d.mac FROM open_run r JOIN device d ON d.id = r.device_id"))


def file_bytes(data_dir: Path) -> bytes:
    """The database file and its WAL as they are on disk now."""
    db = data_dir / "footfall.db"
    wal = data_dir / "footfall.db-wal"
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def wait_until(check, seconds: float, every: float = 2.0) -> bool:
    """A bounded wait: True as soon as check() holds, False after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)

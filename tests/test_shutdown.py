"""Every long-running `footfall` process stops cleanly on SIGTERM: exit status 0 within a few
seconds, the portal's requests in flight answered and its funnel counts all in the database."""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest


from tests.conftest import require
from tests.livecheck import footfall_process

ROOT = Path(__file__).resolve().parents[1]
HOST = "portal.test"
STOP_BOUND = 15.0   # a hang fails the test instead of blocking it


def _conn(port: int, source: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))


def _get(port: int, source: str, path: str, host: str = HOST) -> tuple[int, dict, str]:
    conn = _conn(port, source)
    try:
        conn.request("GET", path, headers={"Host": host, "Accept-Language": "en", "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def _form(port: int, source: str, email: str) -> tuple[str, bytes]:
    """The splash page's cookie and a filled sign-in body (one splash view)."""
    status, headers, body = _get(port, source, "/")
    assert status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    return cookie, urlencode({"csrf_token": token, "email": email, "terms": "yes"}).encode()


def _post_head(cookie: str, length: int) -> bytes:
    return (f"POST /connect HTTP/1.1\r\nHost: {HOST}\r\nAccept-Language: en\r\nCookie: {cookie}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n").encode()


def _status_of(sock: socket.socket) -> int:
    data = b""
    sock.settimeout(20)
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def _refused(port: int) -> bool:
    """True once the portal no longer listens. A connection caught in the kernel's backlog while the
    listening socket closes is reset, not refused: that is the closing instant, not yet "refused"."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


def _probe(port: int) -> str:
    """One phone's captive probe: 'served' (302), or 'refused'/'reset' when the portal is stopping."""
    try:
        status, _, _ = _get(port, "127.0.0.10", "/hotspot-detect.html", host="captive.apple.com")
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return "reset"
    assert status == 302
    return "served"


def _probe_until_refused(port: int, most: int = 2000) -> list[str]:
    outcomes: list[str] = []
    while len(outcomes) < most and "refused" not in outcomes:
        outcomes.append(_probe(port))
    return outcomes


def test_portal_drains_in_flight_requests_and_flushes_the_funnel_on_sigterm(tmp_path):
    data = tmp_path / "data"
    env = {"FOOTFALL_DATA_DIR": str(data), "FOOTFALL_GATEWAY": "null", "FOOTFALL_LISTEN_HOST": "127.0.0.1",
           "FOOTFALL_LISTEN_PORT": "0", "FOOTFALL_PORTAL_URL": f"http://{HOST}", "FOOTFALL_LOG_LEVEL": "WARNING",
           "FOOTFALL_THREADS": "4", "PYTHONPATH": str(ROOT)}
    with footfall_process(["portal"], env) as (proc, port):
        # Served before the signal: probes and splash pages from several phones (loopback addresses).
        cookie_a, body_a = _form(port, "127.0.0.50", "slow-server@example.com")
        cookie_b, body_b = _form(port, "127.0.0.51", "slow-client@example.com")
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda _: _probe(port), range(30)))
            splashes = list(pool.map(lambda _: _get(port, "127.0.0.11", "/")[0], range(10)))
        assert before == ["served"] * 30 and splashes == [200] * 10

        # An idle keep-alive connection (a splash page served on it): closed by the drain.
        idle = _conn(port, "127.0.0.12")
        idle.request("GET", "/", headers={"Host": HOST, "Accept-Language": "en"})
        with idle.getresponse() as resp:
            assert resp.status == 200 and resp.getheader("Connection", "").lower() != "close"
            resp.read()

        # In flight at the signal, 1: a sign-in inside the app, waiting for the database's write
        # lock (held here, well within busy_timeout).
        holder = sqlite3.connect(data / "footfall.db", isolation_level=None, timeout=10)
        holder.execute("BEGIN IMMEDIATE")
        slow_server = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.50", 0))
        slow_server.sendall(_post_head(cookie_a, len(body_a)) + body_a)
        # 2: a sign-in whose body is still arriving (a slow phone).
        slow_client = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.51", 0))
        slow_client.sendall(_post_head(cookie_b, len(body_b)) + body_b[:10])
        # 3: phones probing without pause across the signal: each probe answered or refused, never cut.
        burst_pool = ThreadPoolExecutor(6)
        burst = [burst_pool.submit(_probe_until_refused, port) for _ in range(6)]
        time.sleep(0.3)  # let the first two reach the server: they are what "in flight" means here

        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not _refused(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(port), "still accepting new connections after SIGTERM"
        assert proc.poll() is None, "exited with requests in flight"

        slow_client.sendall(body_b[10:])
        time.sleep(0.3)  # both sign-ins now wait on the lock (busy_timeout is 5 s)
        holder.execute("COMMIT")
        holder.close()
        assert _status_of(slow_server) == 303      # signed in, sent on to the online page
        assert _status_of(slow_client) == 303
        slow_client.close()
        slow_server.close()
        idle.sock.settimeout(STOP_BOUND)
        assert idle.sock.recv(1) == b""            # closed by the portal, not left to time out
        idle.close()
        per_phone = [f.result(timeout=30) for f in burst]
        outcomes = [o for phone in per_phone for o in phone]
        burst_pool.shutdown()
        assert proc.wait(timeout=STOP_BOUND) == 0

    served_probes = 30 + outcomes.count("served")
    with sqlite3.connect(data / "footfall.db") as db:
        funnel = dict(db.execute("SELECT stage, sum(count) FROM funnel_day GROUP BY stage"))
        leads = db.execute("SELECT count(*) FROM lead").fetchone()[0]
    # Every probe was answered until the portal stopped listening; then refused. A connection that
    # completes in the kernel's backlog in the instant between the last accept and closing the
    # listening socket is reset by the kernel (no user-space server can serve it): allowed only as
    # a phone's last probe before its refusal, never in the middle of its answered ones.
    assert outcomes.count("refused") == 6, {o: outcomes.count(o) for o in set(outcomes)}
    for phone in per_phone:
        assert phone[-1] == "refused" and set(phone[:-2]) <= {"served"} and phone[-2:-1] in (["served"], ["reset"], []), phone
    assert funnel == {"probe": served_probes, "splash": 13, "submit": 2, "online": 2}
    assert leads == 2


def test_collector_exits_0_on_sigterm(tmp_path):
    require(os.geteuid() == 0, "the live collector needs root (CAP_NET_RAW) and a network namespace")
    ns = f"ffsd{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        env = {**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path), "FOOTFALL_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "portal", "collector", "--iface", "lo"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            seen = []
            while len(seen) < 5 and not any("collector listening on lo" in line for line in seen):
                seen.append(proc.stdout.readline())  # a warning or two may come first
            assert "collector listening on lo" in seen[-1], seen
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=STOP_BOUND)
            assert proc.returncode == 0, out
            assert '"writer_errors": 0' in out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_central_exits_0_on_sigterm(central_settings, central_app):  # noqa: F811
    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema, "FOOTFALL_CENTRAL_WORKERS": "2",
           "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    with footfall_process(["central", "serve", "--port", "0"], env, timeout=60) as (proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/openapi.json")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_BOUND) == 0


@pytest.mark.parametrize("unit,bound", [("footfall-portal.service", 15), ("footfall-collector.service", 10),
                                        ("footfall-scheduler.service", 30), ("footfall-central.service", 20)])
def test_units_stop_with_sigterm_and_wait_long_enough(unit, bound):
    from portal.shutdown import DRAIN_SECONDS

    lines = (ROOT / "systemd" / unit).read_text().splitlines()
    assert "KillSignal=SIGTERM" in lines and "KillMode=mixed" in lines
    assert f"TimeoutStopSec={bound}s" in lines
    if unit == "footfall-portal.service":
        assert DRAIN_SECONDS + 5 <= bound  # the drain, then the funnel's flush, before systemd's SIGKILL

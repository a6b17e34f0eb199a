"""Portal figures, printed as JSON (issue 2): probe redirects under load beside a bare Flask app
served the same way in the same run; submit-to-answer latency with the durable commit; memory.

    make bench            # or: .venv/bin/python tests/perf/bench_portal.py [--duration 10]
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.livecheck import footfall_process  # noqa: E402

PROBE_HOST = "connectivitycheck.gstatic.com"
PORTAL_HOST = "portal.test:8080"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(port: int, duration: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"Host: {PROBE_HOST}",
                          f"http://127.0.0.1:{port}/generate_204"], capture_output=True, text=True, check=True,
                         timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": rps, **lat, "bad_status": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024, 1)


def check_redirect(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/generate_204", headers={"Host": PROBE_HOST})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 302, response.status


def submit_latency(port: int, runs: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={"Host": PORTAL_HOST})
    page = conn.getresponse()
    body = page.read().decode()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
    timings = []
    for i in range(runs):
        form = f"csrf_token={token}&email=bench{i}%40example.com&phone=&name=&terms=yes&age=yes&marketing=marketing_email"
        start = time.perf_counter()
        conn.request("POST", "/connect", body=form, headers={
            "Host": PORTAL_HOST, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status == 303, response.status
    conn.close()
    timings.sort()
    return {"runs": runs, "median_ms": round(statistics.median(timings), 2),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2), "max_ms": round(timings[-1], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print(json.dumps({"error": "wrk is not installed (sudo apt-get install wrk)"}))
        return 2

    data = Path(tempfile.mkdtemp(prefix="footfall-bench-"))
    env = {"FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
           "FOOTFALL_PORTAL_URL": f"http://{PORTAL_HOST}", "FOOTFALL_THREADS": str(args.threads),
           "FOOTFALL_RATE_LIMIT_COUNT": "1000000", "FOOTFALL_LOG_LEVEL": "WARNING"}
    result: dict = {"benchmark": "portal", "server": f"waitress, 1 process, {args.threads} threads",
                    "load": f"wrk -t2 -c{args.connections} -d{args.duration}s"}
    bare = subprocess.Popen([sys.executable, str(ROOT / "tests/perf/bare_app.py"), str(args.threads)],
                            stdout=subprocess.PIPE, text=True)
    try:
        bare_port = int(re.search(r":(\d+)$", bare.stdout.readline().strip()).group(1))
        check_redirect(bare_port)
        wrk(bare_port, 2, args.connections)  # warm-up
        result["bare_flask"] = wrk(bare_port, args.duration, args.connections)
        result["bare_flask"]["rss_mb"] = rss_mb(bare.pid)
    finally:
        bare.terminate()
        bare.wait()

    with footfall_process(["portal"], env) as (proc, port):
        check_redirect(port)
        wrk(port, 2, args.connections)  # warm-up
        result["portal_probe"] = wrk(port, args.duration, args.connections)
        result["submit"] = submit_latency(port, args.submits)
        result["portal_rss_mb_after_load"] = rss_mb(proc.pid)
    shutil.rmtree(data, ignore_errors=True)

    ratio = result["portal_probe"]["requests_per_s"] / result["bare_flask"]["requests_per_s"]
    result["ratio_to_bare"] = round(ratio, 3)
    result["goals"] = {
        "ratio_to_bare>=0.80": ratio >= 0.80,
        "probe_p99<=25ms": result["portal_probe"].get("p99_ms", 1e9) <= 25,
        "rss<=80MB": result["portal_rss_mb_after_load"] <= 80,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

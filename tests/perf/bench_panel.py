"""Panel figures, printed as JSON (issue 5), with 100,000 leads, 200,000 devices and 1,000,000
visits in SQLite: dashboard and leads pages p50/p95 through the real server (beside the login
page, a static template, measured the same way in the same run as the baseline), the cold
computation behind the dashboard, and recomputing every segment.

    .venv/bin/python tests/perf/bench_panel.py [--leads 100000 --devices 200000 --visits 1000000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.livecheck import footfall_process  # noqa: E402

SEED = r'''
import json, sys, time
sys.path.insert(0, sys.argv[2])
from portal import create_app, metrics, segments
from portal.config import load_settings
from portal.db import database
from tests.perf.seed import seed
app = create_app(load_settings(environ={}, data_dir=sys.argv[1], log_level="WARNING"))
out = {}
with database.connection_context():
    start = time.perf_counter()
    out["seeded"] = seed(app.extensions["footfall"].vault, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    database.execute_sql("ANALYZE")
    out["seed_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    out["segments"] = segments.recompute()
    out["segments_recompute_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    metrics.dashboard()
    out["dashboard_cold_ms"] = round((time.perf_counter() - start) * 1000)
print(json.dumps(out))
'''


def percentiles(samples: list[float]) -> dict:
    samples = sorted(samples)
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1), "max_ms": round(samples[-1], 1)}


class Session:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str, float]:
        headers = {"Host": "portal.test:8080", "Accept-Language": "en",
                   "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        text = response.read().decode()
        elapsed = (time.perf_counter() - start) * 1000
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")  # ff_session (CSRF) and ff_panel (the panel session)
            self.cookies[name] = rest.split(";", 1)[0]
        return response.status, text, elapsed

    def login(self, username: str, password: str) -> None:
        _, page, _ = self.request("GET", "/panel/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrf_token": token, "username": username, "password": password})
        status, _, _ = self.request("POST", "/panel/login", body)
        assert status == 302, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="footfall-panel-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LOG_LEVEL": "WARNING"}
    seeded = subprocess.run([sys.executable, "-c", SEED, str(data), str(ROOT), str(args.leads), str(args.devices),
                             str(args.visits)], capture_output=True, text=True, env=env, check=True)
    result: dict = {"benchmark": "panel", **json.loads(seeded.stdout)}
    subprocess.run([sys.executable, "-m", "portal", "manager", "add", "bench", "--role", "owner", "--password-stdin"],
                   input="quick brown fox 1234\n", text=True, env=env, check=True, capture_output=True)
    server_env = {"FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
                  "FOOTFALL_PORTAL_URL": "http://portal.test:8080", "FOOTFALL_PANEL_REQUIRE_2FA": "false",
                  "FOOTFALL_RATE_LIMIT_COUNT": "1000000", "FOOTFALL_LOG_LEVEL": "WARNING"}
    rng = random.Random(5)
    with footfall_process(["portal"], server_env) as (proc, port):
        session = Session(port)
        session.login("bench", "quick brown fox 1234")
        baseline, dashboard, leads, search, by_name, by_name_deep = [], [], [], [], [], []
        session.request("GET", "/panel/")  # the first request computes the snapshot
        for _ in range(args.requests):
            baseline.append(Session(port).request("GET", "/panel/login")[2])
            dashboard.append(session.request("GET", "/panel/")[2])
            after = rng.randrange(1, args.leads + 1)
            status, page, elapsed = session.request("GET", f"/panel/leads?after={after}")
            assert status == 200
            leads.append(elapsed)
            n = rng.randrange(args.leads)
            status, page, elapsed = session.request("GET", f"/panel/leads?q=guest{n}%40example.com")
            assert status == 200 and f"guest{n}@example.com" in page
            search.append(elapsed)
            # A name word every eighth person carries, then two words (one of 96), each from a random point.
            status, page, elapsed = session.request("GET", f"/panel/leads?q=nguyen&after={after}")
            assert status == 200
            by_name.append(elapsed)
            status, page, elapsed = session.request("GET", f"/panel/leads?q=Tr%E1%BA%A7n+lan&after={after}")
            assert status == 200
            by_name_deep.append(elapsed)
    result.update({"baseline_login_page": percentiles(baseline), "dashboard": percentiles(dashboard),
                   "leads_page": percentiles(leads), "leads_search": percentiles(search),
                   "leads_name_one_word": percentiles(by_name), "leads_name_two_words": percentiles(by_name_deep)})
    result["goals"] = {"dashboard_p95<=150ms": result["dashboard"]["p95_ms"] <= 150,
                       "leads_p95<=150ms": result["leads_page"]["p95_ms"] <= 150,
                       "leads_name_p95<=150ms": max(result["leads_name_one_word"]["p95_ms"],
                                                    result["leads_name_two_words"]["p95_ms"]) <= 150,
                       "segments<=2s": result["segments_recompute_s"] <= 2}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

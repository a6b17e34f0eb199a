"""Sign-ins under concurrency (issue 9), printed as JSON: visitors on distinct devices (distinct
loopback source addresses) load the splash and submit an email, 1, 4, 16 and 64 at a time, against a
real `footfall portal` (null gateway, real SQLite file, durable commits). The baseline is the
one-at-a-time rate measured in the same run.

    make bench-signin     # or: .venv/bin/python tests/perf/bench_signin.py [--seconds 8]
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.livecheck import footfall_process  # noqa: E402
from tests.visitors_load import Tally, Visitor, percentile, source_ip, timed_sign_in  # noqa: E402

LEVELS = (1, 4, 16, 64)


def run_level(port: int, concurrency: int, seconds: float, numbers: itertools.count) -> dict:
    tally = Tally()
    deadline = time.monotonic() + seconds
    lock = threading.Lock()

    def worker():
        while time.monotonic() < deadline:
            with lock:
                n = next(numbers)
            timed_sign_in(Visitor(port, source_ip(n)), f"bench{n}@example.com", tally, ("marketing_email",))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done = len(tally.latencies)
    return {"concurrency": concurrency, "sign_ins": done, "acknowledged": len(tally.acknowledged),
            "per_s": round(len(tally.acknowledged) / wall, 1),
            "median_ms": round(statistics.median(tally.latencies) * 1000, 1) if done else None,
            "p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 1) if done else None,
            "errors": tally.server_errors() + len([f for f in tally.failures if ": 5" not in f]),
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items())}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="Duration of each level.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FOOTFALL_DATA_DIR": tmp, "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
               "FOOTFALL_PORTAL_URL": "http://portal.test:8080", "FOOTFALL_GATEWAY": "null",
               "FOOTFALL_RATE_LIMIT_COUNT": "1000000", "FOOTFALL_LOG_LEVEL": "ERROR"}
        numbers = itertools.count()
        with footfall_process(["portal"], env) as (_proc, port):
            run_level(port, 2, 1.0, numbers)  # warm up: templates, connections, the first pages
            levels = [run_level(port, c, args.seconds, numbers) for c in LEVELS]
    base = levels[0]
    by = {lvl["concurrency"]: lvl for lvl in levels}
    result = {
        "benchmark": "signin_concurrency",
        "seconds_per_level": args.seconds,
        "baseline_one_at_a_time_per_s": base["per_s"],
        "levels": levels,
        "ratio_16_to_1": round(by[16]["per_s"] / base["per_s"], 2) if base["per_s"] else None,
        "goals": {
            "zero_errors_at_every_level": all(lvl["errors"] == 0 for lvl in levels),
            "every_sign_in_acknowledged": all(lvl["acknowledged"] == lvl["sign_ins"] for lvl in levels),
            "16_concurrent_at_least_one_at_a_time": by[16]["per_s"] >= base["per_s"],
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

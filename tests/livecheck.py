"""Run `footfall` as a real process on a loopback port, for tests and benchmarks."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

_URL = re.compile(r"(?:open|listening on) (?:http://)?([0-9.]+):(\d+)")


def terminate(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain(stream, keep: list[str], limit: int = 200) -> None:
    for line in stream:
        if len(keep) < limit:
            keep.append(line)


@contextmanager
def footfall_process(args: list[str], env: dict[str, str] | None = None, timeout: float = 20.0,
                     prefix: list[str] | None = None):
    """Start `footfall ARGS` (under `prefix`, e.g. ip netns exec NS), wait for the line naming its
    port, yield (proc, port); stop it after."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "portal", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=full_env)
    try:
        deadline = time.monotonic() + timeout
        port = None
        seen = []
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    break
                continue
            seen.append(line)
            match = _URL.search(line)
            if match:
                port = int(match.group(2))
        if port is None:
            raise RuntimeError("footfall did not start:\n" + "".join(seen))
        # Keep reading its output, or a chatty child blocks on a full pipe.
        threading.Thread(target=_drain, args=(proc.stdout, seen), daemon=True).start()
        yield proc, port
    finally:
        terminate(proc)
        try:
            proc.stdout.close()
        except (OSError, ValueError):
            pass

"""The appliance's processes around one SQLite file, as a shop runs them, for soak tests: a real
portal server, collector replays, scheduler jobs, a central store; each can be killed with -9.

Every process is `python -m portal ...` (the console script's code) with the same environment, so
they share the data directory, the keys and the database, and nothing else."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from tests.livecheck import footfall_process, terminate

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_pcap(path: Path, round_no: int, devices: int, start: float) -> int:
    """A capture of `devices` phones, each ARPing every minute for 20 minutes: one visit each."""
    packets = []
    for d in range(devices):
        mac = f"3c:22:fb:{round_no:02x}:{d // 256:02x}:{d % 256:02x}"
        for minute in range(0, 21):
            p = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=mac, psrc=f"10.77.{d // 250}.{d % 250 + 2}",
                                                             pdst="10.77.0.1")
            p.time = start + d * 7 + minute * 60
            packets.append(p)
    packets.sort(key=lambda p: p.time)
    wrpcap(str(path), packets)
    return devices


def run(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


class Portal:
    """`footfall portal` on a fixed port, so that a restart after kill -9 is found where it was."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.port = free_port()
        self._ctx = None
        self.proc = None

    def start(self) -> None:
        self._ctx = footfall_process(["portal"], {**self.env, "FOOTFALL_LISTEN_PORT": str(self.port)}, timeout=60)
        self.proc, _ = self._ctx.__enter__()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._ctx.__exit__(None, None, None)

    def stop(self) -> int:
        terminate(self.proc, grace=10)
        code = self.proc.returncode
        self._ctx.__exit__(None, None, None)
        return code


class Background(threading.Thread):
    """A loop of child processes (collector replays or scheduler jobs) until stopped; one of them
    is killed with -9 part-way through when asked. Records what each child answered."""

    def __init__(self, name: str, commands, env: dict, kill_at: int | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.commands, self.env, self.kill_at = commands, env, kill_at
        self.stop = threading.Event()
        self.results: list[tuple[list[str], int, str]] = []
        self.killed: list[list[str]] = []

    def run(self) -> None:
        for i, args in enumerate(self.commands()):
            if self.stop.is_set():
                return
            proc = subprocess.Popen([sys.executable, "-m", "portal", *args], env={**os.environ, **self.env},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if i == self.kill_at:
                time.sleep(random.uniform(0.4, 1.2))  # somewhere in the middle of its work
                proc.kill()
                self.killed.append(args)
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            self.results.append((args, proc.returncode, out[-2000:]))

    def failures(self) -> list[tuple[list[str], int, str]]:
        return [r for r in self.results if r[1] != 0 and r[0] not in self.killed]

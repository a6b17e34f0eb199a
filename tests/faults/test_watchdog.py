"""systemd's watchdog (issue 10), against a notify socket the test opens: the portal says READY=1,
pings WATCHDOG=1 while its liveness check passes, stops pinging when its server stops answering
(its only worker stuck behind a database lock), and pings again once it answers."""
from __future__ import annotations

import socket
import threading
import time

from tests.faults.locks import hold_lock_in_file
from tests.livecheck import footfall_process
from tests.visitors_load import Visitor


class NotifySocket:
    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pings_between(self, start: float, end: float) -> int:
        return sum(1 for at, m in self.messages if start <= at <= end and "WATCHDOG=1" in m)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


def test_the_portal_pings_the_watchdog_only_while_it_answers(tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"FOOTFALL_DATA_DIR": str(tmp_path / "data"), "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
           "FOOTFALL_PORTAL_URL": "http://portal.test:8080", "FOOTFALL_THREADS": "1", "FOOTFALL_DB_LOCK_WAIT_MS": "8000",
           "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000", "FOOTFALL_LOG_LEVEL": "WARNING"}
    try:
        with footfall_process(["portal"], env) as (_proc, port):
            time.sleep(2.5)
            assert any(m == "READY=1" for _, m in notify.messages)
            healthy_end = time.monotonic()
            assert notify.pings_between(healthy_end - 2.0, healthy_end) >= 2

            # The one worker thread waits for a write lock another process holds for 6 s.
            visitor = Visitor(port, "127.0.0.1")
            token_page = visitor.token()
            holder = hold_lock_in_file(tmp_path / "data" / "footfall.db", 6.0)
            sign_in = threading.Thread(target=lambda: visitor.request(
                "POST", "/connect", [("csrf_token", token_page), ("email", "w@example.com"), ("terms", "yes")]))
            sign_in.start()
            time.sleep(1.0)
            stuck_start = time.monotonic()
            time.sleep(3.5)
            stuck_end = time.monotonic()
            holder.join()
            sign_in.join(15)
            assert notify.pings_between(stuck_start, stuck_end) == 0, "a stuck portal must not feed the watchdog"
            time.sleep(3.0)
            assert notify.pings_between(stuck_end + 0.5, time.monotonic()) >= 1, "pings resume once it answers"
    finally:
        notify.close()
    assert any(m == "STOPPING=1" for _, m in notify.messages)

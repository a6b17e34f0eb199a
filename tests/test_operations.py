"""docs/operations.md, done for real: a backup taken by the scheduler's job while the portal serves,
restored the way the document says, serves the data it holds (and not what came after it)."""
from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from tests.livecheck import footfall_process

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "operations.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, source: str, cookie: str = "") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Accept-Language": "en", **({"Cookie": cookie} if cookie else {})})
        answer = conn.getresponse()
        return answer.status, answer.read().decode(), (answer.getheader("Set-Cookie") or "").split(";")[0]
    finally:
        conn.close()


def _sign_in(port: int, source: str, email: str, name: str) -> None:
    """The visitor's journey over HTTP from `source` (the null gateway derives the MAC from it)."""
    status, page, cookie = _get(port, "/?form=1", source)
    assert status == 200, page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        body = urlencode({"csrf_token": token, "email": email, "phone": "", "name": name, "terms": "yes"})
        conn.request("POST", "/connect", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Accept-Language": "en"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status in (200, 303), answer.status
    finally:
        conn.close()


def _my_data(port: int, source: str) -> str:
    status, page, _ = _get(port, "/my-data", source)
    assert status == 200, page
    return page


def _erase(port: int, source: str) -> None:
    """The visitor erases their record from "My data" (all this device's own: no code needed)."""
    status, page, cookie = _get(port, "/my-data", source)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/my-data/erase", body=urlencode({"csrf_token": token, "confirm": "yes"}), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Accept-Language": "en"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 303, answer.status
    finally:
        conn.close()


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "portal", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_restored_backup_serves(tmp_path):
    data = tmp_path / "data"
    port = _free_port()
    env = {**os.environ, "FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LISTEN_HOST": "127.0.0.1",
           "FOOTFALL_LISTEN_PORT": str(port), "FOOTFALL_PORTAL_URL": f"http://127.0.0.1:{port}",
           "FOOTFALL_LOG_LEVEL": "WARNING"}
    env.pop("FOOTFALL_CONFIG", None)
    with footfall_process(["portal"], env=env):
        _sign_in(port, "127.0.0.1", "alice@example.com", "Alice")
        _sign_in(port, "127.0.0.3", "carol@example.net", "Carol")
        # The scheduler's backup job, while the portal serves (an online copy).
        backup = _run(["jobs", "run", "backup"], env)
        _sign_in(port, "127.0.0.2", "bob@example.org", "Bob")  # after the backup: lost by the restore
        assert "b***@example.org" in _my_data(port, "127.0.0.2")
        assert "c***@example.net" in _my_data(port, "127.0.0.3")
        _erase(port, "127.0.0.3")  # after the backup too: the restore must not bring Carol back
        assert "c***@example.net" not in _my_data(port, "127.0.0.3")
    [copy] = sorted((data / "backups").glob("footfall-*.db"))
    assert copy.name in backup and copy.stat().st_mode & 0o777 == 0o600

    # docs/operations.md, "Restore a backup": services stopped (above), the copy over the database,
    # the old WAL and shared-memory files removed, init-db, start.
    database = data / "footfall.db"
    shutil.copyfile(copy, database)
    for leftover in ("footfall.db-wal", "footfall.db-shm"):
        (data / leftover).unlink(missing_ok=True)
    redone = _run(["init-db"], env)
    assert "up to date" in redone and "1 people erased" in redone  # from the erasure ledger
    with footfall_process(["portal"], env=env):
        assert "a***@example.com" in _my_data(port, "127.0.0.1")
        assert "c***@example.net" not in _my_data(port, "127.0.0.3")
        assert "b***@example.org" not in _my_data(port, "127.0.0.2")
        status, _, _ = _get(port, "/", "127.0.0.1")
        assert status == 303  # Alice's authorization came back with the backup: she is online


def test_the_document_gives_the_steps_this_test_runs():
    text = OPERATIONS.read_text()
    section = text[text.index("### Restore a backup"):]
    for step in ("systemctl stop", "backups/footfall-", "footfall.db-wal", "footfall.db-shm", "init-db",
                 "systemctl start", "keys.json"):
        assert step in section, f"the restore steps no longer say {step!r}"

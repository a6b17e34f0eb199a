"""The `footfall` command, through click's runner and as a real process."""
import http.client
import re
import sqlite3

from click.testing import CliRunner

from portal.cli import main
from portal.config import markdown_table
from tests.livecheck import footfall_process


def test_settings_markdown_is_the_table():
    result = CliRunner().invoke(main, ["settings", "--markdown"])
    assert result.exit_code == 0 and result.output.strip() == markdown_table()


def test_settings_shows_values_in_force():
    result = CliRunner().invoke(main, ["settings"], env={"FOOTFALL_STORE_ID": "hn-07"})
    assert result.exit_code == 0 and "store_id = 'hn-07'" in result.output


def test_bad_setting_is_a_clear_error_not_a_traceback():
    result = CliRunner().invoke(main, ["settings"], env={"FOOTFALL_SESSION_SECONDS": "soon"})
    assert result.exit_code != 0
    assert "session_seconds" in result.output and "Traceback" not in result.output


def test_init_db_creates_then_reports_up_to_date(tmp_path):
    env = {"FOOTFALL_DATA_DIR": str(tmp_path)}
    first = CliRunner().invoke(main, ["init-db"], env=env)
    assert first.exit_code == 0 and "applied 0001_initial" in first.output
    second = CliRunner().invoke(main, ["init-db"], env=env)
    assert second.exit_code == 0 and "up to date" in second.output
    tables = {r[0] for r in sqlite3.connect(tmp_path / "footfall.db").execute("select name from sqlite_master")}
    assert {"lead", "consent", "device", "authorization", "outbox_event"} <= tables


def test_demo_prints_its_url_and_serves_the_journey(tmp_path):
    with footfall_process(["demo", "--port", "0", "--data-dir", str(tmp_path / "demo")]) as (proc, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/", headers={"Accept-Language": "en"})
        page = conn.getresponse()
        body = page.read().decode()
        assert page.status == 200 and "Free WiFi" in body
        assert re.search(r'name="csrf_token"', body)
        conn.request("GET", "/hotspot-detect.html", headers={"Host": "captive.apple.com"})
        probe = conn.getresponse()
        probe.read()
        assert probe.status == 302
        assert probe.getheader("Location").startswith(f"http://127.0.0.1:{port}/?continue=")
        conn.close()
    assert (tmp_path / "demo" / "footfall.db").exists()


def test_scheduler_runs_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    env = {**__import__("os").environ, "FOOTFALL_DATA_DIR": str(tmp_path), "FOOTFALL_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "portal", "init-db"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "portal", "scheduler"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert "scheduler running: push, backup, segments, checkpoint, purge" in proc.stdout.readline()
        time.sleep(1)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.returncode == 0 and time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()

"""The `footfall` command, through click's runner and as a real process."""
import http.client
import re
import sqlite3

import click
import pytest
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
        assert "scheduler running: push, backup, segments, segments-full, checkpoint, forget, name_index, weekly_summary, activation, purge" in proc.stdout.readline()
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


def _commands(group: click.Group = main, path: tuple[str, ...] = ()):
    """Every command and group under `footfall`, as its path of names."""
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _leaf_args(command: click.Command) -> list[str]:
    """Values for a command's required arguments and options (read before any settings)."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = param.type.choices[0] if isinstance(param.type, click.Choice) else "segments"
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    return args


def _invocation(path: tuple[str, ...], command: click.Command, config: str) -> list[str]:
    """`footfall PATH --config FILE ...`; a group's --config is shown to work on a command under it."""
    if not isinstance(command, click.Group):
        return [*path, "--config", config, *_leaf_args(command)]
    if command.invoke_without_command:
        return [*path, "--config", config]
    name, first = sorted(command.commands.items())[0]
    while isinstance(first, click.Group):
        sub, first = sorted(first.commands.items())[0]
        name = f"{name} {sub}"
    return [*path, "--config", config, *name.split(), *_leaf_args(first)]


ALL_COMMANDS = [path for path, _ in _commands()]


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "footfall")
def test_every_command_reads_config(path, tmp_path):
    """A command without --config (or one that ignores it) fails here: the file named is read."""
    command = dict(_commands())[path]
    missing = tmp_path / "missing.toml"
    args = _invocation(path, command, str(missing))
    result = CliRunner().invoke(main, args, env={"FOOTFALL_CONFIG": None})
    assert result.exit_code == 1, (args, result.output)
    assert f"cannot read config file {missing}" in result.output


def test_a_config_file_is_used_by_commands_and_groups(tmp_path):
    config = tmp_path / "store.toml"
    config.write_text(f'store_id = "hn-42"\ndata_dir = "{tmp_path / "data"}"\n')
    for args in (["settings", "--config", str(config)], ["--config", str(config), "settings"]):
        result = CliRunner().invoke(main, args, env={"FOOTFALL_CONFIG": None})
        assert result.exit_code == 0 and "store_id = 'hn-42'" in result.output, args
    # A command's own --config wins over its group's.
    other = tmp_path / "other.toml"
    other.write_text('store_id = "dn-01"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "settings", "--config", str(other)],
                                env={"FOOTFALL_CONFIG": None})
    assert result.exit_code == 0 and "store_id = 'dn-01'" in result.output
    result = CliRunner().invoke(main, ["jobs", "--config", str(config), "run", "segments"], env={"FOOTFALL_CONFIG": None})
    assert result.exit_code == 0 and '"new": 0' in result.output
    assert (tmp_path / "data" / "footfall.db").exists()


def test_the_demo_turns_sign_ins_into_visits_without_a_scheduler(app, settings, client):
    """`footfall demo` runs no scheduler: its own thread runs the sign-in visits and segments jobs, so
    a newcomer's dashboard shows the visits of their own sign-ins (issue 16, figures from day one)."""
    import dataclasses
    import threading
    import time

    from portal.cli_demo import _demo_jobs
    from portal.db import database
    from portal.models import Segment, Visit

    assert client.sign_in(email="first@example.com", analytics=["visit_analytics"]).status_code == 303
    assert Visit.select().count() == 0
    stop = threading.Event()
    quick = dataclasses.replace(settings, visit_gap_minutes=0)
    worker = threading.Thread(target=_demo_jobs, args=(quick, stop, 0.05), daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with database.connection_context():
                if Visit.select().count() and Segment.select().where(Segment.computed_at.is_null(False)).count():
                    break
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=10)
    with database.connection_context():
        visit = Visit.get()
        assert visit.origin == "signin" and visit.end > visit.start
        assert Segment.select().where(Segment.computed_at.is_null(False)).count() == Segment.select().count()
    assert not worker.is_alive()

"""The central tests' PostgreSQL: the throwaway server unless FOOTFALL_TEST_DSN names one."""
from __future__ import annotations

import os
import socket

import psycopg2
import pytest

from tests import pgserver


def _setting(dsn: str, name: str) -> str:
    conn = psycopg2.connect(**pgserver.connect_kwargs(dsn), connect_timeout=5)
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_setting(%s)", (name,))
        return cur.fetchone()[0]
    finally:
        conn.close()


def test_the_central_tests_use_the_sessions_server(pg_dsn, central_settings):
    assert central_settings.central_dsn == pg_dsn
    if os.environ.get(pgserver.ENV_DSN):
        return  # a server named on purpose: nothing more to check about it
    data_dir = _setting(pg_dsn, "data_directory")
    assert os.path.basename(os.path.dirname(data_dir)).startswith("footfall-pg-") and data_dir.endswith("/data")
    assert pgserver.connect_kwargs(pg_dsn)["port"] != 5432  # never the machine's own server
    assert _setting(pg_dsn, "fsync") == "off"
    if os.geteuid() == 0:
        assert os.stat(data_dir).st_uid != 0  # PostgreSQL refuses root: an unprivileged owner runs it


def test_a_throwaway_server_starts_answers_and_is_gone_after():
    server = pgserver.start_throwaway()
    try:
        pgserver.check_reachable(server.dsn)
        assert _setting(server.dsn, "listen_addresses") == "127.0.0.1"
        assert _setting(server.dsn, "unix_socket_directories") == str(server.root)
    finally:
        pgserver.stop_throwaway(server)
    assert not server.root.exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0
    with pytest.raises(pgserver.ServerError, match="does not answer"):
        pgserver.check_reachable(server.dsn)

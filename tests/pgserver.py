"""A throwaway PostgreSQL for tests and benchmarks: initdb + pg_ctl in a temporary directory.

The central store is tested against a real PostgreSQL. On a fresh machine none is set up, so
the test session starts its own: a cluster in a temporary directory, listening on a free
loopback port (and a unix socket in the same directory, never /var/run/postgresql), owned by
an unprivileged user when the tests run as root (PostgreSQL refuses to run as root), with
durability off (fsync, full-page writes: a crash loses nothing a test needs). It is stopped and
its directory removed when the session ends. FOOTFALL_TEST_DSN names a server to use instead.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ENV_DSN = "FOOTFALL_TEST_DSN"
DBNAME = "test"
SUPERUSER = "postgres"
START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """The throwaway server could not be set up; the message says what to install or fix."""


def bin_dir() -> Path | None:
    """Debian keeps initdb and pg_ctl out of PATH, under /usr/lib/postgresql/<version>/bin."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if found:
        return max(found, key=lambda p: p.parent.name.zfill(8))  # the newest major version
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _run_as() -> str | None:
    """The account that owns and runs the cluster when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServerError("running as root, and neither a postgres nor a nobody account exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect_kwargs(dsn: str) -> dict:
    """psycopg2.connect() arguments for a postgresql://user@host:port/db DSN (as central.db reads it)."""
    parts = urlsplit(dsn)
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "user": parts.username or SUPERUSER,
            "password": parts.password, "dbname": parts.path.strip("/")}


@dataclass
class Throwaway:
    """One cluster in `root` (data in root/data, socket and log beside it)."""

    root: Path
    port: int
    owner: str | None
    bindir: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DBNAME}"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *args] if self.owner else list(args)

    def _call(self, *args: str, timeout: float = 120) -> None:
        # cwd: the unprivileged owner may not enter the directory the tests were started from.
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServerError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}")

    def initdb(self) -> None:
        self._call(str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._call(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
                   "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                                     "-t", "60", "stop"), capture_output=True, timeout=90, cwd=self.root)

    def create_database(self) -> None:
        import psycopg2
        conn = psycopg2.connect(**{**connect_kwargs(self.dsn), "dbname": "postgres"}, connect_timeout=10)
        try:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{DBNAME}"')
        finally:
            conn.close()


def lock_waiters(cur, n: int, tries: int = 400) -> bool:
    """True once n sessions of this database wait for a lock (polled every 50 ms, `tries` times):
    how a race test knows the other side is blocked where it means it to be."""
    import threading

    for _ in range(tries):
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        if cur.fetchone()[0] >= n:
            return True
        threading.Event().wait(0.05)
    return False


def hold_chain_row(dsn: str, person: int):
    """A session of its own holding `person`'s chain_stat lock (what a batch's or an erasure's
    refresh takes): returns the connection (close it to let go) and its cursor, for lock_waiters."""
    import psycopg2

    from central import chainstat

    holder = psycopg2.connect(**connect_kwargs(dsn))
    holder.autocommit = True
    cur = holder.cursor()
    cur.execute("SELECT pg_advisory_lock(%s, %s)", (chainstat.LOCK_SPACE, person))
    return holder, cur


def start_throwaway() -> Throwaway:
    """initdb, then start on a free port (another process may take the port between our probe
    and the server's bind: try a few). The caller stops it with `stop_throwaway`."""
    bindir = bin_dir()
    if bindir is None:
        raise ServerError("initdb and pg_ctl not found: install the Debian package postgresql")
    owner = _run_as()
    root = Path(tempfile.mkdtemp(prefix="footfall-pg-"))
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = Throwaway(root, 0, owner, bindir)
    try:
        server.initdb()
        for attempt in range(START_ATTEMPTS):
            server.port = _free_port()
            try:
                server.start()
                break
            except ServerError:
                if attempt == START_ATTEMPTS - 1:
                    raise
        server.create_database()
    except BaseException:
        stop_throwaway(server)
        raise
    return server


def stop_throwaway(server: Throwaway) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def postgres_dsn():
    """The DSN of FOOTFALL_TEST_DSN when set (checked), else of a throwaway server kept while inside."""
    named = os.environ.get(ENV_DSN, "")
    if named:
        check_reachable(named)
        yield named
        return
    server = start_throwaway()
    try:
        yield server.dsn
    finally:
        stop_throwaway(server)


def check_reachable(dsn: str) -> None:
    """Raise ServerError with the driver's message when nothing usable answers at `dsn`."""
    import psycopg2
    try:
        psycopg2.connect(**connect_kwargs(dsn), connect_timeout=5).close()
    except psycopg2.Error as exc:
        raise ServerError(f"{ENV_DSN}={dsn} does not answer: {str(exc).strip()}") from None


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg2
    conn = psycopg2.connect(**connect_kwargs(dsn), connect_timeout=10)
    try:
        conn.autocommit = True
        conn.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        conn.close()

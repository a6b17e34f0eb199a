"""The probe path's in-memory index of who is online."""
import datetime
import sqlite3

from portal.config import database_path
from portal.models import utcnow
from portal.online import OnlineIndex
from portal.visitors import Client, SignInForm


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_own_writes_show_at_once(visitors):
    clock = Clock()
    visitors.online = OnlineIndex(max_age=60, clock=clock)
    assert visitors.online.until("10.0.0.10") is None
    assert visitors.sign_in(SignInForm(email="a@example.com", terms=True), Client("10.0.0.10", "02:00:00:00:00:01")).ok
    assert visitors.online.until("10.0.0.10") is not None  # no reload needed
    assert visitors.erase(Client("10.0.0.10", "02:00:00:00:00:01")).ok
    assert visitors.online.until("10.0.0.10") is None


def test_another_processes_writes_show_within_max_age(visitors, settings):
    clock = Clock()
    index = OnlineIndex(max_age=1.0, clock=clock)
    assert index.until("10.0.0.77") is None
    other = sqlite3.connect(database_path(settings))  # as the scheduler or a second portal would
    with other:
        other.execute("INSERT INTO device (mac, first_seen, last_seen, randomized) VALUES ('02:00:00:00:00:77', '2026-01-01', '2026-01-01', 1)")
        until = (utcnow() + datetime.timedelta(minutes=5)).isoformat(sep=" ")
        other.execute('INSERT INTO "authorization" (device_id, ip, started_at, expires_at, method) '
                      "VALUES (last_insert_rowid(), '10.0.0.77', '2026-01-01', ?, 'test')", (until,))
    assert index.until("10.0.0.77") is None  # still within max_age: the loaded map serves
    clock.now += 1.0
    assert index.until("10.0.0.77") is not None
    with other:
        other.execute('UPDATE "authorization" SET revoked_at = ? WHERE ip = ?', (until, "10.0.0.77"))
    clock.now += 1.0
    assert index.until("10.0.0.77") is None
    other.close()


def test_expiry_is_respected_without_a_reload(app):
    index = OnlineIndex(max_age=3600, clock=Clock())
    index.until("x")  # first load
    index.note("10.0.0.5", utcnow() - datetime.timedelta(seconds=1))
    assert index.until("10.0.0.5") is None
    index.note("10.0.0.6", utcnow() + datetime.timedelta(minutes=1))
    assert index.until("10.0.0.6") is not None
    index.forget("10.0.0.6")
    assert index.until("10.0.0.6") is None

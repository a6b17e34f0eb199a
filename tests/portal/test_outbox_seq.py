"""The outbox's seq (issue 18): it only grows, whoever writes the event, even after a restore."""
import datetime

from portal import clock
from portal.db import database, init_db
from portal.core.times import system_utcnow
from portal.models import OutboxEvent


def seqs():
    return [e.seq for e in OutboxEvent.select(OutboxEvent.seq).order_by(OutboxEvent.id)]


def test_every_writer_numbers_its_events_upwards_from_the_clock(tmp_path):
    init_db(tmp_path / "f.db")
    try:
        with database.connection_context():
            floor = clock.seq_now()
            OutboxEvent.emit("erase.ack", lead="L1")
            OutboxEvent.emit("erase.ack", lead="L2")
            # A writer that names no seq (a raw INSERT): migration 0023's trigger numbers it.
            OutboxEvent.create(topic="visit.closed", payload="{}")
            database.execute_sql("INSERT INTO outbox_event (uid, topic, payload, created_at, attempts) "
                                 "VALUES ('raw1', 'erase.ack', '{}', '2026-11-25 10:00:00', 0)")
            numbers = seqs()
            assert len(numbers) == 4 and None not in numbers
            assert numbers == sorted(set(numbers)) and numbers[0] >= floor
    finally:
        database.close()


def test_after_a_restore_new_events_come_after_what_the_lost_database_gave_out(tmp_path, monkeypatch):
    """A restored database's last seq went back; its new events still pass every seq given out
    before: the clock (floored by the last good time) is part of the number."""
    init_db(tmp_path / "f.db")
    try:
        with database.connection_context():
            OutboxEvent.emit("erase.ack", lead="L1")
            before = seqs()[-1]
            # The clock reads an hour back (NTP not answered yet); the last good time is kept on disk.
            later = system_utcnow() + datetime.timedelta(hours=1)
            monkeypatch.setattr(clock, "_floor", later)
            OutboxEvent.emit("erase.ack", lead="L2")
            after = seqs()[-1]
            assert after > before and after >= (later - datetime.datetime(1970, 1, 1)) // datetime.timedelta(microseconds=1)
            # Bursts faster than the clock's microseconds still grow by one.
            for i in range(50):
                OutboxEvent.emit("erase.ack", lead=f"B{i}")
            numbers = seqs()
            assert numbers == sorted(set(numbers))
    finally:
        database.close()

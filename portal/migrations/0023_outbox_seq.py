"""The outbox's sequence (issue 18): a number per event that only grows, even across a restore.

The central store keeps one high-water mark per store instead of a row per event id: it applies
an event only if its seq is above the mark. Writers set seq in the INSERT itself (one more than
the last, and never below the floored clock in microseconds: portal.clock.seq_now); the trigger
numbers any row written without one. Events written before this migration keep no seq and are
claimed by uid at the central store, as before.
"""
from peewee import *

TRIGGER = ("CREATE TRIGGER IF NOT EXISTS outbox_event_seq AFTER INSERT ON outbox_event WHEN NEW.seq IS NULL BEGIN "
           "UPDATE outbox_event SET seq = max(coalesce((SELECT max(seq) FROM outbox_event), 0) + 1, "
           "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) WHERE id = NEW.id; END")


def up(migrator, db):
    migrator.migrate(migrator.add_column('outbox_event', 'seq', BigIntegerField(null=True)))
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS outbox_event_seq ON outbox_event (seq)")
    db.execute_sql(TRIGGER)


def down(migrator, db):
    db.execute_sql("DROP TRIGGER IF EXISTS outbox_event_seq")
    db.execute_sql("DROP INDEX IF EXISTS outbox_event_seq")
    migrator.migrate(migrator.drop_column('outbox_event', 'seq'))

"""A high-water mark per store (issue 18) instead of a row per event id.

Stores number their events with a sequence that never goes back (the appliance's outbox seq,
portal migration 0023), and send them oldest first, one batch at a time: every event at or below
`seq_applied` was applied, every event above it was not. applied_event stays for the events of
stores not yet upgraded (no seq): those are still claimed by uid.
"""
from peewee import BigIntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column('store', 'seq_applied', BigIntegerField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('store', 'seq_applied'))

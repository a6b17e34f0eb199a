"""Restriction (issue 15): a store's objection or restriction upheld for its lead keeps the person out
of chain segments, exports and the people API until that store lifts it."""
from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(migrator.add_column('store_lead', 'restricted_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('store_lead', 'restricted_at'))

"""Retention (issue 15): when the central's own retention purge erased a person (not a store's word)."""
from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(migrator.add_column('person', 'purged_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('person', 'purged_at'))

"""Consents dated with the last good time because the clock read earlier (see portal.clock)."""
from peewee import SQL, BooleanField


def up(migrator, db):
    migrator.migrate(migrator.add_column('consent', 'clock_suspect', BooleanField(default=False, constraints=[SQL("DEFAULT 0")])))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('consent', 'clock_suspect'))

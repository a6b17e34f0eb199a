"""Remember the last TOTP time step accepted, so that a code cannot be replayed."""
from peewee import IntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column('manager', 'totp_last_step', IntegerField(default=0)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('manager', 'totp_last_step'))

"""Verified identity (issue 11): when each contact a person holds was proved, and which stores proved one."""
from peewee import DateTimeField


def up(migrator, db):
    # Existing people keep their indexes but none counts as verified: nothing was ever proved before.
    migrator.migrate(
        migrator.add_column('person', 'email_verified_at', DateTimeField(null=True)),
        migrator.add_column('person', 'phone_verified_at', DateTimeField(null=True)),
        migrator.add_column('store_lead', 'verified_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column('person', 'email_verified_at'),
        migrator.drop_column('person', 'phone_verified_at'),
        migrator.drop_column('store_lead', 'verified_at'))

"""Accounts of the manager panel."""
from peewee import *


def up(migrator, db):
    class Manager(Model):
        username = CharField(unique=True)
        password_hash = CharField()
        role = CharField()
        totp_secret_enc = BlobField(null=True)
        totp_confirmed = BooleanField(default=False)
        recovery_codes = TextField(default='[]')
        failed_logins = IntegerField(default=0)
        locked_until = DateTimeField(null=True)
        disabled = BooleanField(default=False)
        created_at = DateTimeField()
        last_login_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'manager'
    db.create_tables([Manager])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('manager'))

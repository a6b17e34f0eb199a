"""One-time codes sent to emails and phones (issue 11): hashes only, with what limits count."""
from peewee import *


def up(migrator, db):
    class VerificationCode(Model):
        uid = CharField(unique=True)
        channel = CharField()
        destination_index = CharField(index=True)
        code_hash = CharField()
        created_at = DateTimeField(index=True)
        expires_at = DateTimeField()
        tries = IntegerField(default=0)
        used_at = DateTimeField(null=True)
        device_mac = CharField(null=True, index=True)
        ip = CharField(null=True, index=True)

        class Meta:
            database = db
            table_name = 'verification_code'
    db.create_tables([VerificationCode])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('verification_code'))

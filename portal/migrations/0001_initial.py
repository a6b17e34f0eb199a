"""Initial schema: a frozen copy of the models as first released.

Callable defaults (timestamps, uids) live in the application models; they are Python-side
and do not change the DDL, so this copy leaves them out.
"""
from peewee import *

def up(migrator, db):
    class AuditEntry(Model):
        at = DateTimeField(index=True)
        actor = CharField()
        action = CharField()
        subject = CharField(null=True)
        detail = TextField(default='{}')
        ip = CharField(null=True)
        class Meta:
            database = db
            table_name = 'audit_entry'
    db.create_tables([AuditEntry])

    class Lead(Model):
        uid = CharField(unique=True)
        email_enc = BlobField(null=True)
        email_index = CharField(unique=True, null=True)
        phone_enc = BlobField(null=True)
        phone_index = CharField(unique=True, null=True)
        name_enc = BlobField(null=True)
        language = CharField(default='vi')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        erased_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'lead'
    db.create_tables([Lead])

    class Device(Model):
        mac = CharField(unique=True)
        first_seen = DateTimeField()
        last_seen = DateTimeField(index=True)
        last_ip = CharField(null=True)
        vendor = CharField(null=True)
        randomized = BooleanField(default=False)
        dhcp_fingerprint = CharField(null=True)
        dhcp_vendor = CharField(null=True)
        hostname = CharField(null=True)
        lead = ForeignKeyField(Lead, null=True, on_delete='SET NULL')
        class Meta:
            database = db
            table_name = 'device'
    db.create_tables([Device])

    class Authorization(Model):
        device = ForeignKeyField(Device, on_delete='CASCADE')
        lead = ForeignKeyField(Lead, null=True, on_delete='SET NULL')
        ip = CharField(index=True, null=True)
        started_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        revoked_at = DateTimeField(null=True)
        method = CharField(default='form')
        class Meta:
            database = db
            table_name = 'authorization'
    db.create_tables([Authorization])

    class PolicyVersion(Model):
        document = CharField()
        language = CharField()
        text = TextField()
        sha256 = CharField()
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'policy_version'
            indexes = ((('document', 'language', 'sha256'), True),)
    db.create_tables([PolicyVersion])

    class Consent(Model):
        uid = CharField(unique=True)
        lead = ForeignKeyField(Lead, on_delete='CASCADE')
        purpose = CharField()
        granted = BooleanField()
        policy = ForeignKeyField(PolicyVersion, null=True, on_delete='RESTRICT')
        policy_sha256 = CharField(null=True)
        store_id = CharField()
        device_mac = CharField(null=True)
        ip = CharField(null=True)
        method = CharField()
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'consent'
            indexes = ((('lead', 'purpose', 'created_at'), False),)
    db.create_tables([Consent])

    class OutboxEvent(Model):
        uid = CharField(unique=True)
        topic = CharField()
        payload = TextField()
        created_at = DateTimeField()
        delivered_at = DateTimeField(index=True, null=True)
        attempts = IntegerField(default=0)
        class Meta:
            database = db
            table_name = 'outbox_event'
    db.create_tables([OutboxEvent])

    class Visit(Model):
        device = ForeignKeyField(Device, on_delete='CASCADE')
        start = DateTimeField(index=True)
        end = DateTimeField()
        source = CharField(default='dhcp')
        passerby = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'visit'
    db.create_tables([Visit])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('visit'))
    migrator.migrate(migrator.drop_table('outbox_event'))
    migrator.migrate(migrator.drop_table('consent'))
    migrator.migrate(migrator.drop_table('policy_version'))
    migrator.migrate(migrator.drop_table('authorization'))
    migrator.migrate(migrator.drop_table('device'))
    migrator.migrate(migrator.drop_table('lead'))
    migrator.migrate(migrator.drop_table('audit_entry'))

"""The central store's first schema: a frozen copy of the models (Python-side defaults left out)."""
from peewee import *


def up(migrator, db):
    class ApiToken(Model):
        name = CharField()
        token_hash = CharField(unique=True)
        scopes = TextField()
        created_at = DateTimeField()
        revoked_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'api_token'
    db.create_tables([ApiToken])

    class Store(Model):
        id = CharField(primary_key=True)
        name = CharField()
        key_enc = BlobField()
        created_at = DateTimeField()
        last_seen_at = DateTimeField(null=True)
        events_applied = IntegerField(default=0)
        class Meta:
            database = db
            table_name = 'store'
    db.create_tables([Store])

    class AppliedEvent(Model):
        store = ForeignKeyField(Store, on_delete='CASCADE')
        event_uid = CharField()
        applied_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'applied_event'
            primary_key = CompositeKey('store', 'event_uid')
    db.create_tables([AppliedEvent])

    class Person(Model):
        email_index = CharField(unique=True, null=True)
        phone_index = CharField(unique=True, null=True)
        email_enc = BlobField(null=True)
        phone_enc = BlobField(null=True)
        name_enc = BlobField(null=True)
        language = CharField(default='vi')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        erased_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'person'
    db.create_tables([Person])

    class ConsentEvent(Model):
        id = BigAutoField()
        person = ForeignKeyField(Person, on_delete='CASCADE')
        store = ForeignKeyField(Store, on_delete='CASCADE')
        purpose = CharField()
        granted = BooleanField()
        at = DateTimeField()
        policy_sha256 = CharField(null=True)
        method = CharField(null=True)
        class Meta:
            database = db
            table_name = 'consent_event'
            indexes = ((('person', 'purpose', 'at'), False),)
    db.create_tables([ConsentEvent])

    class Device(Model):
        id = BigAutoField()
        store = ForeignKeyField(Store, on_delete='CASCADE')
        mac = CharField()
        person = ForeignKeyField(Person, null=True, on_delete='SET NULL')
        class Meta:
            database = db
            table_name = 'device'
            indexes = ((('store', 'mac'), True),)
    db.create_tables([Device])

    class EraseCommand(Model):
        id = BigAutoField()
        store = ForeignKeyField(Store, on_delete='CASCADE')
        lead_uid = CharField()
        created_at = DateTimeField()
        acked_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'erase_command'
            indexes = ((('store', 'acked_at'), False),)
    db.create_tables([EraseCommand])

    class SegmentMember(Model):
        store = ForeignKeyField(Store, on_delete='CASCADE')
        segment = CharField()
        person = ForeignKeyField(Person, on_delete='CASCADE')
        class Meta:
            database = db
            table_name = 'segment_member'
            primary_key = CompositeKey('store', 'segment', 'person')
    db.create_tables([SegmentMember])

    class StoreLead(Model):
        store = ForeignKeyField(Store, on_delete='CASCADE')
        lead_uid = CharField()
        person = ForeignKeyField(Person, on_delete='CASCADE')
        class Meta:
            database = db
            table_name = 'store_lead'
            primary_key = CompositeKey('store', 'lead_uid')
    db.create_tables([StoreLead])

    class Visit(Model):
        id = BigAutoField()
        store = ForeignKeyField(Store, on_delete='CASCADE')
        device = ForeignKeyField(Device, on_delete='CASCADE')
        start = DateTimeField()
        end = DateTimeField()
        passerby = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'visit'
            indexes = ((('store', 'start'), False),)
    db.create_tables([Visit])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('visit'))
    migrator.migrate(migrator.drop_table('store_lead'))
    migrator.migrate(migrator.drop_table('segment_member'))
    migrator.migrate(migrator.drop_table('erase_command'))
    migrator.migrate(migrator.drop_table('device'))
    migrator.migrate(migrator.drop_table('consent_event'))
    migrator.migrate(migrator.drop_table('person'))
    migrator.migrate(migrator.drop_table('applied_event'))
    migrator.migrate(migrator.drop_table('store'))
    migrator.migrate(migrator.drop_table('api_token'))

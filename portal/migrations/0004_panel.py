"""The manager panel's records: store settings, segments, the portal funnel, data-subject requests."""
from peewee import *


def up(migrator, db):
    class Lead(Model):
        class Meta:
            database = db
            table_name = 'lead'

    class StoreSetting(Model):
        key = CharField(primary_key=True)
        value = TextField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'store_setting'

    class Segment(Model):
        key = CharField(unique=True)
        name = CharField()
        builtin = BooleanField(default=False)
        rule = TextField()
        members = IntegerField(default=0)
        computed_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'segment'

    class SegmentMember(Model):
        segment = ForeignKeyField(Segment, on_delete='CASCADE')
        lead = ForeignKeyField(Lead, on_delete='CASCADE', index=True)

        class Meta:
            database = db
            table_name = 'segment_member'
            primary_key = CompositeKey('segment', 'lead')

    class FunnelDay(Model):
        day = CharField()
        stage = CharField()
        count = IntegerField(default=0)

        class Meta:
            database = db
            table_name = 'funnel_day'
            primary_key = CompositeKey('day', 'stage')

    class DataRequest(Model):
        kind = CharField()
        lead = ForeignKeyField(Lead, null=True, on_delete='SET NULL')
        requester_enc = BlobField(null=True)
        received_at = DateTimeField()
        due_at = DateTimeField()
        status = CharField(default='open')
        completed_at = DateTimeField(null=True)
        handled_by = CharField(null=True)

        class Meta:
            database = db
            table_name = 'data_request'

    db.create_tables([StoreSetting, Segment, SegmentMember, FunnelDay, DataRequest])


def down(migrator, db):
    for table in ('data_request', 'funnel_day', 'segment_member', 'segment', 'store_setting'):
        migrator.migrate(migrator.drop_table(table))

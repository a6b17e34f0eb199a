"""Webhooks (issue 17): the owner's endpoints, the durable delivery queue and what was announced.

The fan-out starts after the outbox events that exist now (history is not replayed to a new CRM),
and every existing person counts as already announced (created, verified, segment members), so
the first event about an old record is never mistaken for a new person.
"""
import datetime

from peewee import *


def up(migrator, db):
    class WebhookEndpoint(Model):
        uid = CharField(unique=True)
        url = CharField(max_length=2048)
        secret_enc = BlobField()
        events = TextField()
        enabled = BooleanField(default=True)
        created_at = DateTimeField()
        created_by = CharField()

        class Meta:
            database = db
            table_name = 'webhook_endpoint'

    class WebhookDelivery(Model):
        endpoint = ForeignKeyField(WebhookEndpoint, on_delete='CASCADE', index=True)
        msg_id = CharField(unique=True)
        type = CharField()
        subject = TextField()
        happened_at = DateTimeField()
        created_at = DateTimeField()
        state = CharField(default='pending')
        attempts = IntegerField(default=0)
        next_at = DateTimeField()
        last_status = IntegerField(null=True)
        last_error = TextField(null=True)
        delivered_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'webhook_delivery'
            indexes = ((('state', 'next_at'), False),)

    class WebhookSeen(Model):
        key = CharField(unique=True)

        class Meta:
            database = db
            table_name = 'webhook_seen'

    class WebhookSegmentMember(Model):
        segment = CharField()
        lead_uid = CharField()

        class Meta:
            database = db
            table_name = 'webhook_segment_member'
            indexes = ((('segment', 'lead_uid'), True),)

    db.create_tables([WebhookEndpoint, WebhookDelivery, WebhookSeen, WebhookSegmentMember])
    db.execute_sql("INSERT OR IGNORE INTO webhook_seen (key) SELECT 'created:' || uid FROM lead")
    for kind in ('email', 'phone'):
        db.execute_sql(f"INSERT OR IGNORE INTO webhook_seen (key) SELECT 'verified:{kind}:' || uid || ':' || "
                       f"{kind}_verified_at FROM lead WHERE {kind}_verified_at IS NOT NULL")
    db.execute_sql("INSERT OR IGNORE INTO webhook_segment_member (segment, lead_uid) SELECT s.key, l.uid "
                   "FROM segment_member m JOIN segment s ON s.id = m.segment_id JOIN lead l ON l.id = m.lead_id")
    mark = db.execute_sql("SELECT coalesce(max(id), 0) FROM outbox_event").fetchone()[0]
    db.execute_sql("INSERT OR REPLACE INTO store_setting (key, value, updated_at) VALUES (?, ?, ?)",
                   ('webhooks.outbox_mark', str(mark), datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)))


def down(migrator, db):
    for table in ('webhook_delivery', 'webhook_endpoint', 'webhook_seen', 'webhook_segment_member'):
        db.execute_sql(f'DROP TABLE {table}')
    db.execute_sql("DELETE FROM store_setting WHERE key = 'webhooks.outbox_mark'")

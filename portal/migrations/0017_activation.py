"""Activation (issue 17): automations and campaigns, their sends and every attempt, vouchers."""
from peewee import *


def up(migrator, db):
    class Lead(Model):
        class Meta:
            database = db
            table_name = 'lead'

    class Automation(Model):
        uid = CharField(unique=True)
        kind = CharField()
        name = CharField()
        enabled = BooleanField(default=False)
        channels = CharField(default='')
        options = TextField(default='{}')
        texts = TextField(default='{}')
        created_by = CharField()
        created_at = DateTimeField()
        updated_at = DateTimeField()
        launched_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'automation'

    class ActivationSend(Model):
        uid = CharField(unique=True, null=True)
        automation = ForeignKeyField(Automation, on_delete='CASCADE')
        lead = ForeignKeyField(Lead, on_delete='CASCADE', index=True)
        channel = CharField()
        occasion = CharField()
        holdout = BooleanField(default=False)
        state = CharField()
        reason = CharField(null=True)
        due_at = DateTimeField()
        attempts = IntegerField(default=0)
        recipient_masked = CharField(null=True)
        provider_id = CharField(null=True)
        voucher_code = CharField(null=True)
        created_at = DateTimeField()
        sent_at = DateTimeField(null=True)
        unsubscribed_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'activation_send'
            indexes = ((('automation', 'lead', 'channel', 'occasion'), True), (('state', 'due_at'), False))

    class SendAttempt(Model):
        send = ForeignKeyField(ActivationSend, on_delete='CASCADE', index=True)
        at = DateTimeField(index=True)
        outcome = CharField()
        detail = CharField(null=True)
        recipient_masked = CharField(null=True)

        class Meta:
            database = db
            table_name = 'send_attempt'

    class Voucher(Model):
        code = CharField(unique=True)
        automation = ForeignKeyField(Automation, null=True, on_delete='SET NULL')
        lead = ForeignKeyField(Lead, null=True, on_delete='SET NULL', index=True)
        created_at = DateTimeField()
        expires_at = DateTimeField()
        redeemed_at = DateTimeField(null=True)
        redeemed_by = CharField(null=True)
        amount = IntegerField(null=True)

        class Meta:
            database = db
            table_name = 'voucher'

    db.create_tables([Automation, ActivationSend, SendAttempt, Voucher])


def down(migrator, db):
    for table in ('voucher', 'send_attempt', 'activation_send', 'automation'):
        db.execute_sql(f'DROP TABLE {table}')

"""Activation's records: automations (and one-off campaigns), each message planned or sent, every
attempt to send it, and vouchers. Plain peewee, like portal/models.py."""
from __future__ import annotations

import json

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from portal.models import BaseModel, Lead, new_uid, utcnow

KINDS = ("first_visit", "nth_visit", "lapsed", "review", "campaign")
VISIT_KINDS = ("first_visit", "nth_visit", "lapsed", "review")  # follow visits: need visit_analytics too


class Automation(BaseModel):
    """A trigger and its messages. `options` (JSON): the trigger's numbers, voucher days, repeat,
    review link, the campaign's segment and time, Zalo template; `texts` (JSON): channel > language
    > {subject, text} or, for Zalo, {params}."""
    uid = CharField(unique=True, default=new_uid)
    kind = CharField()
    name = CharField()
    enabled = BooleanField(default=False)
    channels = CharField(default="")  # comma-separated: email, sms, zalo
    options = TextField(default="{}")
    texts = TextField(default="{}")
    created_by = CharField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    launched_at = DateTimeField(null=True)  # a campaign's audience was planned

    @property
    def channel_list(self) -> list[str]:
        return [c for c in self.channels.split(",") if c]

    @property
    def opts(self) -> dict:
        return json.loads(self.options)

    @property
    def text_map(self) -> dict:
        return json.loads(self.texts)


class ActivationSend(BaseModel):
    """One message to one person on one channel for one occasion (unique: never twice). States:
    due (waiting for its time), sending, sent (the provider took it), failed, skipped (a guard
    said no at send time: `reason`), held_out (the holdout group: never sent). `uid` is given when
    it is about to be sent (the message's id at the provider, the unsubscribe link's key)."""
    uid = CharField(unique=True, null=True)
    automation = ForeignKeyField(Automation, backref="sends", on_delete="CASCADE")
    lead = ForeignKeyField(Lead, on_delete="CASCADE", index=True)
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
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)
    unsubscribed_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("automation", "lead", "channel", "occasion"), True), (("state", "due_at"), False))


class SendAttempt(BaseModel):
    """The send log: every attempt, with the recipient masked."""
    send = ForeignKeyField(ActivationSend, backref="attempt_log", on_delete="CASCADE", index=True)
    at = DateTimeField(default=utcnow, index=True)
    outcome = CharField()  # sent | retry | failed | skipped
    detail = CharField(null=True)
    recipient_masked = CharField(null=True)


class Voucher(BaseModel):
    """A single-use code, redeemed at the till once; `amount` the receipt (whole đồng), if given."""
    code = CharField(unique=True)
    automation = ForeignKeyField(Automation, null=True, on_delete="SET NULL")
    lead = ForeignKeyField(Lead, null=True, on_delete="SET NULL", index=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    redeemed_at = DateTimeField(null=True)
    redeemed_by = CharField(null=True)
    amount = IntegerField(null=True)


MODELS = (Automation, ActivationSend, SendAttempt, Voucher)

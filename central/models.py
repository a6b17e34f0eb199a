"""The chain's records: people merged across stores by verified blind index, and what each store saw."""
from __future__ import annotations

from peewee import (BigAutoField, BigIntegerField, BlobField, BooleanField, CharField, CompositeKey, DateTimeField, ForeignKeyField,
                    IntegerField, Model, TextField)

from central.db import database
from portal.core.times import system_utcnow as utcnow


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Store(BaseModel):
    id = CharField(primary_key=True)
    name = CharField()
    key_enc = BlobField()                 # the store's signing key, encrypted with the central's key
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(null=True)
    events_applied = IntegerField(default=0)
    seq_applied = BigIntegerField(null=True)  # every event of this store with a seq up to this one was applied


class Person(BaseModel):
    """Only verified contacts are stored (a store's claim is not proof): an index counts with its *_verified_at."""
    email_index = CharField(null=True, unique=True)
    phone_index = CharField(null=True, unique=True)
    email_enc = BlobField(null=True)
    phone_enc = BlobField(null=True)
    name_enc = BlobField(null=True)
    language = CharField(default="vi")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    erased_at = DateTimeField(null=True)
    purged_at = DateTimeField(null=True)  # erased by the central's retention purge, not on a store's word
    email_verified_at = DateTimeField(null=True)  # when a store proved the email now held (a one-time code)
    phone_verified_at = DateTimeField(null=True)


class StoreLead(BaseModel):
    """A store's lead (its uid there) is this person here."""
    store = ForeignKeyField(Store, on_delete="CASCADE")
    lead_uid = CharField()
    person = ForeignKeyField(Person, on_delete="CASCADE", index=True)
    verified_at = DateTimeField(null=True)  # the store proved a contact the person holds: its erasure is chain-wide
    restricted_at = DateTimeField(null=True)  # the store upheld an objection or a restriction (issue 15)

    class Meta:
        primary_key = CompositeKey("store", "lead_uid")


class ConsentEvent(BaseModel):
    """Append-only, as at the store: the latest event per purpose is what the person agrees to."""
    id = BigAutoField()
    person = ForeignKeyField(Person, on_delete="CASCADE")
    store = ForeignKeyField(Store, on_delete="CASCADE")
    purpose = CharField()
    granted = BooleanField()
    at = DateTimeField()
    policy_sha256 = CharField(null=True)
    method = CharField(null=True)

    class Meta:
        indexes = ((("person", "purpose", "at"), False),)


class Device(BaseModel):
    id = BigAutoField()
    store = ForeignKeyField(Store, on_delete="CASCADE")
    mac = CharField()
    person = ForeignKeyField(Person, null=True, on_delete="SET NULL", index=True)

    class Meta:
        indexes = ((("store", "mac"), True),)


class Visit(BaseModel):
    """Partitioned by month of `start` (migration 0008, central/visits.py): the primary key is
    (id, start), and store_id and device_id are plain columns, no foreign keys: whoever deletes
    devices deletes their visits (visits.forget_devices)."""
    id = BigAutoField()
    store_id = CharField()
    device_id = BigIntegerField(index=True)
    start = DateTimeField()
    end = DateTimeField()
    passerby = BooleanField(default=False)

    class Meta:
        indexes = ((("store_id", "start"), False),)


class SegmentMember(BaseModel):
    """A store's own segments, as its appliance computed them."""
    store = ForeignKeyField(Store, on_delete="CASCADE")
    segment = CharField()
    person = ForeignKeyField(Person, on_delete="CASCADE", index=True)

    class Meta:
        primary_key = CompositeKey("store", "segment", "person")


class AppliedEvent(BaseModel):
    """Exactly once for stores not yet upgraded (events without seq): an event id is applied the
    first time it arrives, never again. Events with a seq use Store.seq_applied instead."""
    store = ForeignKeyField(Store, on_delete="CASCADE")
    event_uid = CharField()
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        primary_key = CompositeKey("store", "event_uid")


class EraseCommand(BaseModel):
    """An erasure decided elsewhere that a store must apply and acknowledge."""
    id = BigAutoField()
    store = ForeignKeyField(Store, on_delete="CASCADE")
    lead_uid = CharField()
    created_at = DateTimeField(default=utcnow)
    acked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("store", "acked_at"), False),)


class ApiToken(BaseModel):
    """A read API token: only its SHA-256 is kept."""
    name = CharField()
    token_hash = CharField(unique=True)
    scopes = TextField()
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)


MODELS = (Store, Person, StoreLead, ConsentEvent, Device, Visit, SegmentMember, AppliedEvent, EraseCommand, ApiToken)

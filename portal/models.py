"""The appliance's records. Plain peewee: no Flask here, so every process can use them."""
from __future__ import annotations

import datetime
import json
import uuid

from peewee import (
    BigIntegerField, BlobField, BooleanField, CharField, CompositeKey, DateField, DateTimeField, ForeignKeyField,
    IntegerField, Model, SQL, TextField, fn,
)

from portal import clock
from portal.db import database


def utcnow() -> datetime.datetime:
    """Naive UTC, the one time zone stored in the database; never before the last good time
    (a Raspberry Pi boots in the past until NTP answers: see portal.clock)."""
    return clock.utcnow()[0]


def new_uid() -> str:
    return uuid.uuid4().hex


seq_now = clock.seq_now


# The next seq, in the INSERT itself (one statement: no other writer can take it in between):
# one more than the last, and never below the time. The parameter is seq_now().
NEXT_SEQ_SQL = "max(coalesce((SELECT max(seq) FROM outbox_event), 0) + 1, ?)"


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Lead(BaseModel):
    """A person who signed in. Personal fields are AES-GCM ciphertexts; *_index are blind indexes."""
    uid = CharField(unique=True, default=new_uid)
    email_enc = BlobField(null=True)
    email_index = CharField(null=True, unique=True)
    phone_enc = BlobField(null=True)
    phone_index = CharField(null=True, unique=True)
    name_enc = BlobField(null=True)
    language = CharField(default="vi")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    erased_at = DateTimeField(null=True)
    # Proved control (a one-time code entered): until then a contact is only someone's claim.
    email_verified_at = DateTimeField(null=True)
    phone_verified_at = DateTimeField(null=True)
    phone_verified_via = CharField(null=True)  # sms | zalo
    # A claim folded into the lead its proof named (its devices and consents moved there).
    merged_into = ForeignKeyField("self", null=True, on_delete="SET NULL", backref="merged")
    # Objection or restriction upheld (issue 15): kept, but out of segments, exports and messages.
    restricted_at = DateTimeField(null=True)


class Device(BaseModel):
    # mac: six hex pairs, or for a device without consent to visit analytics the collector's
    # pseudonym of one period ("anon-...", anonymous; collector/pseudonyms.py).
    mac = CharField(unique=True)
    first_seen = DateTimeField(default=utcnow)
    last_seen = DateTimeField(default=utcnow, index=True)
    last_ip = CharField(null=True)
    vendor = CharField(null=True)
    randomized = BooleanField(default=False)
    dhcp_fingerprint = CharField(null=True)
    dhcp_vendor = CharField(null=True)
    hostname = CharField(null=True)
    lead = ForeignKeyField(Lead, null=True, backref="devices", on_delete="SET NULL")
    anonymous = BooleanField(default=False)

    class Meta:
        indexes = ((("anonymous", "last_seen"), False),)  # the anonymous purge


class Visit(BaseModel):
    """A closed run of sightings: source "lan" (on the guest network) or "air" (probe requests)."""
    device = ForeignKeyField(Device, backref="visits", on_delete="CASCADE")
    start = DateTimeField(index=True)
    end = DateTimeField()
    source = CharField(default="lan")
    passerby = BooleanField(default=False)
    # "collector" (a run of sightings) or "signin" (a sign-in and the gateway's last sign of life:
    # portal/signin_visits.py, where no collector saw the device).
    origin = CharField(default="collector", constraints=[SQL("DEFAULT 'collector'")])

    class Meta:
        # Covering indexes: the dashboard reads visits by time, segments by device.
        indexes = ((("start", "passerby", "source", "device", "end"), False),
                   (("device", "passerby", "source", "start", "end"), False))


# Incremental segments find the people whom time moves by the end of their visits (migration 0021).
Visit.add_index(Visit.index(Visit.end, Visit.device, name="visit_end_followed",
                            where=(Visit.passerby == False) & (Visit.source == "lan")))  # noqa: E712


class OpenRun(BaseModel):
    """A run of sightings still in progress, saved so that a collector restart carries it on."""
    device = ForeignKeyField(Device, on_delete="CASCADE")
    source = CharField()
    start = DateTimeField()
    last = DateTimeField()
    sightings = IntegerField(default=1)

    class Meta:
        primary_key = CompositeKey("device", "source")


class PolicyVersion(BaseModel):
    """One exact text shown to visitors (a consent statement or the notice), in one language."""
    document = CharField()
    language = CharField()
    text = TextField()
    sha256 = CharField()
    created_at = DateTimeField(default=utcnow)
    # The owner's text with its placeholders ({store}, {contact}...), rendered into `text` from the
    # settings; None for a version published before templates (its text is its own template).
    template = TextField(null=True)
    # Whether it differs materially from the version before it: a material change asks people
    # again (their consents on earlier versions stop counting); an editorial one keeps them.
    material = BooleanField(default=True)

    class Meta:
        indexes = ((("document", "language", "sha256"), True), (("language", "document", "material", "id"), False))


class Consent(BaseModel):
    """Append-only: a grant or a withdrawal of one purpose, with what was shown and where."""
    uid = CharField(unique=True, default=new_uid)
    lead = ForeignKeyField(Lead, backref="consents", on_delete="CASCADE")
    purpose = CharField()
    granted = BooleanField()
    policy = ForeignKeyField(PolicyVersion, null=True, on_delete="RESTRICT")
    policy_sha256 = CharField(null=True)
    store_id = CharField()
    device_mac = CharField(null=True)
    ip = CharField(null=True)
    method = CharField()
    created_at = DateTimeField(default=utcnow)
    # The clock read earlier than the last good time: created_at is that time, not the clock's.
    clock_suspect = BooleanField(default=False, constraints=[SQL("DEFAULT 0")])

    class Meta:
        indexes = ((("lead", "purpose", "created_at"), False),)


class Authorization(BaseModel):
    """A device let online until expires_at; mirrors what the gateway enforces."""
    device = ForeignKeyField(Device, backref="authorizations", on_delete="CASCADE")
    lead = ForeignKeyField(Lead, null=True, on_delete="SET NULL")
    ip = CharField(null=True, index=True)
    started_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    revoked_at = DateTimeField(null=True)
    method = CharField(default="form")


class Manager(BaseModel):
    """A person who uses the store's panel. Roles: owner, manager, analyst (aggregates only)."""
    username = CharField(unique=True)
    password_hash = CharField()
    role = CharField()
    totp_secret_enc = BlobField(null=True)
    totp_confirmed = BooleanField(default=False)
    recovery_codes = TextField(default="[]")  # argon2 hashes, each usable once
    totp_last_step = IntegerField(default=0)   # a TOTP code is accepted once: later steps only
    failed_logins = IntegerField(default=0)
    second_factor_failures = IntegerField(default=0)  # apart: a right password never resets them
    locked_until = DateTimeField(null=True)
    disabled = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)
    # An address of the manager's own (issue 16): where a forgotten password's code goes. Encrypted,
    # found by its blind index; never a way around the second factor.
    email_enc = BlobField(null=True)
    email_index = CharField(null=True, unique=True)


class StoreSetting(BaseModel):
    """A setting the owner changed in the panel (JSON value); it overrides the file's."""
    key = CharField(primary_key=True)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)


class Segment(BaseModel):
    """A remarketing segment: built-in (new, returning, loyal, lapsed, lost) or custom; rule in JSON."""
    key = CharField(unique=True)
    name = CharField()
    builtin = BooleanField(default=False)
    rule = TextField()
    members = IntegerField(default=0)
    computed_at = DateTimeField(null=True)


class SegmentMember(BaseModel):
    segment = ForeignKeyField(Segment, on_delete="CASCADE")
    lead = ForeignKeyField(Lead, on_delete="CASCADE", index=True)

    class Meta:
        primary_key = CompositeKey("segment", "lead")


class FunnelDay(BaseModel):
    """The portal funnel per local day: probe, splash, submit, online."""
    day = CharField()
    stage = CharField()
    count = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("day", "stage")


class DataRequest(BaseModel):
    """A data-subject request in the privacy desk's register."""
    kind = CharField()
    lead = ForeignKeyField(Lead, null=True, on_delete="SET NULL")
    requester_enc = BlobField(null=True)
    received_at = DateTimeField(default=utcnow)
    due_at = DateTimeField()
    status = CharField(default="open")
    completed_at = DateTimeField(null=True)
    handled_by = CharField(null=True)
    # The law's clock (portal/core/deadlines.py) and the identity check (issue 15).
    ack_due_at = DateTimeField(null=True)
    acknowledged_at = DateTimeField(null=True)
    processor = BooleanField(default=False)
    extended_at = DateTimeField(null=True)
    extension_reason = CharField(null=True)
    verified_at = DateTimeField(null=True)
    verify_method = CharField(null=True)    # code:email | code:sms | code:zalo | in_person | id_document | ...
    verified_by = CharField(null=True)
    verify_claim = CharField(null=True)     # the ContactClaim a desk code was sent for


class AuditEntry(BaseModel):
    at = DateTimeField(default=utcnow, index=True)
    actor = CharField()
    action = CharField()
    subject = CharField(null=True)
    detail = TextField(default="{}")
    ip = CharField(null=True)


class OutboxEvent(BaseModel):
    """A change the central store must learn, written in the same transaction as the change.

    Payloads carry identifiers, never plaintext personal data: the sync job reads the current
    (decrypted) record when it sends, so an erasure also erases what is waiting to be sent.
    """
    uid = CharField(unique=True, default=new_uid)
    topic = CharField()
    payload = TextField()
    created_at = DateTimeField(default=utcnow)
    delivered_at = DateTimeField(null=True, index=True)
    attempts = IntegerField(default=0)
    # The store's sequence (migration 0023): it only grows, even across a restore from a backup,
    # so the central store keeps one high-water mark per store instead of a row per event id.
    # NULL only for events written before the upgrade (the central claims those by uid).
    seq = BigIntegerField(null=True, unique=True)

    @classmethod
    def emit(cls, topic: str, **payload) -> "OutboxEvent":
        event = cls(topic=topic, payload=json.dumps(payload, sort_keys=True, default=str))
        event.id = cls.insert(uid=event.uid, topic=topic, payload=event.payload, created_at=event.created_at,
                              seq=SQL(NEXT_SEQ_SQL, (seq_now(),))).execute()
        return event


class AuditLog:
    """Thin helper so callers write one line per audited action."""

    @staticmethod
    def record(actor: str, action: str, subject: str | None = None, ip: str | None = None, **detail) -> None:
        if clock.utcnow()[1]:
            detail["clock"] = "unsynchronized: dated with the last good time"
        AuditEntry.create(actor=actor, action=action, subject=subject, ip=ip,
                          detail=json.dumps(detail, sort_keys=True, default=str))


MODELS = (Lead, Device, Visit, OpenRun, PolicyVersion, Consent, Authorization, Manager, StoreSetting, Segment,
          SegmentMember, FunnelDay, DataRequest, AuditEntry, OutboxEvent)


class ManagerSession(BaseModel):
    """A panel session held on the server. The browser's cookie carries only a random token whose
    SHA-256 is `token_hash` (a copy of the database opens no session); deleting the row ends the
    session for good, whatever cookie a browser kept."""
    token_hash = CharField(unique=True)
    manager = ForeignKeyField(Manager, backref="sessions", on_delete="CASCADE")
    stage = CharField()  # "code": right password, second factor awaited; "full": signed in
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    ip = CharField(null=True)


MODELS = MODELS + (ManagerSession,)


class VerificationCode(BaseModel):
    """A one-time code sent to an email or a phone (issue 11). Only its keyed hash is kept; the
    destination is its blind index (no plaintext contact here)."""
    uid = CharField(unique=True, default=new_uid)
    channel = CharField()  # email | sms | zalo
    destination_index = CharField(index=True)
    code_hash = CharField()
    created_at = DateTimeField(default=utcnow, index=True)
    expires_at = DateTimeField()
    tries = IntegerField(default=0)
    used_at = DateTimeField(null=True)
    device_mac = CharField(null=True, index=True)
    ip = CharField(null=True, index=True)
    claim_uid = CharField(null=True, index=True)


class ContactClaim(BaseModel):
    """An email or phone a device named, waiting for the code that proves it (encrypted; purged
    a day after). `lead_uid` is the record the proof applies to: the device's own."""
    uid = CharField(unique=True, default=new_uid)
    lead_uid = CharField(index=True)
    kind = CharField()  # email | phone
    destination_index = CharField()
    destination_enc = BlobField()
    typed = BooleanField(default=True)  # typed on this device (its mask may be shown), or read off the record
    device_mac = CharField(null=True)
    ip = CharField(null=True)
    language = CharField(default="vi")
    created_at = DateTimeField(default=utcnow, index=True)
    verified_at = DateTimeField(null=True)


class ContactProof(BaseModel):
    """Append-only proof that a person controls a contact point: what double opt-in rests on."""
    uid = CharField(unique=True, default=new_uid)
    lead = ForeignKeyField(Lead, backref="proofs", on_delete="CASCADE")
    kind = CharField()      # email | phone
    channel = CharField()   # email | sms | zalo
    destination_masked = CharField()
    store_id = CharField()
    device_mac = CharField(null=True)
    ip = CharField(null=True)
    verified_at = DateTimeField(default=utcnow)


MODELS = MODELS + (VerificationCode, ContactClaim, ContactProof)


class TransferAssessment(BaseModel):
    """A transfer of personal data abroad and the date its impact assessment was made (issue 15);
    Meta and Google exports are refused until their platform has one in force."""
    platform = CharField(index=True)   # meta | google | central | other
    recipient = CharField()
    country = CharField()
    assessed_on = DateField()
    reference = CharField(default="")
    recorded_by = CharField()
    recorded_at = DateTimeField(default=utcnow)
    withdrawn_at = DateTimeField(null=True)


class Breach(BaseModel):
    """A personal-data breach: the authority must hear of it within 72 hours of its detection."""
    detected_at = DateTimeField()
    description = TextField()
    data_kinds = CharField(default="")
    people = IntegerField(null=True)
    measures = TextField(default="")
    recorded_by = CharField()
    recorded_at = DateTimeField(default=utcnow)
    reported_at = DateTimeField(null=True)
    reported_by = CharField(null=True)
    report_reference = CharField(default="")
    # AES-GCM, as a lead's details (compliance.py): a breach's account may name people and systems.
    # description and measures hold only what a row written before migration 0016 had, until sealed.
    description_enc = BlobField(null=True)
    measures_enc = BlobField(null=True)


MODELS = MODELS + (TransferAssessment, Breach)


class ExportLog(BaseModel):
    """Every audience export (issue 15): who, which segment, which platform, when, how many."""
    actor = CharField()
    segment_key = CharField()
    segment_name = CharField()
    kind = CharField()  # csv | meta | google
    members = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow, index=True)


class ExportMember(BaseModel):
    """A person in an export, the consent versions it rested on, and only the SHA-256 of each
    identifier sent (in the platform's normalization; csv: the email lowercased, the phone in
    E.164): enough to list them for removal after a withdrawal or an erasure, never the plaintext.
    A hash is cleared once its removal is marked done."""
    export = ForeignKeyField(ExportLog, backref="people", on_delete="CASCADE")
    lead = ForeignKeyField(Lead, on_delete="CASCADE", index=True)
    email_hash = CharField(null=True)
    phone_hash = CharField(null=True)
    policies = TextField(default="{}")  # JSON: purpose > policy sha256 of the consent the export rested on


MODELS = MODELS + (ExportLog, ExportMember)


class LeadNameWord(BaseModel):
    """One word of a person's name as a blind index (portal/name_index.py): the panel's name search."""
    lead = ForeignKeyField(Lead, on_delete="CASCADE", index=True)
    word = CharField()

    class Meta:
        primary_key = CompositeKey("word", "lead")


MODELS = MODELS + (LeadNameWord,)


class SigninRun(BaseModel):
    """A sign-in session in progress (one per device): from the sign-in to the last sign of life the
    gateway reported. It becomes a visit once silent for the visit gap (portal/signin_visits.py)."""
    device = ForeignKeyField(Device, primary_key=True, on_delete="CASCADE")
    start = DateTimeField()
    last = DateTimeField()


MODELS = MODELS + (SigninRun,)


class LedgerMark(BaseModel):
    """The last line of the erasure ledger this database applied (portal/erasure_ledger.py): one row."""
    seq = BigIntegerField()


MODELS = MODELS + (LedgerMark,)

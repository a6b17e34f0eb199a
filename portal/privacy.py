"""The privacy desk: a person's data (export, correction, withdrawal, erasure), the register of
data-subject requests, and retention. Every action is audited; every change to what the central
store holds goes to the outbox in the same transaction."""
from __future__ import annotations

import datetime
import json
import logging

from portal import consent
from portal.db import database
from portal.gateway import Gateway, GatewayError
from portal.identity import InvalidContact, Vault, clean_name, normalize_email, normalize_phone
from portal.models import (Authorization, AuditLog, Consent, ContactClaim, DataRequest, Device, Lead, OutboxEvent, SegmentMember,
                           Visit, utcnow)
from portal.core.purposes import MARKETING_PURPOSES

logger = logging.getLogger(__name__)
REQUEST_KINDS = ("access", "correction", "withdrawal", "erasure", "objection")


class DeskError(ValueError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def person_data(lead: Lead, vault: Vault) -> dict:
    """Everything held about one person, machine-readable (right of access / portability)."""
    devices = list(Device.select().where(Device.lead == lead))
    return {
        "person": {"id": lead.uid, "email": vault.decrypt(lead.email_enc, "lead.email"),
                   "phone": vault.decrypt(lead.phone_enc, "lead.phone"), "name": vault.decrypt(lead.name_enc, "lead.name"),
                   "language": lead.language, "created_at": str(lead.created_at), "updated_at": str(lead.updated_at)},
        "devices": [{"mac": d.mac, "first_seen": str(d.first_seen), "last_seen": str(d.last_seen), "vendor": d.vendor or None,
                     "hostname": d.hostname, "private_address": d.randomized} for d in devices],
        "visits": [{"start": str(v.start), "end": str(v.end), "device": v.device.mac}
                   for v in Visit.select().where(Visit.device.in_(devices), Visit.passerby == False).order_by(Visit.start)],  # noqa: E712
        "consents": [{"purpose": c.purpose, "granted": c.granted, "at": str(c.created_at), "method": c.method,
                      "policy_sha256": c.policy_sha256, "policy_text": c.policy.text if c.policy else None,
                      "store": c.store_id, "device": c.device_mac, "ip": c.ip} for c in consent.history(lead)],
        "segments": [m.segment.name for m in SegmentMember.select().where(SegmentMember.lead == lead)],
    }


def correct(lead: Lead, vault: Vault, region: str, actor: str, email: str = "", phone: str = "", name: str = "") -> None:
    """Replace contact details (empty keeps the current one); conflicts with another person are refused."""
    changes = {}
    try:
        if email.strip():
            value = normalize_email(email)
            changes["email"] = (vault.encrypt(value, "lead.email"), vault.blind_index("email", value))
        if phone.strip():
            value = normalize_phone(phone, region)
            changes["phone"] = (vault.encrypt(value, "lead.phone"), vault.blind_index("phone", value))
        cleaned = clean_name(name) if name.strip() else None
    except InvalidContact as exc:
        raise DeskError(exc.code) from None
    with database.atomic():
        for kind, (enc, index) in changes.items():
            field_index = getattr(Lead, f"{kind}_index")
            if Lead.select().where(field_index == index, Lead.id != lead.id).exists():
                raise DeskError(f"{kind}_taken")
            if getattr(lead, f"{kind}_index") != index:  # a new address is nobody's proof yet
                setattr(lead, f"{kind}_verified_at", None)
            setattr(lead, f"{kind}_enc", enc)
            setattr(lead, f"{kind}_index", index)
        if cleaned:
            lead.name_enc = vault.encrypt(cleaned, "lead.name")
        lead.updated_at = utcnow()
        lead.save()
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
        AuditLog.record(actor, "lead_corrected", lead.uid, fields=sorted([*changes, *(["name"] if cleaned else [])]))


def withdraw(lead: Lead, purpose: str, store_id: str, actor: str) -> bool:
    if purpose not in MARKETING_PURPOSES:
        raise DeskError("purpose_unknown")
    with database.atomic():
        if purpose not in consent.granted_purposes(lead):
            return False
        consent.record(lead, purpose, False, consent.Where(store_id, None, None, "panel"))
        AuditLog.record(actor, "consent_withdrawn", lead.uid, purpose=purpose)
    return True


def erase_person(lead: Lead | None, devices: list[Device], gateway: Gateway, store_id: str, actor: str) -> list[str]:
    """Erase a person and their devices on the appliance, revoke them at the gateway, and tell the
    central store. The consent log stays as proof, without device or IP. Returns the MACs."""
    with database.atomic():
        if lead is not None:
            devices = list({d.id: d for d in [*devices, *Device.select().where(Device.lead == lead)]}.values())
            where = consent.Where(store_id, None, None, "erasure")
            for purpose in sorted(consent.granted_purposes(lead)):
                consent.record(lead, purpose, False, where)
            Consent.update(device_mac=None, ip=None).where(Consent.lead == lead).execute()
            Lead.update(email_enc=None, email_index=None, phone_enc=None, phone_index=None, name_enc=None,
                        erased_at=utcnow(), updated_at=utcnow()).where(Lead.id == lead.id).execute()
            ContactClaim.delete().where(ContactClaim.lead_uid == lead.uid).execute()
            SegmentMember.delete().where(SegmentMember.lead == lead).execute()
            # The central erases a person known at other stores only on the word of a store that
            # knows them by a proven contact (issue 11).
            verified = lead.email_verified_at is not None or lead.phone_verified_at is not None
            OutboxEvent.emit("lead.erased", lead=lead.uid, verified=verified)
        macs = [d.mac for d in devices]
        ids = [d.id for d in devices]
        if ids:
            Visit.delete().where(Visit.device.in_(ids)).execute()
            Authorization.delete().where(Authorization.device.in_(ids)).execute()
            Device.delete().where(Device.id.in_(ids)).execute()
            OutboxEvent.emit("devices.erased", devices=macs)
        AuditLog.record(actor, "erase", lead.uid if lead else None, devices=len(macs))
    for mac in macs:
        try:
            gateway.revoke(mac)
        except GatewayError:
            logger.exception("gateway could not revoke an erased device")
    return macs


# -- the register of requests --------------------------------------------------------------------

def open_request(kind: str, received: datetime.datetime, deadline_days: int, vault: Vault, actor: str,
                 lead: Lead | None = None, requester: str = "") -> DataRequest:
    if kind not in REQUEST_KINDS:
        raise DeskError("kind_unknown")
    requester = " ".join(requester.split())[:200]
    request = DataRequest.create(kind=kind, lead=lead, received_at=received,
                                 due_at=received + datetime.timedelta(days=deadline_days),
                                 requester_enc=vault.encrypt(requester, "request.requester") if requester else None)
    AuditLog.record(actor, "request_opened", str(request.id), kind=kind)
    return request


def close_request(request: DataRequest, status: str, actor: str) -> None:
    if status not in ("done", "refused"):
        raise DeskError("status_unknown")
    request.status, request.completed_at, request.handled_by = status, utcnow(), actor
    request.save()
    AuditLog.record(actor, "request_closed", str(request.id), status=status)


# -- retention -------------------------------------------------------------------------------------

def due_for_purge(retention_days: int, now: datetime.datetime | None = None) -> dict[str, int]:
    cutoff = ((now or utcnow()) - datetime.timedelta(days=retention_days)).isoformat(" ")
    visits = database.execute_sql("SELECT count(*) FROM visit WHERE \"end\" < ?", (cutoff,)).fetchone()[0]
    leads = database.execute_sql(_STALE_LEADS.replace("SELECT l.id", "SELECT count(*)"), (cutoff, cutoff)).fetchone()[0]
    return {"visits": visits, "leads": leads}


_STALE_LEADS = """
SELECT l.id FROM lead l
WHERE l.erased_at IS NULL AND l.updated_at < ?
  AND NOT EXISTS (SELECT 1 FROM device d JOIN visit v ON v.device_id = d.id WHERE d.lead_id = l.id AND v."end" >= ?)
"""


PURGE_CHUNK = 5000


def purge(retention_days: int, gateway: Gateway, store_id: str, now: datetime.datetime | None = None) -> dict[str, int]:
    """Delete visits older than the retention period and erase people not seen within it."""
    now = now or utcnow()
    cutoff = (now - datetime.timedelta(days=retention_days)).isoformat(" ")
    stale = [row[0] for row in database.execute_sql(_STALE_LEADS, (cutoff, cutoff))]
    for lead_id in stale:
        erase_person(Lead.get_by_id(lead_id), [], gateway, store_id, "retention")
    visits = 0
    while True:  # in short transactions: a first purge may face years of visits
        with database.atomic():
            deleted = database.execute_sql(
                'DELETE FROM visit WHERE id IN (SELECT id FROM visit WHERE "end" < ? LIMIT ?)',
                (cutoff, PURGE_CHUNK)).rowcount
        visits += deleted
        if deleted < PURGE_CHUNK:
            break
    with database.atomic():
        AuditLog.record("retention", "purge", None, visits=visits, leads=len(stale), retention_days=retention_days)
    return {"visits": visits, "leads": len(stale)}


def export_json(lead: Lead, vault: Vault, actor: str) -> str:
    AuditLog.record(actor, "person_exported", lead.uid)
    return json.dumps(person_data(lead, vault), ensure_ascii=False, indent=1)

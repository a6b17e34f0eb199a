"""The privacy desk: a person's data (export, correction, withdrawal, erasure), the register of
data-subject requests, objection and restriction (retention is portal/retention.py). Every action is audited; every change to what the central
store holds goes to the outbox in the same transaction."""
from __future__ import annotations

import datetime
import json
import logging

from portal import consent, erasure_ledger, name_index
from portal.db import database
from portal.gateway import Gateway, GatewayError
from portal.identity import InvalidContact, Vault, clean_name, normalize_email, normalize_phone
from portal.core import deadlines
from portal.models import (Authorization, AuditEntry, AuditLog, Consent, ContactClaim, DataRequest, Device, Lead, OutboxEvent,
                           Segment, SegmentMember, VerificationCode, Visit, utcnow)
from portal.core.purposes import OPTIONAL_PURPOSES, VISIT_ANALYTICS

logger = logging.getLogger(__name__)
REQUEST_KINDS = ("access", "correction", "deletion", "withdrawal", "objection", "restriction", "provision")


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
                   "language": lead.language, "created_at": str(lead.created_at), "updated_at": str(lead.updated_at),
                   "restricted_at": str(lead.restricted_at) if lead.restricted_at else None},
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
        if cleaned:
            name_index.index(lead.id, cleaned, vault)
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
        AuditLog.record(actor, "lead_corrected", lead.uid, fields=sorted([*changes, *(["name"] if cleaned else [])]))


def withdraw(lead: Lead, purpose: str, store_id: str, actor: str) -> bool:
    """Withdraw one optional purpose on the person's word: a channel, visit analytics (out of
    segments at once) or chain sharing (the consent event and a lead.upserted tell the central)."""
    if purpose not in OPTIONAL_PURPOSES:
        raise DeskError("purpose_unknown")
    with database.atomic():
        if purpose not in consent.granted_purposes(lead):
            return False
        consent.record(lead, purpose, False, consent.Where(store_id, None, None, "panel"))
        if purpose == VISIT_ANALYTICS:
            _leave_segments(lead)
        AuditLog.record(actor, "consent_withdrawn", lead.uid, purpose=purpose)
    return True


def erase_person(lead: Lead | None, devices: list[Device], gateway: Gateway, store_id: str, actor: str,
                 ledger: bool = True) -> list[str]:
    """Erase a person and their devices on the appliance, revoke them at the gateway, and tell the
    central store. The consent log stays as proof, without device or IP. Returns the MACs.
    Noted in the erasure ledger (`ledger`), so a restore from backup redoes it (portal/erasure_ledger.py)."""
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
        if ledger:
            erasure_ledger.note("erase", store_id, lead=lead.uid if lead else None, devices=ids)
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
# Law 91/2025 and Decree 356/2025: every request is acknowledged within 2 working days and done
# within 15 days (20 with a processor), extended at most once (portal/core/deadlines.py). A request
# is closed as done only once the requester's identity was checked: by a one-time code sent to the
# contact on the person's record (portal/contacts.py), or by a named manual method, with who checked.

def rules_from(settings) -> tuple[deadlines.Calendar, deadlines.Periods]:
    return (deadlines.Calendar(deadlines.parse_holidays(settings.public_holidays), deadlines.zone(settings.store_time_zone)),
            deadlines.Periods(settings.dsr_deadline_days, settings.dsr_processor_days, settings.dsr_extension_days))


def find_person(text: str, vault: Vault, region: str) -> Lead | None:
    """The person a request names: their id, email or phone (by blind index); None when nobody."""
    text = text.strip()[:254]
    if not text:
        return None
    lead = Lead.get_or_none((Lead.uid == text) & Lead.erased_at.is_null())
    if lead is not None:
        return lead
    for kind, normalize in (("email", normalize_email), ("phone", lambda v: normalize_phone(v, region))):
        try:
            index = vault.blind_index(kind, normalize(text))
        except InvalidContact:
            continue
        lead = Lead.get_or_none((getattr(Lead, f"{kind}_index") == index) & Lead.erased_at.is_null())
        if lead is not None:
            return lead
    raise DeskError("person_unknown")


def open_request(kind: str, received: datetime.datetime, rules: tuple[deadlines.Calendar, deadlines.Periods],
                 vault: Vault, actor: str, lead: Lead | None = None, requester: str = "",
                 processor: bool = False) -> DataRequest:
    if kind not in REQUEST_KINDS:
        raise DeskError("kind_unknown")
    requester = " ".join(requester.split())[:200]
    clock_ = deadlines.request_clock(received, *rules, processor=processor)
    request = DataRequest.create(kind=kind, lead=lead, received_at=received, due_at=clock_.due, ack_due_at=clock_.ack_due,
                                 processor=processor,
                                 requester_enc=vault.encrypt(requester, "request.requester") if requester else None)
    AuditLog.record(actor, "request_opened", str(request.id), kind=kind, lead=lead.uid if lead else None)
    return request


def _open(request: DataRequest) -> None:
    if request.status != "open":
        raise DeskError("request_closed")


def acknowledge(request: DataRequest, actor: str, now: datetime.datetime | None = None) -> None:
    _open(request)
    if request.acknowledged_at is None:
        request.acknowledged_at = now or utcnow()
        request.save()
        AuditLog.record(actor, "request_acknowledged", str(request.id))


def extend(request: DataRequest, reason: str, rules: tuple[deadlines.Calendar, deadlines.Periods], actor: str,
           now: datetime.datetime | None = None) -> None:
    """The one extension the law allows, with the reason the requester is told."""
    _open(request)
    reason = " ".join(reason.split())[:200]
    if not reason:
        raise DeskError("reason_needed")
    if request.extended_at is not None:
        raise DeskError("extended_already")
    request.due_at = deadlines.extended(request.due_at, rules[0], rules[1])
    request.extended_at, request.extension_reason = now or utcnow(), reason
    request.save()
    AuditLog.record(actor, "request_extended", str(request.id), due=request.due_at, reason=reason)


def link_person(request: DataRequest, lead: Lead, actor: str) -> None:
    _open(request)
    if request.lead_id != lead.id:  # another person: what was checked was about someone else
        request.lead, request.verified_at, request.verify_method, request.verified_by = lead, None, None, None
        request.verify_claim = None
        request.save()
        AuditLog.record(actor, "request_linked", str(request.id), lead=lead.uid)


MANUAL_CHECKS = ("in_person", "id_document", "known_channel")


def verify_manually(request: DataRequest, method: str, actor: str) -> None:
    """Record how the requester's identity was checked outside Footfall, and by whom."""
    _open(request)
    if method not in MANUAL_CHECKS:
        raise DeskError("method_unknown")
    _verified(request, method, actor)


def _verified(request: DataRequest, method: str, actor: str) -> None:
    request.verified_at, request.verify_method, request.verified_by = utcnow(), method, actor
    request.save()
    AuditLog.record(actor, "request_verified", str(request.id), method=method)


def send_code(request: DataRequest, kind: str, contacts, actor: str) -> str:
    """Send a one-time code to the email or phone on the linked person's record that the person
    proved (never to an address the requester dictates, nor one corrected since its proof):
    whoever reads it back controls the record's contact. The
    channel it went by; DeskError, or VerificationError when a limit or a missing channel says no."""
    _open(request)
    if kind not in ("email", "phone"):
        raise DeskError("contact_unknown")
    lead = Lead.get_or_none((Lead.id == request.lead_id) & Lead.erased_at.is_null()) if request.lead_id else None
    if lead is None:
        raise DeskError("person_needed")
    enc = getattr(lead, f"{kind}_enc")
    if enc is None:
        raise DeskError("record_contact_missing")
    if getattr(lead, f"{kind}_verified_at") is None:
        # Only a contact the person proved is theirs: one typed at sign-in, or corrected on the
        # requester's say-so a minute ago, would let the requester verify themselves.
        raise DeskError("contact_unverified")
    value = contacts.vault.decrypt(enc, f"lead.{kind}") or ""
    with database.atomic():
        claim = contacts.claim(lead, kind, value, None, None, lead.language, typed=False)
        request.verify_claim = claim.uid
        request.save()
    pending = contacts.send(claim)
    AuditLog.record(actor, "request_code_sent", str(request.id), kind=kind, channel=pending.channel)
    return pending.channel


def check_code(request: DataRequest, code: str, contacts, actor: str) -> None:
    """The code the requester read back; VerificationError (wrong, expired, ...) otherwise."""
    _open(request)
    if not request.verify_claim:
        raise DeskError("code_not_sent")
    latest = (VerificationCode.select().where(VerificationCode.claim_uid == request.verify_claim)
              .order_by(VerificationCode.id.desc()).first())
    if latest is None:
        raise DeskError("code_not_sent")
    used = contacts.codes.check(latest.uid, code)
    ContactClaim.update(verified_at=utcnow()).where(ContactClaim.uid == request.verify_claim).execute()
    _verified(request, f"code:{used.channel}", actor)


def close_request(request: DataRequest, status: str, actor: str) -> None:
    """Done (only once the requester was verified; an objection or a restriction then takes
    effect on the linked person) or refused."""
    if status not in ("done", "refused"):
        raise DeskError("status_unknown")
    _open(request)
    with database.atomic():
        if status == "done":
            if request.verified_at is None:
                raise DeskError("verify_first")
            if request.kind in ("objection", "restriction"):
                if request.lead_id is None:
                    raise DeskError("person_needed")
                restrict(request.lead, actor, request.kind)
        request.status, request.completed_at, request.handled_by = status, utcnow(), actor
        if request.acknowledged_at is None:
            request.acknowledged_at = request.completed_at  # an answer is an acknowledgement
        request.save()
        AuditLog.record(actor, "request_closed", str(request.id), status=status)


def clock_flags(request: DataRequest, now: datetime.datetime) -> list[str]:
    """What is late about an open request: ack_overdue, overdue."""
    if request.status != "open":
        return []
    flags = []
    if request.acknowledged_at is None and request.ack_due_at is not None and request.ack_due_at < now:
        flags.append("ack_overdue")
    if request.due_at < now:
        flags.append("overdue")
    return flags


def restrict(lead: Lead, actor: str, reason: str) -> None:
    """Objection or restriction upheld: the person stays on file, out of segments, exports and
    messages (segments.py and exports.py skip restricted_at) until the restriction is lifted."""
    with database.atomic():
        if lead.restricted_at is None:
            Lead.update(restricted_at=utcnow()).where(Lead.id == lead.id).execute()
            lead.restricted_at = utcnow()
        _leave_segments(lead)
        OutboxEvent.emit("lead.restricted", lead=lead.uid, restricted=True)  # the central store too
        AuditLog.record(actor, "restricted", lead.uid, reason=reason)


def _leave_segments(lead: Lead) -> None:
    segments = [m.segment_id for m in SegmentMember.select(SegmentMember.segment).where(SegmentMember.lead == lead)]
    SegmentMember.delete().where(SegmentMember.lead == lead).execute()
    for segment_id in segments:
        Segment.update(members=SegmentMember.select().where(SegmentMember.segment == segment_id).count()) \
            .where(Segment.id == segment_id).execute()
        # The central store and the CRM's webhooks learn the new members (read when sent).
        from portal import segments as segment_job
        segment_job.announce(Segment.get_by_id(segment_id))


def lift_restriction(lead: Lead, actor: str) -> None:
    if lead.restricted_at is None:
        raise DeskError("not_restricted")
    with database.atomic():
        Lead.update(restricted_at=None).where(Lead.id == lead.id).execute()
        lead.restricted_at = None
        OutboxEvent.emit("lead.restricted", lead=lead.uid, restricted=False)
        if consent.follows(lead.id):  # followed again: the devices signed in meanwhile were not sent
            consent.send_links(lead)
        AuditLog.record(actor, "restriction_lifted", lead.uid)


# A person's own objection or restriction request from the portal's "My data" page (issue 15).
# Objecting to direct marketing and the profiling behind it is a right without conditions (GDPR
# art. 21(2)-(3); Law 91/2025): the restriction applies at once and the request is recorded done.
# Objecting on other grounds, and asking for a restriction, go to the desk with the law's clocks.
PORTAL_GROUNDS = {"objection": ("marketing", "other"), "restriction": ("other",)}
PORTAL_PROOFS = ("code", "own_record")  # a code entered this session, or a record all this device's own


def request_from_portal(lead: Lead, kind: str, grounds: str, proof: str, rules: tuple[deadlines.Calendar, deadlines.Periods],
                        vault: Vault, now: datetime.datetime | None = None) -> DataRequest:
    """Record the request of a person who proved who they are on the portal (`proof`); see above.
    One open request of a kind per person: asking again returns the one already open."""
    if grounds not in PORTAL_GROUNDS.get(kind, ()):
        raise DeskError("kind_unknown")
    if proof not in PORTAL_PROOFS or lead.erased_at is not None:
        raise DeskError("verify_first")
    now = now or utcnow()
    with database.atomic():
        open_ = (DataRequest.select().where((DataRequest.lead == lead) & (DataRequest.kind == kind)
                                            & (DataRequest.status == "open")).first())
        if open_ is not None and not (kind == "objection" and grounds == "marketing"):
            return open_
        if open_ is None and grounds == "marketing" and lead.restricted_at is not None:
            done = (DataRequest.select().where((DataRequest.lead == lead) & (DataRequest.kind == kind))
                    .order_by(DataRequest.id.desc()).first())
            if done is not None:
                return done  # restricted already: asking again adds nothing
        about = "marketing and profiling" if grounds == "marketing" else "other grounds"
        request = open_ or open_request(kind, now, rules, vault, "visitor", lead, requester=f"My data page ({about})")
        if request.verified_at is None:
            request.verified_at, request.verify_method, request.verified_by = now, f"portal:{proof}", "visitor"
            request.save()
            AuditLog.record("visitor", "request_verified", str(request.id), method=request.verify_method)
        if kind == "objection" and grounds == "marketing":
            close_request(request, "done", "visitor")
    return request


PORTAL_ACTIONS = ("erase", "consent_withdrawn")


def made_on_portal(limit: int = 100) -> list[AuditEntry]:
    """Erasures and withdrawals people made themselves (on the portal's "My data" page, or through
    the central store), for the register: done at once, nothing for the desk to do."""
    return list(AuditEntry.select().where(AuditEntry.actor.in_(("visitor", "central")) & AuditEntry.action.in_(PORTAL_ACTIONS))
                .order_by(AuditEntry.id.desc()).limit(limit))


def provision(request: DataRequest, vault: Vault, actor: str) -> str:
    """The person's data, machine-readable (JSON), for a verified provision or access request (an
    objection or a restriction, verified or not, asks for no copy: the portal's "own record" proof
    behind one made there is no ground to hand the data out)."""
    if request.kind not in ("access", "provision"):
        raise DeskError("kind_no_copy")
    if request.lead_id is None:
        raise DeskError("person_needed")
    if request.verified_at is None:
        raise DeskError("verify_first")
    AuditLog.record(actor, "person_provided", request.lead.uid, request=request.id)
    return json.dumps({"request": {"id": request.id, "kind": request.kind, "received_at": str(request.received_at)},
                       **person_data(request.lead, vault)}, ensure_ascii=False, indent=1)


def export_json(lead: Lead, vault: Vault, actor: str) -> str:
    AuditLog.record(actor, "person_exported", lead.uid)
    return json.dumps(person_data(lead, vault), ensure_ascii=False, indent=1)

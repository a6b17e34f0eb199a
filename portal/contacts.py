"""Proving control of an email or a phone (issue 11): claims, codes sent beside the page, proof.

A sign-in form names contacts; naming is not being. Each named contact becomes a ContactClaim
(encrypted, purged after a day) bound to the record of the device that named it. A one-time code
(portal/verification.py) goes to the contact through the message layer (portal/messages), sent
beside the request so a slow provider never holds the visitor's page. Entering the code proves the
claim, and only then does the contact act on anyone's record:

- nobody holds it: the device's record holds it, verified;
- the device's own record holds it: it becomes verified;
- another record holds it, verified: the device's record is folded into that one (its devices,
  consents and sessions move there): a returning person on a new random MAC is recognised;
- another record holds it, unverified (a claim nobody proved): it loses the contact, which goes,
  verified, to the record of the device that proved it.

Every proof is kept (ContactProof: channel, time, masked destination, device) as the evidence
double opt-in rests on: a marketing consent counts only for a verified channel.
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from portal.db import database
from portal.i18n import translate
from portal.identity import Vault, mask_email, mask_phone
from portal.messages import Delivery, Dispatcher, Message
from portal.models import (Authorization, ContactClaim, ContactProof, Consent, DataRequest, Device, Lead, OutboxEvent,
                           SegmentMember, AuditLog, VerificationCode, utcnow)
from portal.verification import PAID, VALID, Codes, VerificationError

logger = logging.getLogger(__name__)

KINDS = ("email", "phone")
CLAIM_LIFE = datetime.timedelta(days=1)



@dataclass(frozen=True)
class Pending:
    """A claim awaiting its code, as a page shows it."""
    claim: str
    kind: str
    channel: str
    masked: str | None      # None when the contact was read off the record (never shown unproven)
    message_id: str | None


def mask(kind: str, value: str) -> str:
    return mask_email(value) if kind == "email" else mask_phone(value)


def verified_kinds(lead: Lead) -> set[str]:
    return {k for k in KINDS if getattr(lead, f"{k}_verified_at") is not None}


def billable(e164: str, settings) -> bool:
    """A number an SMS or Zalo code may go to: a mobile number of a region the store serves
    (`sms_regions`, default the store's own), never premium-rate or toll numbers abroad."""
    import phonenumbers

    regions = {r.strip().upper() for r in (settings.sms_regions or settings.default_region).split(",") if r.strip()}
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    return (phonenumbers.region_code_for_number(number) in regions
            and phonenumbers.number_type(number) in kinds)


def channels(settings, kind: str) -> list[str]:
    """Channels that can carry a code to this kind of contact, in the order they are tried."""
    if kind == "email":
        return ["email"] if settings.email_driver != "none" else []
    return [c for c, name in (("sms", settings.sms_driver), ("zalo", settings.zalo_driver)) if name != "none"]


class Contacts:
    def __init__(self, vault: Vault, dispatcher: Dispatcher | None, settings) -> None:
        self.vault, self.dispatcher, self.settings = vault, dispatcher, settings
        self.codes = Codes(vault.derived_key("verification"), settings.paid_codes_per_hour, settings.paid_codes_per_day)

    # -- claims -----------------------------------------------------------------------------------

    def claim(self, lead: Lead, kind: str, value: str, mac: str | None, ip: str | None, language: str,
              typed: bool = True) -> ContactClaim:
        """Write down that this device names `value` for `lead` (inside the caller's transaction)."""
        return ContactClaim.create(lead_uid=lead.uid, kind=kind, destination_index=self.vault.blind_index(kind, value),
                                   destination_enc=self.vault.encrypt(value, f"claim.{kind}"), typed=typed,
                                   device_mac=mac, ip=ip, language=language)

    def pending(self, claim_uid: str, mac: str | None) -> ContactClaim | None:
        """The claim, when it is this device's, still open and young enough."""
        row = ContactClaim.get_or_none(ContactClaim.uid == claim_uid)
        if row is None or row.verified_at is not None or utcnow() - row.created_at > CLAIM_LIFE:
            return None
        if row.device_mac is not None and row.device_mac != mac:
            return None
        return row

    def describe(self, row: ContactClaim, channel: str, message_id: str | None) -> Pending:
        value = self.vault.decrypt(row.destination_enc, f"claim.{row.kind}") or ""
        return Pending(row.uid, row.kind, channel, mask(row.kind, value) if row.typed else None, message_id)

    # -- sending ----------------------------------------------------------------------------------

    def send(self, row: ContactClaim, channel: str | None = None) -> Pending:
        """Issue a code for the claim and hand it to the message layer; VerificationError when a
        limit, the cooldown or a missing channel says no. Answers before the provider does."""
        options = channels(self.settings, row.kind)
        channel = channel or (options[0] if options else None)
        if channel is None or channel not in options:
            raise VerificationError("channel_off")
        value = self.vault.decrypt(row.destination_enc, f"claim.{row.kind}") or ""
        if channel in PAID and not billable(value, self.settings):
            raise VerificationError("number_not_allowed")
        issued = self.codes.issue(channel, row.destination_index, row.device_mac, row.ip, claim_uid=row.uid)
        text, subject = translate("code_message_body", row.language), translate("code_message_subject", row.language)
        store = self.settings.store_name
        body = text.format(store=store, code=issued.code)
        message = Message(channel, value, body, subject=subject.format(store=store) if channel == "email" else "",
                          html=_html(body, issued.code) if channel == "email" else "", language=row.language,
                          params={"otp": issued.code} if channel == "zalo" else {})
        delivery = self.dispatcher.submit(message) if self.dispatcher else None
        if delivery is not None and delivery.state == "failed" and delivery.error == "queue_full":
            # Never sent: it must not count against the visitor's limits or cooldown.
            VerificationCode.delete().where(VerificationCode.uid == issued.uid).execute()
            raise VerificationError("busy")
        return Pending(row.uid, row.kind, channel, mask(row.kind, value) if row.typed else None,
                       delivery.message_id if delivery else None)

    def delivery(self, message_id: str | None) -> Delivery | None:
        return self.dispatcher.delivery(message_id) if self.dispatcher and message_id else None

    # -- proving ----------------------------------------------------------------------------------

    def confirm(self, claim_uid: str, code: str, mac: str | None, ip: str | None) -> Lead:
        """Check the code for this device's claim and apply the proof; the record it now belongs to."""
        row = self.pending(claim_uid, mac)
        if row is None:
            raise VerificationError("not_found")
        latest = (VerificationCode.select().where(VerificationCode.claim_uid == row.uid)
                  .order_by(VerificationCode.id.desc()).first())
        if latest is None:
            raise VerificationError("not_found")
        used = self.codes.check(latest.uid, code, device_mac=mac)
        return self._prove(row, used.channel, mac, ip)

    def _prove(self, row: ContactClaim, channel: str, mac: str | None, ip: str | None) -> Lead:
        kind, index = row.kind, row.destination_index
        value = self.vault.decrypt(row.destination_enc, f"claim.{kind}") or ""
        now = utcnow()
        index_col, enc_col = getattr(Lead, f"{kind}_index"), f"{kind}_enc"
        with database.atomic():
            own = Lead.get_or_none((Lead.uid == row.lead_uid) & Lead.erased_at.is_null())
            if own is None:
                raise VerificationError("not_found")  # erased (or folded) meanwhile
            holder = Lead.get_or_none((index_col == index) & Lead.erased_at.is_null())
            if holder is not None and holder.id != own.id and getattr(holder, f"{kind}_verified_at") is not None:
                if verified_kinds(own):
                    # Both records are proven people: only this device moves; nobody is folded.
                    if mac:
                        Device.update(lead=holder).where(Device.mac == mac).execute()
                    ContactClaim.update(verified_at=now).where(ContactClaim.id == row.id).execute()
                    ContactProof.create(lead=holder, kind=kind, channel=channel, destination_masked=mask(kind, value),
                                        store_id=self.settings.store_id, device_mac=mac, ip=ip, verified_at=now)
                    AuditLog.record("visitor", "device_joined", holder.uid, ip, kind=kind, channel=channel)
                    return Lead.get_by_id(holder.id)
                target = self._fold(own, holder)
            else:
                if holder is not None and holder.id != own.id:  # an unproved claim loses the contact
                    Lead.update(**{f"{kind}_index": None, enc_col: None, "updated_at": now}).where(Lead.id == holder.id).execute()
                    OutboxEvent.emit("lead.upserted", lead=holder.uid)
                    AuditLog.record("visitor", "contact_released", holder.uid, ip, kind=kind)
                target = own
            fields = {f"{kind}_index": index, enc_col: self.vault.encrypt(value, f"lead.{kind}"),
                      f"{kind}_verified_at": now, "updated_at": now}
            if kind == "phone":
                fields["phone_verified_via"] = channel
            Lead.update(**fields).where(Lead.id == target.id).execute()
            ContactClaim.update(verified_at=now).where(ContactClaim.id == row.id).execute()
            ContactProof.create(lead=target, kind=kind, channel=channel, destination_masked=mask(kind, value),
                                store_id=self.settings.store_id, device_mac=mac, ip=ip, verified_at=now)
            OutboxEvent.emit("lead.upserted", lead=target.uid)
            AuditLog.record("visitor", "contact_verified", target.uid, ip, kind=kind, channel=channel)
        return Lead.get_by_id(target.id)

    def _fold(self, claim: Lead, into: Lead) -> Lead:
        """The device's record was a claim of someone proven now: it joins that person's record."""
        now = utcnow()
        Device.update(lead=into).where(Device.lead == claim).execute()
        Consent.update(lead=into).where(Consent.lead == claim).execute()
        Authorization.update(lead=into).where(Authorization.lead == claim).execute()
        DataRequest.update(lead=into).where(DataRequest.lead == claim).execute()
        ContactProof.update(lead=into).where(ContactProof.lead == claim).execute()
        ContactClaim.update(lead_uid=into.uid).where(ContactClaim.lead_uid == claim.uid).execute()
        SegmentMember.delete().where(SegmentMember.lead == claim).execute()
        moved = {}
        for kind in KINDS:  # the claim's other contact, when the person has none of that kind
            if getattr(claim, f"{kind}_index") and not getattr(into, f"{kind}_index"):
                moved[kind] = (getattr(claim, f"{kind}_index"), getattr(claim, f"{kind}_enc"),
                               getattr(claim, f"{kind}_verified_at"))
        Lead.update(email_index=None, email_enc=None, phone_index=None, phone_enc=None, name_enc=None,
                    erased_at=now, updated_at=now, merged_into=into).where(Lead.id == claim.id).execute()
        for kind, (index, enc, verified) in moved.items():
            blob = self.vault.encrypt(self.vault.decrypt(enc, f"lead.{kind}") or "", f"lead.{kind}")
            Lead.update(**{f"{kind}_index": index, f"{kind}_enc": blob, f"{kind}_verified_at": verified}).where(
                Lead.id == into.id).execute()
        OutboxEvent.emit("lead.merged", lead=claim.uid, into=into.uid)
        AuditLog.record("visitor", "record_joined", into.uid, None, claim=claim.uid)
        return into

    # -- housekeeping -----------------------------------------------------------------------------

    @staticmethod
    def purge(now: datetime.datetime | None = None) -> int:
        """Claims and codes older than a day: the contact a claim names goes with it."""
        cutoff = (now or utcnow()) - CLAIM_LIFE
        with database.atomic():
            codes = VerificationCode.delete().where(VerificationCode.created_at < cutoff - VALID).execute()
            claims = ContactClaim.delete().where(ContactClaim.created_at < cutoff).execute()
        return codes + claims


def _html(text: str, code: str) -> str:
    from markupsafe import escape

    return (f"<p>{escape(text)}</p><p style=\"font-size:28px;letter-spacing:6px;font-weight:bold\">"
            f"{escape(code)}</p>")

"""A visitor's own data and rights from the portal's "my data" page: see it, take it away (export),
withdraw a consent, object or ask for a restriction, erase. Mixed into portal/visitors.py's Visitors,
whose keys, gateway, settings and online index these use."""
from __future__ import annotations

import datetime

from portal import consent, privacy
from portal.contacts import KINDS, verified_kinds
from portal.db import database
from portal.identity import mask_email, mask_phone
from portal.models import AuditLog, Authorization, ContactClaim, Device, Lead, Visit, utcnow
from portal.policy_texts import REQUIRED_PURPOSE
from portal.core.purposes import OPTIONAL_PURPOSES
from portal.privacy import erase_person
from portal.visitor_types import Client, ConsentLine, MyData, Outcome


class VisitorRights:
    def _own_only(self, lead: Lead, device: Device) -> bool:
        """True when everything on the record came from this device: nothing proved, no other device."""
        if verified_kinds(lead):
            return False
        return not Device.select().where((Device.lead == lead) & (Device.id != device.id)).exists()

    def my_data(self, client: Client, proven: set[str] | frozenset[str] = frozenset(),
                typed: list[str] | tuple[str, ...] = ()) -> MyData | None:
        """What the portal shows a device of itself. The record's details (name, masked contacts,
        consent history) only to a session that proved control of its email or phone, or when
        the whole record is this device's own submission; otherwise the consents this device gave."""
        device = Device.get_or_none(Device.mac == client.mac) if client.mac else None
        if device is None:
            return None
        lead = device.lead if device.lead_id and device.lead.erased_at is None else None
        is_proven = lead is not None and lead.uid in proven
        show_record = lead is not None and (is_proven or self._own_only(lead, device))
        rows = consent.history(lead) if lead else []
        if not show_record:
            rows = [c for c in rows if c.device_mac == device.mac]
        lines = [ConsentLine(c.purpose, c.granted, c.created_at, c.method) for c in rows]
        current: dict[str, ConsentLine | None] = {}
        for line in lines:
            current[line.purpose] = line
        email = self.vault.decrypt(lead.email_enc, "lead.email") if show_record else None
        phone = self.vault.decrypt(lead.phone_enc, "lead.phone") if show_record else None
        name = self.vault.decrypt(lead.name_enc, "lead.name") if show_record else None
        verified = verified_kinds(lead) if lead else set()
        # Masked: whoever holds (or spoofs) this MAC must not read a full address off the page.
        return MyData(
            mac=device.mac, first_seen=device.first_seen, visits=device.visits.count(),
            proven=is_proven, own_only=lead is not None and not show_record,
            email_verified="email" in verified, phone_verified="phone" in verified,
            email=mask_email(email) if email else None, phone=mask_phone(phone) if phone else None,
            claimed=self._typed_claims(device.mac, typed, lead if show_record else None),
            name=(name[:1] + "***") if name else None, language=lead.language if lead else None,
            current={p: current.get(p) for p in (REQUIRED_PURPOSE, *OPTIONAL_PURPOSES)},
            history=lines, online_until=self.online_until(client.ip))

    def _typed_claims(self, mac: str, uids, shown: Lead | None) -> list[str]:
        """Masked contacts typed in this browser session (`uids`) that wait for a code, whoever holds
        them, so the page reads the same whether an address is a customer's or not; those the
        record shows, once. Another session on the same MAC sees none of them."""
        since = utcnow() - datetime.timedelta(days=1)
        out: list[str] = []
        if not uids:
            return out
        for row in (ContactClaim.select().where((ContactClaim.device_mac == mac) & ContactClaim.typed
                                                & ContactClaim.uid.in_([str(u) for u in uids][:8])
                                                & ContactClaim.verified_at.is_null() & (ContactClaim.created_at > since))
                    .order_by(ContactClaim.id)):
            if shown is not None and getattr(shown, f"{row.kind}_index") == row.destination_index:
                continue
            value = self.vault.decrypt(row.destination_enc, f"claim.{row.kind}") or ""
            masked = mask_email(value) if row.kind == "email" else mask_phone(value)
            if masked not in out:
                out.append(masked)
        return out

    def record_kinds(self, client: Client) -> list[str]:
        """The kinds of contact the device's record holds (what a proof code can go to)."""
        lead = self._lead_of(client)
        return [k for k in KINDS if lead is not None and getattr(lead, f"{k}_enc") is not None]

    def export(self, client: Client, proven: set[str] | frozenset[str]) -> dict | None:
        """Everything kept of the person, for a session that proved control of their contact."""
        lead = self._lead_of(client)
        if lead is None or lead.uid not in proven:
            return None
        devices = list(Device.select().where(Device.lead == lead))
        return {
            "store": self.settings.store_name, "exported_at": utcnow().isoformat() + "Z",
            "person": {"email": self.vault.decrypt(lead.email_enc, "lead.email"),
                       "email_verified": lead.email_verified_at is not None,
                       "phone": self.vault.decrypt(lead.phone_enc, "lead.phone"),
                       "phone_verified": lead.phone_verified_at is not None,
                       "name": self.vault.decrypt(lead.name_enc, "lead.name"), "language": lead.language,
                       "first_seen": lead.created_at.isoformat() + "Z"},
            "devices": [{"mac": d.mac, "first_seen": d.first_seen.isoformat() + "Z",
                         "visits": [{"start": v.start.isoformat() + "Z", "end": v.end.isoformat() + "Z"}
                                    for v in d.visits.order_by(Visit.start)]} for d in devices],
            "consents": [{"purpose": c.purpose, "granted": c.granted, "at": c.created_at.isoformat() + "Z",
                          "method": c.method, "text_sha256": c.policy_sha256} for c in consent.history(lead)],
            "proofs": [{"kind": p.kind, "channel": p.channel, "destination": p.destination_masked,
                        "at": p.verified_at.isoformat() + "Z"} for p in lead.proofs],
        }

    def withdraw(self, client: Client, purpose: str) -> Outcome:
        if purpose not in OPTIONAL_PURPOSES:
            return Outcome(False, {"form": "purpose_unknown"})
        lead = self._lead_of(client)
        if lead is None:
            return Outcome(False, {"form": "not_recognised"})
        with database.atomic():
            if purpose in consent.granted_purposes(lead):
                consent.record(lead, purpose, False,
                               consent.Where(self.settings.store_id, client.mac, client.ip, "portal_my_data"))
                AuditLog.record("visitor", "consent_withdrawn", lead.uid, client.ip, purpose=purpose)
        return Outcome(True)

    def object_or_restrict(self, client: Client, kind: str, grounds: str,
                           proven: set[str] | frozenset[str] = frozenset()) -> Outcome:
        """An objection or a restriction request of the person behind this device (portal/privacy.py
        request_from_portal): only with the proof erasing needs (a code this session, or a record all
        this device's own). `scope` says "restricted" when it took effect at once, else "requested"."""
        device = Device.get_or_none(Device.mac == client.mac) if client.mac else None
        lead = device.lead if device is not None and device.lead_id and device.lead.erased_at is None else None
        if lead is None:
            return Outcome(False, {"form": "not_recognised"})
        proof = "code" if lead.uid in proven else "own_record" if self._own_only(lead, device) else None
        if proof is None:
            return Outcome(False, {"form": "prove_first"})
        try:
            request = privacy.request_from_portal(lead, kind, grounds, proof, privacy.rules_from(self.settings), self.vault)
        except privacy.DeskError as exc:
            return Outcome(False, {"form": "kind_unknown" if exc.code == "kind_unknown" else "prove_first"})
        return Outcome(True, scope="restricted" if request.status == "done" else "requested")

    def erase(self, client: Client, proven: set[str] | frozenset[str] = frozenset()) -> Outcome:
        """Erase the person behind this device, and the device: appliance, gateway, then central.
        The person only with proof in this session (or when the record is all this device's own
        submission); otherwise the device and what it alone brought."""
        device = Device.get_or_none(Device.mac == client.mac) if client.mac else None
        if device is None:
            return Outcome(False, {"form": "not_recognised"})
        lead = device.lead if device.lead_id and device.lead.erased_at is None else None
        if lead is not None and lead.uid not in proven and not self._own_only(lead, device):
            erase_person(None, [device], self.gateway, self.settings.store_id, "visitor")
            self.online.forget(client.ip)
            return Outcome(True, scope="device")
        ips = {a.ip for a in Authorization.select(Authorization.ip).join(Device).where(
            (Device.id == device.id) | ((Device.lead == lead) if lead else (Device.id == device.id)))}
        erase_person(lead, [device], self.gateway, self.settings.store_id, "visitor")
        self.online.forget(client.ip, *ips)
        return Outcome(True)

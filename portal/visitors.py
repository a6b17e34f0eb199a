"""The visitor journey as domain functions: sign in, welcome back, see, withdraw, erase."""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import uuid
from dataclasses import dataclass, field

from portal import consent
from peewee import OperationalError

from portal.db import checkpoint, database, is_storage_fault
from portal.gateway import Gateway, GatewayError, Grant
from portal.identity import (InvalidContact, Vault, clean_name, mask_email, mask_phone, normalize_email,
                             normalize_phone)
from portal.privacy import erase_person
from portal.core.macs import randomized as _randomized
from portal.online import OnlineIndex
from portal.journal import Journal
from portal.models import Authorization, AuditLog, Consent, Device, Lead, OutboxEvent, PolicyVersion, new_uid, utcnow
from portal.policy_texts import MARKETING_PURPOSES, REQUIRED_PURPOSE

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Client:
    """The device asking, as the gateway sees it."""
    ip: str
    mac: str | None


@dataclass(frozen=True)
class SignInForm:
    email: str = ""
    phone: str = ""
    name: str = ""
    language: str = "vi"
    terms: bool = False
    marketing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """What happened: ok, or the message codes per field (never raw exception text)."""
    ok: bool
    errors: dict[str, str] = field(default_factory=dict)
    online_until: datetime.datetime | None = None
    stored: str = "database"  # or "journal" (the database was full), or "not_kept" (so was the journal)


@dataclass(frozen=True)
class ConsentLine:
    purpose: str
    granted: bool
    at: datetime.datetime
    method: str


@dataclass(frozen=True)
class MyData:
    mac: str
    first_seen: datetime.datetime | None
    visits: int
    email: str | None
    phone: str | None
    name: str | None
    language: str | None
    current: dict[str, ConsentLine | None]
    history: list[ConsentLine]
    online_until: datetime.datetime | None


class Visitors:
    """The visitor side of the portal, bound to one store's keys, gateway and settings."""

    def __init__(self, vault: Vault, gateway: Gateway, settings, journal: Journal | None = None) -> None:
        self.vault = vault
        self.gateway = gateway
        self.settings = settings
        self.journal = journal
        self.online = OnlineIndex()
        self._replaying = threading.Lock()

    # -- look-ups -----------------------------------------------------------------------------

    # Pages and the API ask this; the probe path asks self.online (in memory). A constant
    # statement: no query building.
    _ONLINE_SQL = ('SELECT expires_at FROM "authorization" WHERE ip = ? AND revoked_at IS NULL '
                   'AND expires_at > ? ORDER BY expires_at DESC LIMIT 1')

    def online_until(self, ip: str) -> datetime.datetime | None:
        """Expiry of the live authorization of this IP, or None."""
        now = Authorization.expires_at.db_value(utcnow())
        row = database.execute_sql(self._ONLINE_SQL, (ip, now)).fetchone()
        return Authorization.expires_at.python_value(row[0]) if row else self.online.held(ip)

    def _lead_of(self, client: Client) -> Lead | None:
        if not client.mac:
            return None
        return (Lead.select().join(Device, on=(Device.lead == Lead.id))
                .where((Device.mac == client.mac) & Lead.erased_at.is_null()).first())

    def recognised(self, client: Client) -> Lead | None:
        """The lead of a returning device whose terms consent is still current, else None."""
        lead = self._lead_of(client)
        return lead if lead is not None and consent.has_current_terms(lead) else None

    def greeting_name(self, lead: Lead) -> str | None:
        return self.vault.decrypt(lead.name_enc, "lead.name")

    # -- sign in ------------------------------------------------------------------------------

    def validate(self, form: SignInForm) -> tuple[dict[str, str], dict[str, str]]:
        """Normalized values and per-field error codes."""
        errors: dict[str, str] = {}
        values: dict[str, str] = {}
        if not form.email.strip() and not form.phone.strip():
            errors["contact"] = "contact_missing"
        if form.email.strip():
            try:
                values["email"] = normalize_email(form.email)
            except InvalidContact as exc:
                errors["email"] = exc.code
        if form.phone.strip():
            try:
                values["phone"] = normalize_phone(form.phone, self.settings.default_region)
            except InvalidContact as exc:
                errors["phone"] = exc.code
        try:
            values["name"] = clean_name(form.name)
        except InvalidContact as exc:
            errors["name"] = exc.code
        if not form.terms:
            errors["terms"] = "terms_required"
        unknown = form.marketing - set(MARKETING_PURPOSES)
        if unknown:
            errors["marketing"] = "purpose_unknown"
        if "marketing_email" in form.marketing and not form.email.strip():
            errors.setdefault("email", "email_needed_for_marketing")
        if "marketing_sms" in form.marketing and not form.phone.strip():
            errors.setdefault("phone", "phone_needed_for_marketing")
        return values, errors

    def sign_in(self, form: SignInForm, client: Client) -> Outcome:
        values, errors = self.validate(form)
        if client.mac is None:
            errors["form"] = "device_unknown"
        if errors:
            return Outcome(False, errors)
        language = form.language if form.language in consent.LANGUAGES else self.settings.default_language
        purposes = [REQUIRED_PURPOSE, *sorted(form.marketing)]
        # Everything the database needs, fixed now: replayed from the journal, it keeps its own
        # time, the very texts the visitor was shown, and its uid (a second replay adds nothing).
        claim = {"uid": new_uid(), "at": utcnow().isoformat(), "values": values, "language": language,
                 "mac": client.mac, "ip": client.ip,
                 "policies": {p: getattr(consent.current(p, language), "id", None) for p in purposes}}
        try:
            auth = self._store_sign_in_or_checkpoint(claim)
        except OperationalError as exc:
            if not is_storage_fault(exc):
                raise
            return self._sign_in_unstored(claim, client, exc)
        if self.journal is not None and len(self.journal):
            self.replay_journal()
        return self._apply(auth)

    def _store_sign_in_or_checkpoint(self, claim: dict, replay: bool = False) -> Authorization | None:
        """Store; on a full disk, cut the WAL back once (its pages are often the space) and retry."""
        try:
            return self._store_sign_in(claim, replay)
        except OperationalError as exc:
            if not is_storage_fault(exc):
                raise
            checkpoint()
            return self._store_sign_in(claim, replay)

    def _store_sign_in(self, claim: dict, replay: bool = False) -> Authorization | None:
        """The sign-in's records in one transaction; None when a journal replay finds it stored."""
        at = datetime.datetime.fromisoformat(claim["at"])
        client = Client(claim["ip"], claim["mac"])
        where = consent.Where(self.settings.store_id, client.mac, client.ip, "portal_form")
        uids = {p: uuid.uuid5(uuid.NAMESPACE_URL, f"footfall:{claim['uid']}:{p}").hex for p in claim["policies"]}
        with database.atomic():
            if replay and Consent.select().where(Consent.uid == uids[REQUIRED_PURPOSE]).exists():
                return None  # a replay whose first run committed before its slot was released
            lead = self._upsert_lead(claim["values"], claim["language"])
            device = self._link_device(client, lead)
            for purpose, policy_id in claim["policies"].items():
                consent.record(lead, purpose, True, where, PolicyVersion.get_or_none(PolicyVersion.id == policy_id),
                               at=at, uid=uids[purpose])
            auth = self._authorize_record(device, lead, client, "form", at)
            AuditLog.record("visitor", "sign_in", lead.uid, client.ip, purposes=list(claim["policies"]))
        return auth

    def _sign_in_unstored(self, claim: dict, client: Client, exc: Exception) -> Outcome:
        """The database cannot take the sign-in (a full card): the visitor gets online all the same
        (getting online never depended on what we store), and the sign-in waits in the journal."""
        kept = self.journal is not None and self.journal.append(claim)
        logger.error("database cannot store a sign-in (%s): %s", exc, "kept in the journal" if kept else
                     "journal full or unavailable, details not kept")
        until = datetime.datetime.fromisoformat(claim["at"]) + datetime.timedelta(seconds=self.settings.session_seconds)
        try:
            self.gateway.authorize(Grant(client.mac, client.ip, until))
        except GatewayError:
            logger.exception("gateway refused an unstored authorization")
            return Outcome(False, {"form": "gateway_failed"})
        self.online.hold(client.ip, until)
        return Outcome(True, online_until=until, stored="journal" if kept else "not_kept")

    def replay_journal(self) -> int:
        """Move sign-ins kept in the journal into the database, oldest first; stops at a full disk."""
        if self.journal is None or not self._replaying.acquire(blocking=False):
            return 0
        done = 0
        try:
            for slot, claim in self.journal.pending():
                try:
                    auth = self._store_sign_in_or_checkpoint(claim, replay=True)
                except OperationalError as exc:
                    if is_storage_fault(exc):
                        logger.error("journal replay stopped: %s", exc)
                        break
                    raise
                self.journal.release(slot)
                # Space is short: copy each replayed sign-in out of the WAL before the next one,
                # or the WAL grows into the room the database itself needs to take them.
                with contextlib.suppress(OperationalError):
                    checkpoint()
                if auth is not None:
                    self.online.note(auth.ip, auth.expires_at)
                done += 1
        finally:
            self._replaying.release()
        if done:
            logger.warning("replayed %d sign-ins from the journal into the database", done)
        return done

    def reconnect(self, client: Client) -> Outcome:
        """The one-tap welcome back: a new session on the consent already given."""
        lead = self.recognised(client)
        if lead is None:
            return Outcome(False, {"form": "not_recognised"})
        with database.atomic():
            device = self._link_device(client, lead)
            auth = self._authorize_record(device, lead, client, "welcome_back")
            AuditLog.record("visitor", "welcome_back", lead.uid, client.ip)
        return self._apply(auth)

    def _upsert_lead(self, values: dict[str, str], language: str) -> Lead:
        email, phone, name = values.get("email"), values.get("phone"), values.get("name")
        email_ix = self.vault.blind_index("email", email) if email else None
        phone_ix = self.vault.blind_index("phone", phone) if phone else None
        by_email = Lead.get_or_none(Lead.email_index == email_ix) if email_ix else None
        by_phone = Lead.get_or_none(Lead.phone_index == phone_ix) if phone_ix else None
        lead = by_email or by_phone or Lead(language=language)
        if email_ix and lead.email_index != email_ix:
            lead.email_index, lead.email_enc = email_ix, self.vault.encrypt(email, "lead.email")
        # A phone already held by another person's lead stays theirs: never merge on one form.
        if phone_ix and lead.phone_index != phone_ix and (by_phone is None or by_phone.id == lead.id):
            lead.phone_index, lead.phone_enc = phone_ix, self.vault.encrypt(phone, "lead.phone")
        if name:
            lead.name_enc = self.vault.encrypt(name, "lead.name")
        lead.language = language
        lead.updated_at = utcnow()
        lead.save()
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
        return lead

    def _link_device(self, client: Client, lead: Lead) -> Device:
        now = utcnow()
        device, created = Device.get_or_create(mac=client.mac, defaults={"last_ip": client.ip, "lead": lead,
                                                                         "randomized": _randomized(client.mac)})
        if not created:
            device.last_ip, device.last_seen = client.ip, now
            if device.lead_id != lead.id:
                device.lead = lead
            device.save()
        OutboxEvent.emit("device.linked", device=device.mac, lead=lead.uid)
        return device

    def _authorize_record(self, device: Device, lead: Lead, client: Client, method: str,
                          now: datetime.datetime | None = None) -> Authorization:
        now = now or utcnow()
        return Authorization.create(device=device, lead=lead, ip=client.ip, started_at=now, method=method,
                                    expires_at=now + datetime.timedelta(seconds=self.settings.session_seconds))

    def _apply(self, auth: Authorization) -> Outcome:
        try:
            self.gateway.authorize(Grant(auth.device.mac, auth.ip, auth.expires_at))
        except GatewayError:
            logger.exception("gateway refused authorization %s", auth.id)
            Authorization.update(revoked_at=utcnow()).where(Authorization.id == auth.id).execute()
            return Outcome(False, {"form": "gateway_failed"})
        self.online.note(auth.ip, auth.expires_at)
        return Outcome(True, online_until=auth.expires_at)

    # -- the visitor's own data ---------------------------------------------------------------

    def my_data(self, client: Client) -> MyData | None:
        device = Device.get_or_none(Device.mac == client.mac) if client.mac else None
        if device is None:
            return None
        lead = device.lead if device.lead_id and device.lead.erased_at is None else None
        lines = [ConsentLine(c.purpose, c.granted, c.created_at, c.method) for c in consent.history(lead)] if lead else []
        current: dict[str, ConsentLine | None] = {}
        for line in lines:
            current[line.purpose] = line
        email = self.vault.decrypt(lead.email_enc, "lead.email") if lead else None
        phone = self.vault.decrypt(lead.phone_enc, "lead.phone") if lead else None
        name = self.vault.decrypt(lead.name_enc, "lead.name") if lead else None
        # Masked: whoever holds (or spoofs) this MAC must not read a full address off the page.
        return MyData(
            mac=device.mac, first_seen=device.first_seen, visits=device.visits.count(),
            email=mask_email(email) if email else None, phone=mask_phone(phone) if phone else None,
            name=(name[:1] + "***") if name else None, language=lead.language if lead else None,
            current={p: current.get(p) for p in (REQUIRED_PURPOSE, *MARKETING_PURPOSES)},
            history=lines, online_until=self.online_until(client.ip))

    def withdraw(self, client: Client, purpose: str) -> Outcome:
        if purpose not in MARKETING_PURPOSES:
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

    def erase(self, client: Client) -> Outcome:
        """Erase the person behind this device, and the device: appliance, gateway, then central."""
        device = Device.get_or_none(Device.mac == client.mac) if client.mac else None
        if device is None:
            return Outcome(False, {"form": "not_recognised"})
        lead = device.lead if device.lead_id and device.lead.erased_at is None else None
        ips = {a.ip for a in Authorization.select(Authorization.ip).join(Device).where(
            (Device.id == device.id) | ((Device.lead == lead) if lead else (Device.id == device.id)))}
        erase_person(lead, [device], self.gateway, self.settings.store_id, "visitor")
        self.online.forget(client.ip, *ips)
        return Outcome(True)

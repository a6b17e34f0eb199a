"""The visitor journey as domain functions: sign in, welcome back, see, withdraw, erase."""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import uuid

from portal import consent, name_index
from peewee import OperationalError

from portal.db import checkpoint, database, is_storage_fault
from portal.gateway import Gateway, GatewayError, Grant
from portal.identity import InvalidContact, Vault, clean_name, normalize_email, normalize_phone
from portal.core.macs import randomized as _randomized
from portal.online import OnlineIndex
from portal.journal import Journal
from portal.contacts import KINDS, Contacts, Pending, channels, verified_kinds
from portal.models import Authorization, AuditLog, Consent, Device, Lead, OutboxEvent, PolicyVersion, new_uid, utcnow
from portal.verification import VerificationError
from portal.policy_texts import MARKETING_PURPOSES, REQUIRED_PURPOSE
from portal.core.purposes import ANALYTICS_PURPOSES
from portal.visitor_rights import VisitorRights
from portal.visitor_types import Client, Outcome, SignInForm

logger = logging.getLogger(__name__)



class Visitors(VisitorRights):
    """The visitor side of the portal, bound to one store's keys, gateway and settings; what a visitor
    may see and ask of their own data is in portal/visitor_rights.py."""

    def __init__(self, vault: Vault, gateway: Gateway, settings, journal: Journal | None = None,
                 contacts: Contacts | None = None) -> None:
        self.vault = vault
        self.gateway = gateway
        self.settings = settings
        self.journal = journal
        self.contacts = contacts or Contacts(vault, None, settings)
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
        """The lead of a returning device whose terms consent is still current, else None. A store
        that verifies before letting online recognises only devices of a verified record."""
        lead = self._lead_of(client)
        if lead is None or not consent.has_current_terms(lead) or consent.stale_purposes(lead):
            return None  # a text it agreed to changed materially: asked again on the form
        if self.settings.verify_when == "before" and not verified_kinds(lead):
            return None
        return lead

    def asked_again(self, client: Client) -> bool:
        """Whether this returning device's person agreed to a text since changed materially."""
        lead = self._lead_of(client)
        return lead is not None and bool(consent.stale_purposes(lead))

    def greeting_name(self, lead: Lead, proven: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The name to greet by: only to a session that proved control of this record's contact."""
        return self.vault.decrypt(lead.name_enc, "lead.name") if lead.uid in proven else None

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
        unknown = (form.marketing - set(MARKETING_PURPOSES)) | (form.analytics - set(ANALYTICS_PURPOSES))
        if unknown:
            errors["marketing"] = "purpose_unknown"
        if form.optional and self.settings.min_age and not form.adult:
            errors["age"] = "age_required"  # no optional purpose below the age; getting online needs none
        if "marketing_email" in form.marketing and not form.email.strip():
            errors.setdefault("email", "email_needed_for_marketing")
        if "marketing_sms" in form.marketing and not form.phone.strip():
            errors.setdefault("phone", "phone_needed_for_marketing")
        return values, errors

    def sign_in(self, form: SignInForm, client: Client, proven: set[str] | frozenset[str] = frozenset()) -> Outcome:
        """`proven`: records this browser session proved a contact of (the device's link to a
        proven person is no proof: a form from it without one starts a record of its own)."""
        values, errors = self.validate(form)
        if client.mac is None:
            errors["form"] = "device_unknown"
        if errors:
            return Outcome(False, errors)
        language = form.language if form.language in consent.LANGUAGES else self.settings.default_language
        purposes = [REQUIRED_PURPOSE, *sorted(form.optional)]
        # Everything the database needs, fixed now: replayed from the journal, it keeps its own
        # time, the very texts the visitor was shown, and its uid (a second replay adds nothing).
        claim = {"uid": new_uid(), "at": utcnow().isoformat(), "values": values, "language": language,
                 "age": self.settings.min_age if form.adult and form.optional else 0,
                 "mac": client.mac, "ip": client.ip, "proven": sorted(proven),
                 "policies": {p: getattr(consent.current(p, language), "id", None) for p in purposes}}
        try:
            stored = self._store_sign_in_or_checkpoint(claim)
        except OperationalError as exc:
            if not is_storage_fault(exc):
                raise
            return self._sign_in_unstored(claim, client, exc)
        if self.journal is not None and len(self.journal):
            self.replay_journal()
        auth, lead, claims, verify_first = stored
        sent, send_error = self._send_first(claims)
        if verify_first and sent is not None and sent.channel != "sms" and not self._had_window(client.mac):
            # An email or Zalo code needs the internet to arrive: a short window, once a day per
            # device and only when a code did go (re-submitting the form opens no new one).
            with database.atomic():
                device = Device.get(Device.mac == client.mac)
                auth = self._authorize_record(device, lead, client, "preverify", seconds=self.settings.preverify_seconds)
        outcome = self._apply(auth) if auth is not None else Outcome(True)
        if not outcome.ok:
            return outcome
        return Outcome(True, online_until=outcome.online_until, lead=lead.uid, claims=tuple(c.uid for c in claims),
                       sent=sent, send_error=send_error, verify_first=verify_first)

    def _had_window(self, mac: str | None) -> bool:
        since = utcnow() - datetime.timedelta(days=1)
        return (Authorization.select().join(Device).where(
            (Device.mac == mac) & (Authorization.method == "preverify") & (Authorization.started_at > since)).exists())

    def _send_first(self, claims: list) -> tuple[Pending | None, str | None]:
        """A code for one claim (a phone first: Vietnamese guests read SMS and Zalo); the others
        wait for the visitor to ask. Never raises: a limit or a missing channel is said on the page."""
        error = None
        for row in sorted(claims, key=lambda c: c.kind != "phone"):
            if not channels(self.settings, row.kind):
                continue  # the store sends nothing that way: nothing to say about it
            try:
                return self.contacts.send(row), None
            except VerificationError as exc:
                error = error or exc.code
        return None, error

    def _store_sign_in_or_checkpoint(self, claim: dict, replay: bool = False):
        """Store; on a full disk, cut the WAL back once (its pages are often the space) and retry."""
        try:
            return self._store_sign_in(claim, replay)
        except OperationalError as exc:
            if not is_storage_fault(exc):
                raise
            checkpoint()
            return self._store_sign_in(claim, replay)

    def _store_sign_in(self, claim: dict, replay: bool = False):
        """The sign-in's records in one transaction: (authorization or None, lead, claims, verify
        first); None when a journal replay finds it stored."""
        at = datetime.datetime.fromisoformat(claim["at"])
        client = Client(claim["ip"], claim["mac"])
        where = consent.Where(self.settings.store_id, client.mac, client.ip, "portal_form")
        uids = {p: uuid.uuid5(uuid.NAMESPACE_URL, f"footfall:{claim['uid']}:{p}").hex for p in claim["policies"]}
        with database.atomic():
            if replay and Consent.select().where(Consent.uid == uids[REQUIRED_PURPOSE]).exists():
                return None  # a replay whose first run committed before its slot was released
            lead, named = self._claim_lead(client, claim["values"], claim["language"], set(claim.get("proven", ())))
            device = self._link_device(client, lead)
            for purpose, policy_id in claim["policies"].items():
                consent.record(lead, purpose, True, where, PolicyVersion.get_or_none(PolicyVersion.id == policy_id),
                               at=at, uid=uids[purpose])
            claims = [] if replay else [self.contacts.claim(lead, kind, value, client.mac, client.ip, claim["language"])
                                        for kind, value in named]
            seconds, method = self._first_session(claims)
            auth = self._authorize_record(device, lead, client, method, at, seconds) if seconds else None
            AuditLog.record("visitor", "sign_in", lead.uid, client.ip, purposes=list(claim["policies"]),
                            **({"age_confirmed": claim["age"]} if claim.get("age") else {}))
        return auth, lead, claims, method != "form"

    def _first_session(self, claims: list) -> tuple[int, str]:
        """(seconds online now, method): the whole session, or with verify_when = before nothing
        until the code (an SMS needs no internet) or a short window to fetch an email or Zalo code."""
        if self.settings.verify_when != "before":
            return self.settings.session_seconds, "form"
        if any(channels(self.settings, row.kind) for row in claims):
            return 0, "verify_first"  # offline until the code; a window opens once an email/Zalo code is sent
        return self.settings.session_seconds, "form"  # nothing to verify, or no channel to carry a code

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
                    stored = self._store_sign_in_or_checkpoint(claim, replay=True)
                    auth = stored[0] if stored else None
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

    def just_connect(self, client: Client, terms: bool, language: str) -> Outcome:
        """Online on the WiFi terms alone (setting `just_connect`): no lead, no contact, no optional
        purpose. What is written is what the gateway needs: the device and its authorization; the
        acceptance of the terms version shown is in the audit log (it has no person to hang on)."""
        if not self.settings.just_connect:
            return Outcome(False, {"form": "just_connect_off"})
        if not terms:
            return Outcome(False, {"terms": "terms_required"})
        if client.mac is None:
            return Outcome(False, {"form": "device_unknown"})
        with database.atomic():
            device, created = Device.get_or_create(mac=client.mac, defaults={"last_ip": client.ip,
                                                                             "randomized": _randomized(client.mac)})
            if not created:
                device.last_ip, device.last_seen = client.ip, utcnow()
                device.save()
            auth = Authorization.create(device=device, lead=None, ip=client.ip, started_at=utcnow(), method="just_connect",
                                        expires_at=utcnow() + datetime.timedelta(seconds=self.settings.session_seconds))
            language = language if language in consent.LANGUAGES else self.settings.default_language
            shown = consent.current(REQUIRED_PURPOSE, language)
            AuditLog.record("visitor", "just_connect", None, client.ip, language=language,
                            terms_sha256=shown.sha256 if shown else None)
        return self._apply(auth)

    # -- proving a contact -----------------------------------------------------------------------

    def send_code(self, claim_uid: str, client: Client, channel: str | None = None) -> Pending:
        """(Re)send a code for one of this device's open claims; VerificationError says why not."""
        row = self.contacts.pending(claim_uid, client.mac)
        if row is None:
            raise VerificationError("not_found")
        return self.contacts.send(row, channel)

    def claim_from_record(self, client: Client, kind: str) -> str:
        """A claim on the device's own record's contact (to prove it from "my data"): its uid."""
        lead = self._lead_of(client)
        if lead is None or kind not in KINDS or getattr(lead, f"{kind}_enc") is None:
            raise VerificationError("not_found")
        value = self.vault.decrypt(getattr(lead, f"{kind}_enc"), f"lead.{kind}") or ""
        with database.atomic():
            row = self.contacts.claim(lead, kind, value, client.mac, client.ip, lead.language, typed=False)
        return row.uid

    def verify(self, claim_uid: str, code: str, client: Client) -> tuple[Lead, Outcome]:
        """Check a code for this device's claim; the record it proved and, when the device waits
        offline for it (verify_when = before), the session that follows."""
        lead = self.contacts.confirm(claim_uid, code, client.mac, client.ip)
        if self.online_until(client.ip) is not None and not self._waiting_window(client):
            return lead, Outcome(True, online_until=self.online_until(client.ip), lead=lead.uid)
        with database.atomic():
            device = self._link_device(client, lead)
            auth = self._authorize_record(device, lead, client, "verified")
        return lead, self._apply(auth)

    def _waiting_window(self, client: Client) -> bool:
        """True while the device is online only for the short window to fetch its code."""
        row = (Authorization.select(Authorization.method).where(
            (Authorization.ip == client.ip) & Authorization.revoked_at.is_null() & (Authorization.expires_at > utcnow()))
            .order_by(Authorization.expires_at.desc()).first())
        return row is not None and row.method == "preverify"

    def _claim_lead(self, client: Client, values: dict[str, str], language: str,
                    proven: set[str]) -> tuple[Lead, list[tuple[str, str]]]:
        """The record this device's form goes to, and the contacts it names that wait for proof.

        A form is a claim: it never changes or joins another person's record. The device's own
        record (or a new one) takes what nobody holds; a contact another record holds waits for
        its code (portal/contacts.py), as does any contact not verified yet."""
        lead = self._lead_of(client)
        if lead is not None and verified_kinds(lead) and lead.uid not in proven:
            # A MAC is easily copied: a device linked to a proven person speaks for that person
            # only with a proof in this session. Otherwise its form starts a record of its own
            # (the device moves to it; a code for the person's contact brings it back).
            lead = None
        lead = lead or Lead(language=language)
        verified = verified_kinds(lead) if lead.id else set()
        named: list[tuple[str, str]] = []
        for kind in KINDS:
            value = values.get(kind)
            if not value:
                continue
            index = self.vault.blind_index(kind, value)
            if getattr(lead, f"{kind}_index") == index:
                if kind not in verified:
                    named.append((kind, value))
                continue
            holder = Lead.get_or_none(getattr(Lead, f"{kind}_index") == index)
            if holder is None and kind not in verified:
                setattr(lead, f"{kind}_index", index)
                setattr(lead, f"{kind}_enc", self.vault.encrypt(value, f"lead.{kind}"))
            named.append((kind, value))
        if values.get("name") and not verified:  # a proven person's name changes only with proof
            lead.name_enc = self.vault.encrypt(values["name"], "lead.name")
        lead.language = language
        lead.updated_at = utcnow()
        lead.save()
        if values.get("name") and not verified:
            name_index.index(lead.id, values["name"], self.vault)
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
        return lead, named

    def _link_device(self, client: Client, lead: Lead) -> Device:
        now = utcnow()
        device, created = Device.get_or_create(mac=client.mac, defaults={"last_ip": client.ip, "lead": lead,
                                                                         "randomized": _randomized(client.mac)})
        if not created:
            device.last_ip, device.last_seen = client.ip, now
            if device.lead_id != lead.id:
                device.lead = lead
            device.save()
        # The central store needs a device's MAC only to count a followed person's visits there:
        # no MAC of a person who did not agree to visit analytics leaves the store (consent.record
        # sends the links when they agree).
        if lead.id is not None and consent.follows(lead.id):
            OutboxEvent.emit("device.linked", device=device.mac, lead=lead.uid)
        return device

    def _authorize_record(self, device: Device, lead: Lead, client: Client, method: str,
                          now: datetime.datetime | None = None, seconds: int | None = None) -> Authorization:
        now = now or utcnow()
        seconds = seconds or self.settings.session_seconds
        return Authorization.create(device=device, lead=lead, ip=client.ip, started_at=now, method=method,
                                    expires_at=now + datetime.timedelta(seconds=seconds))

    def _apply(self, auth: Authorization) -> Outcome:
        try:
            self.gateway.authorize(Grant(auth.device.mac, auth.ip, auth.expires_at))
        except GatewayError:
            logger.exception("gateway refused authorization %s", auth.id)
            Authorization.update(revoked_at=utcnow()).where(Authorization.id == auth.id).execute()
            return Outcome(False, {"form": "gateway_failed"})
        self.online.note(auth.ip, auth.expires_at)
        return Outcome(True, online_until=auth.expires_at)

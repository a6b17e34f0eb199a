"""The owner's compliance pack (issue 15): the register of transfers abroad, the breach register
with its 72-hour clock, and the impact-assessment dossier generated from the settings and the
texts in force. The record of processing is portal/privacy_record.py.

Meta Custom Audience and Google Customer Match files go to platforms abroad: their export is
refused until the owner records a transfer impact assessment for that platform (`transfer_in_force`).
"""
from __future__ import annotations

import datetime
import hashlib

from portal.core import deadlines
from portal.core.purposes import LANGUAGES, MARKETING_PURPOSES
from portal.db import database
from portal.identity import Vault
from portal.models import AuditLog, Breach, DataRequest, Lead, TransferAssessment, utcnow
from portal.policy_texts import DOCUMENTS

# Where data may go abroad; an export to an ad platform needs its platform's assessment.
PLATFORMS = {"meta": ("Meta Platforms, Inc.", "United States"), "google": ("Google LLC", "United States"),
             "central": ("The chain's central store", ""), "other": ("", "")}
EXPORT_PLATFORMS = ("meta", "google")


class ComplianceError(ValueError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _text(value: str, limit: int, code: str, required: bool = True) -> str:
    value = " ".join((value or "").split())
    if required and not value:
        raise ComplianceError(code)
    if len(value) > limit:
        raise ComplianceError(f"{code}_long")
    return value


def _date(value: str, code: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat((value or "").strip())
    except ValueError:
        raise ComplianceError(code) from None


# -- transfers abroad -------------------------------------------------------------------------------

def record_transfer(platform: str, recipient: str, country: str, assessed_on: str, reference: str, actor: str,
                    today: datetime.date | None = None) -> TransferAssessment:
    if platform not in PLATFORMS:
        raise ComplianceError("platform_unknown")
    default_recipient, default_country = PLATFORMS[platform]
    recipient = _text(recipient or default_recipient, 120, "recipient")
    country = _text(country or default_country, 60, "country")
    day = _date(assessed_on, "assessed_on")
    if day > (today or utcnow().date()):
        raise ComplianceError("assessed_on_future")
    reference = _text(reference, 200, "reference", required=False)
    with database.atomic():
        row = TransferAssessment.create(platform=platform, recipient=recipient, country=country, assessed_on=day,
                                        reference=reference, recorded_by=actor)
        AuditLog.record(actor, "transfer_recorded", platform, recipient=recipient, country=country, assessed_on=day)
    return row


def withdraw_transfer(row_id: int, actor: str) -> None:
    with database.atomic():
        n = (TransferAssessment.update(withdrawn_at=utcnow())
             .where((TransferAssessment.id == row_id) & TransferAssessment.withdrawn_at.is_null()).execute())
        if not n:
            raise ComplianceError("transfer_unknown")
        AuditLog.record(actor, "transfer_withdrawn", str(row_id))


def transfers() -> list[TransferAssessment]:
    return list(TransferAssessment.select().order_by(TransferAssessment.withdrawn_at.is_null(False), TransferAssessment.id.desc()))


def transfer_in_force(platform: str) -> TransferAssessment | None:
    return (TransferAssessment.select().where((TransferAssessment.platform == platform) & TransferAssessment.withdrawn_at.is_null())
            .order_by(TransferAssessment.assessed_on.desc()).first())


# -- breaches ---------------------------------------------------------------------------------------

def record_breach(detected_at: datetime.datetime, description: str, data_kinds: str, people: str, measures: str,
                  actor: str, vault: Vault, now: datetime.datetime | None = None) -> Breach:
    """`detected_at` is naive UTC; the authority must be told within 72 hours of it. The description
    and the measures are stored encrypted."""
    if detected_at > (now or utcnow()) + datetime.timedelta(minutes=5):
        raise ComplianceError("detected_future")
    description = _text(description, 2000, "description")
    count = None
    if (people or "").strip():
        try:
            count = int(people.strip())
        except ValueError:
            raise ComplianceError("people") from None
        if not 0 <= count <= 100_000_000:
            raise ComplianceError("people")
    with database.atomic():
        measures = _text(measures, 2000, "measures", False)
        row = Breach.create(detected_at=detected_at, description="", description_enc=vault.encrypt(description, BREACH_TEXT),
                            data_kinds=_text(data_kinds, 200, "data_kinds", False), people=count, measures="",
                            measures_enc=vault.encrypt(measures, BREACH_MEASURES) if measures else None, recorded_by=actor)
        AuditLog.record(actor, "breach_recorded", str(row.id), detected_at=detected_at)
    return row


def report_breach(row_id: int, reference: str, actor: str, now: datetime.datetime | None = None) -> Breach:
    breach = Breach.get_or_none(Breach.id == row_id)
    if breach is None:
        raise ComplianceError("breach_unknown")
    if breach.reported_at is not None:
        raise ComplianceError("reported_already")
    breach.reported_at, breach.reported_by = now or utcnow(), actor
    breach.report_reference = _text(reference, 200, "reference", required=False)
    with database.atomic():
        breach.save()
        AuditLog.record(actor, "breach_reported", str(row_id), late=breach.reported_at > deadlines.breach_due(breach.detected_at))
    return breach


def breach_state(breach: Breach, now: datetime.datetime) -> dict:
    """The 72-hour clock: when the report is due, hours left (negative: late), and whether it was late."""
    due = deadlines.breach_due(breach.detected_at)
    reported = breach.reported_at
    return {"due": due, "hours_left": round((due - now).total_seconds() / 3600, 1) if reported is None else None,
            "overdue": reported is None and now > due, "late": reported is not None and reported > due}


def breaches() -> list[Breach]:
    return list(Breach.select().order_by(Breach.id.desc()))


BREACH_TEXT, BREACH_MEASURES = "breach.description", "breach.measures"  # the vault's contexts


def breach_texts(breach: Breach, vault: Vault) -> tuple[str, str]:
    """The description and the measures, decrypted (a row not sealed yet: as it was written)."""
    description = vault.decrypt(breach.description_enc, BREACH_TEXT) if breach.description_enc else breach.description
    measures = vault.decrypt(breach.measures_enc, BREACH_MEASURES) if breach.measures_enc else breach.measures
    return description or "", measures or ""


def seal_breaches(vault: Vault) -> int:
    """Encrypt what rows written before migration 0016 hold in plain text; returns how many."""
    sealed = 0
    with database.atomic():
        for row in Breach.select().where((Breach.description != "") | (Breach.measures != "")):
            description, measures = breach_texts(row, vault)
            Breach.update(description="", measures="", description_enc=vault.encrypt(description, BREACH_TEXT),
                          measures_enc=vault.encrypt(measures, BREACH_MEASURES) if measures else None) \
                .where(Breach.id == row.id).execute()
            sealed += 1
    return sealed


# -- the impact-assessment dossier ------------------------------------------------------------------

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dossier(settings, texts: dict[tuple[str, str], str], now: datetime.datetime | None = None) -> str:
    """The personal data processing impact assessment (Law 91/2025; Decree 356/2025), as markdown,
    generated from what this appliance does with its settings and the texts in force. The owner
    signs it and keeps it available to the authority (A05); it is dated so that a changed setting
    calls for a new one."""
    now = now or utcnow()
    controller = settings.controller_name or settings.store_name
    contact = settings.dpo_contact or settings.privacy_contact
    people = Lead.select().where(Lead.erased_at.is_null()).count()
    restricted = Lead.select().where(Lead.erased_at.is_null() & Lead.restricted_at.is_null(False)).count()
    open_requests = DataRequest.select().where(DataRequest.status == "open").count()
    in_force = {p: transfer_in_force(p) for p in PLATFORMS}
    breach_rows = breaches()
    out = [
        "# Personal data processing impact assessment",
        "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC by Footfall from the settings and texts in force. Controller: "
        f"**{controller}** (store `{settings.store_id}`). Data protection contact: {contact}.",
        "",
        "## 1. The processing",
        "",
        "- A free WiFi portal: visitors sign in with an email and/or a phone to get online for "
        f"{settings.session_seconds // 60} minutes; the proof of their acceptance is kept.",
        "- Marketing purposes, each optional and unticked: " + ", ".join(f"`{p}`" for p in MARKETING_PURPOSES)
        + "; a marketing consent counts only for a contact the person proved with a one-time code.",
        "- Presence on the guest network (ARP, DHCP" + (", mDNS" if settings.capture_mdns else "") + ") gives visits, "
        "dwell and segments." + (f" 802.11 probe requests of passers-by are captured on `{settings.probe_interface}`."
                                 if settings.probe_interface else " Over-the-air probe capture is off."),
        f"- People on file now: {people} ({restricted} restricted after an objection or a restriction request).",
        "",
        "## 2. Data and people concerned",
        "",
        "Email, phone, name, language (encrypted, AES-256-GCM); the MAC of a signed-in device (the gateway needs "
        "it); the MAC, vendor, host name and visits of devices only of people who agreed to visit analytics, every "
        "other device under a pseudonym whose key is destroyed after "
        f"{settings.pseudonym_rotation_hours} hours; consent events with the exact text shown. Concerned: the store's guests, among them possibly minors; "
        "no sensitive data is asked for, but a presence log at named stores may reveal habits and whereabouts.",
        "",
        "## 3. Necessity and proportionality",
        "",
        f"- Retention: people and visits {settings.retention_days} days after the last visit (`retention_days`), "
        f"by a daily purge; visits under a pseudonym {settings.anonymous_retention_days} days "
        "(`anonymous_retention_days`).",
        "- Only people whose latest consent to a purpose is a grant are ever exported or messaged; restricted "
        "people never are.",
        "- The panel answers only the management networks; analysts see totals only.",
        "",
        "## 4. Risks and measures",
        "",
        "| risk | measure in force |",
        "|---|---|",
        "| A stolen database reveals contacts | encryption at rest with a key file (0600); blind indexes |",
        "| A staff account is abused | argon2id passwords, two-factor "
        + ("required" if settings.panel_require_2fa else "**not required**")
        + f", lock-out after {settings.login_max_failures} failures, audit log of views and exports |",
        "| A guest reaches another device or the panel | client isolation (nftables gateway), panel fenced to "
        f"`{settings.panel_networks}` |",
        "| Someone acts for a person they are not | the privacy desk records how each requester was verified "
        "(a one-time code to the record's own contact, or a named check) before a request is done |",
        "| Data kept too long | retention purge; requests acknowledged within 2 working days and done within "
        f"{settings.dsr_deadline_days} days ({settings.dsr_processor_days} with a processor) |",
        "| A breach goes unreported | breach register with the 72-hour clock in the panel |",
        "",
        "## 5. Transfers abroad",
        "",
    ]
    for platform, row in in_force.items():
        if row is not None:
            out.append(f"- {platform}: {row.recipient} ({row.country}), assessed on {row.assessed_on}"
                       + (f", {row.reference}" if row.reference else "") + ".")
    if not any(in_force.values()):
        out.append("- None recorded: Meta and Google exports are refused until an assessment is recorded.")
    if settings.central_url:
        out.append(f"- The central store at `{settings.central_url}`: record its transfer assessment if it is hosted abroad.")
    out += [
        "",
        "## 6. Requests and breaches",
        "",
        f"- Open data-subject requests: {open_requests}.",
        f"- Breaches recorded: {len(breach_rows)}; not yet reported to the authority: "
        f"{sum(1 for b in breach_rows if b.reported_at is None)}.",
        "",
        "## 7. Texts in force",
        "",
    ]
    for document in DOCUMENTS:
        for language in LANGUAGES:
            text = texts.get((document, language))
            if text is not None:
                out.append(f"- `{document}` ({language}): sha256 `{_sha(text)[:16]}…`")
    out += ["", "Signed by the controller: ____________________   Date: ____________", ""]
    return "\n".join(out)

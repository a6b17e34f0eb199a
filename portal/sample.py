"""Sample visitors for the demo (`footfall demo --sample`): 30 days of a small store's history.

Everything is marked as sample data so nobody mistakes it for real people: emails end in
@sample.invalid (a domain that can never receive mail, RFC 2606), names start with "Sample",
no phone numbers (a made-up number may be someone's), MACs come from the range RFC 7042 keeps
for documentation (00:00:5e:00:53:xx, and the same with the locally administered bit for the
anonymous phones), and an audit entry records what was added. Rows are written directly, with
no outbox event: sample people must never reach a central store. Adding is idempotent: the
audit entry is the marker, and a second call adds nothing.
"""
from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from portal import consent, name_index, segments
from portal.core.purposes import LANGUAGES
from portal.db import database
from portal.identity import Vault
from portal.models import AuditEntry, AuditLog, Consent, Device, Lead, Visit, utcnow

SAMPLE_DOMAIN = "sample.invalid"
MARK_ACTION = "sample_data.added"
METHOD = "sample"
FIRST = ("Lan", "Minh", "Hoa", "Tuan", "Mai", "Nam", "Linh", "Duc", "Claire", "Hugo", "Chloe", "Louis")
HOURS = (8, 9, 10, 11, 12, 12, 13, 15, 17, 18, 18, 19, 20)


@dataclass(frozen=True)
class SampleResult:
    leads: int
    devices: int
    visits: int
    consents: int


def is_sample_email(email: str) -> bool:
    return email.lower().endswith("@" + SAMPLE_DOMAIN)


def has_sample() -> bool:
    return AuditEntry.select().where(AuditEntry.action == MARK_ACTION).exists()


def _visit_times(rng: random.Random, now: datetime.datetime, count: int, days: int) -> list[datetime.datetime]:
    """`count` visit starts over the last `days` days, in opening hours, never in the future."""
    starts = []
    for _ in range(count):
        day = now - datetime.timedelta(days=rng.uniform(0, days - 1))
        start = day.replace(hour=rng.choice(HOURS), minute=rng.randrange(60), second=0, microsecond=0)
        while start > now - datetime.timedelta(hours=2):
            start -= datetime.timedelta(days=1)
        starts.append(start)
    return starts


def add_sample(vault: Vault, store_id: str, people: int = 40, anonymous: int = 30, days: int = 30,
               now: datetime.datetime | None = None, rng_seed: int = 30) -> SampleResult | None:
    """Add the sample history; None when it is already there (nothing changes)."""
    if has_sample():
        return None
    if not 0 < people + anonymous <= 256:
        raise ValueError("sample people and anonymous devices must total 1..256 (one documentation MAC each)")
    rng = random.Random(rng_seed)
    now = now or utcnow()
    policies = {(p, lang): consent.current(p, lang) for p in ("wifi_terms", "marketing_email", "ad_audiences", "visit_analytics")
                for lang in LANGUAGES}
    n_visits = n_consents = 0
    with database.atomic():
        subjects: list[tuple[Device, datetime.datetime]] = []
        for i in range(people):
            email = f"sample{i:02d}@{SAMPLE_DOMAIN}"
            lang = "en" if i % 3 == 0 else "vi"
            joined = now - datetime.timedelta(days=rng.uniform(1, days - 1))
            lead = Lead.create(email_enc=vault.encrypt(email, "lead.email"), email_index=vault.blind_index("email", email),
                               name_enc=vault.encrypt(f"Sample {FIRST[i % len(FIRST)]} {i:02d}", "lead.name"),
                               language=lang, created_at=joined, updated_at=joined,
                               email_verified_at=joined)  # sample people "proved" their (invalid) emails
            name_index.index(lead.id, vault.decrypt(lead.name_enc, "lead.name"), vault)  # found by name in the panel
            purposes = (["wifi_terms"] + (["marketing_email"] if i % 5 < 3 else []) + (["ad_audiences"] if i % 4 == 0 else [])
                        + (["visit_analytics"] if i % 3 else []))  # two in three may be followed: segments, new/returning
            for purpose in purposes:
                policy = policies[(purpose, lang)]
                Consent.create(lead=lead, purpose=purpose, granted=True, policy=policy, policy_sha256=policy.sha256,
                               store_id=store_id, method=METHOD, created_at=joined)
                n_consents += 1
            if i % 10 == 1:  # a few withdrew their email consent: exports must leave them out
                Consent.create(lead=lead, purpose="marketing_email", granted=False, store_id=store_id,
                               method=METHOD, created_at=joined + datetime.timedelta(hours=1))
                n_consents += 1
            device = Device.create(mac=f"00:00:5e:00:53:{i:02x}", first_seen=joined, last_seen=joined, lead=lead,
                                   randomized=False)
            subjects.append((device, joined))
        for j in range(people, people + anonymous):
            first = now - datetime.timedelta(days=rng.uniform(0, days - 1))
            subjects.append((Device.create(mac=f"02:00:5e:00:53:{j:02x}", first_seen=first, last_seen=first,
                                           randomized=True), first))
        for n, (device, since) in enumerate(subjects):
            # A few regulars, some who came back, most once: what a café sees.
            count = 6 + n % 5 if n % 8 == 0 else (2 + n % 3 if n % 3 == 0 else 1)
            span = max(1, (now - since).days + 1) if device.lead_id else days
            starts = sorted(_visit_times(rng, now, count, min(days, span)))
            for start in starts:
                passerby = rng.random() < 0.1
                minutes = rng.uniform(1, 4) if passerby else min(180.0, rng.lognormvariate(3.3, 0.5))
                Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=minutes),
                             source="lan", passerby=passerby)
                n_visits += 1
            if starts:
                Device.update(first_seen=min(since, starts[0]), last_seen=starts[-1]).where(Device.id == device.id).execute()
        AuditLog.record("demo", MARK_ACTION, subject=f"*@{SAMPLE_DOMAIN}", sample=True,
                        note="sample data, not real people", leads=people, devices=len(subjects), visits=n_visits)
    segments.recompute(now)
    return SampleResult(people, len(subjects), n_visits, n_consents)

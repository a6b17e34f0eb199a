"""Generate a store's history: leads (encrypted, with consents), devices and visits.

Used by the panel benchmark (100,000 leads, 200,000 devices, 1,000,000 visits) and, small, by
the screenshot test. Writes through raw executemany: the point is the data, not the path in.
"""
from __future__ import annotations

import datetime
import random

from portal import consent, name_index
from portal.db import database
from portal.identity import Vault
from portal.models import utcnow
from portal.core.purposes import MARKETING_PURPOSES

LAST = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Đặng", "Martin"]  # by position: no draw, the stream stays
FIRST = ["Lan", "Minh", "Hoa", "Tuan", "Mai", "Nam", "Linh", "Duc", "Claire", "Hugo", "Chloe", "Louis"]


def seed(vault: Vault, leads: int, devices: int, visits: int, days: int = 365, rng_seed: int = 13,
         now: datetime.datetime | None = None) -> dict[str, int]:
    rng = random.Random(rng_seed)
    now = now or utcnow()
    policies = {(p, lang): consent.current(p, lang) for p in ("wifi_terms", *MARKETING_PURPOSES, "visit_analytics")
                for lang in ("vi", "en")}
    stamp = lambda dt: dt.isoformat(" ")  # noqa: E731
    with database.atomic():
        lead_rows, consent_rows = [], []
        for i in range(leads):
            email = f"guest{i}@example.com"
            phone = f"+8491{i:07d}" if i % 2 else None
            lang = "vi" if i % 3 else "en"
            joined = now - datetime.timedelta(days=rng.uniform(0, days))
            lead_rows.append((f"seed{i:08d}", vault.encrypt(email, "lead.email"), vault.blind_index("email", email),
                              vault.encrypt(phone, "lead.phone") if phone else None,
                              vault.blind_index("phone", phone) if phone else None,
                              vault.encrypt(f"{LAST[i % len(LAST)]} {rng.choice(FIRST)}", "lead.name"), lang, stamp(joined), stamp(joined)))
        database.cursor().executemany(
            "INSERT INTO lead (uid, email_enc, email_index, phone_enc, phone_index, name_enc, language, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", lead_rows)
        lead_ids = [r[0] for r in database.execute_sql("SELECT id FROM lead ORDER BY id")][-leads:]
        database.cursor().executemany(  # the name search's words (portal/name_index.py)
            "INSERT INTO lead_name_word (lead_id, word) VALUES (?, ?)",
            [(lead_id, word) for lead_id, row in zip(lead_ids, lead_rows)
             for word in name_index.indexes(vault, vault.decrypt(row[5], "lead.name"))])
        for n, lead_id in enumerate(lead_ids):
            lang = "vi" if n % 3 else "en"
            at = lead_rows[n][7]
            # Three in four may be followed (segments need visit_analytics); no draw, so the stream stays the same.
            followed = ("visit_analytics",) if n % 4 else ()
            for purpose in ("wifi_terms", *[p for p in MARKETING_PURPOSES if rng.random() < 0.45], *followed):
                policy = policies[(purpose, lang)]
                consent_rows.append((f"seedc{n}-{purpose}", lead_id, purpose, 1, policy.id, policy.sha256, "store-1",
                                     "portal_form", at))
            if rng.random() < 0.05:  # a few withdrew their email consent later
                consent_rows.append((f"seedw{n}", lead_id, "marketing_email", 0, None, None, "store-1", "portal_my_data", at))
        database.cursor().executemany(
            "INSERT INTO consent (uid, lead_id, purpose, granted, policy_id, policy_sha256, store_id, method, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", consent_rows)
        device_rows = []
        for d in range(devices):
            linked = lead_ids[d % len(lead_ids)] if lead_ids and d < int(devices * 0.65) else None
            randomized = rng.random() < 0.6
            mac = f"{0xda if randomized else 0x3c:02x}:{(d >> 24) & 255:02x}:{(d >> 16) & 255:02x}:{(d >> 8) & 255:02x}:{d & 255:02x}:01"
            first = now - datetime.timedelta(days=rng.uniform(0, days))
            device_rows.append((mac, stamp(first), stamp(first), linked, randomized))
        database.cursor().executemany(
            "INSERT INTO device (mac, first_seen, last_seen, lead_id, randomized) VALUES (?, ?, ?, ?, ?)", device_rows)
        device_ids = [r[0] for r in database.execute_sql("SELECT id FROM device ORDER BY id")][-devices:]
        # Skewed: a few regulars come often, most come once or twice.
        weights = [1.0 / (1 + (i % 500)) ** 0.6 for i in range(len(device_ids))]
        chosen = rng.choices(device_ids, weights=weights, k=visits)
        visit_rows = []
        for device_id in chosen:
            day = now - datetime.timedelta(days=rng.triangular(0, days, 0))
            start = day.replace(hour=rng.choice((8, 9, 10, 11, 12, 12, 13, 17, 18, 18, 19, 20)), minute=rng.randrange(60))
            if start > now:
                start -= datetime.timedelta(days=1)
            passerby = rng.random() < 0.12
            minutes = rng.uniform(0.5, 4.5) if passerby else rng.lognormvariate(3.3, 0.6)
            visit_rows.append((device_id, stamp(start), stamp(start + datetime.timedelta(minutes=minutes)), "lan", passerby))
        database.cursor().executemany(
            'INSERT INTO visit (device_id, start, "end", source, passerby) VALUES (?, ?, ?, ?, ?)', visit_rows)
    return {"leads": leads, "devices": devices, "visits": visits, "consents": len(consent_rows)}

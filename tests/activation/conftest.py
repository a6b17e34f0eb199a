"""Activation fixtures: people made directly in the real database (proved contacts, consents,
visits), automations from the panel's own form cleaner, and a simulated clock."""
from __future__ import annotations

import dataclasses
import datetime
import itertools

import pytest
from werkzeug.datastructures import MultiDict

from portal import consent
from portal.activation import send, texts
from portal.db import database
from portal.models import Device, Lead, Visit
from tests.panel.conftest import accounts_by_role, as_role, cheap_hashing  # noqa: F401  (fixtures)

NOW = datetime.datetime(2026, 3, 10, 5, 0)  # naive UTC: 12:00 in Ho Chi Minh City, a Tuesday
_macs = itertools.count(1)


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, store_time_zone="Asia/Ho_Chi_Minh", activation_holdout_percent=0,
                               activation_rate_per_second=1000, panel_require_2fa=False)


@pytest.fixture
def rt(app):
    return app.extensions["footfall"]


def person(vault, email="lan@example.com", phone=None, name="Lan", language="vi",
           purposes=("marketing_email", "visit_analytics"), verified=True) -> Lead:
    with database.atomic():  # one commit per person: a test makes dozens
        return _person(vault, email, phone, name, language, purposes, verified)


def _person(vault, email, phone, name, language, purposes, verified) -> Lead:
    now = datetime.datetime(2026, 1, 1)
    lead = Lead.create(email_enc=vault.encrypt(email, "lead.email") if email else None,
                       email_index=vault.blind_index("email", email) if email else None,
                       phone_enc=vault.encrypt(phone, "lead.phone") if phone else None,
                       phone_index=vault.blind_index("phone", phone) if phone else None,
                       name_enc=vault.encrypt(name, "lead.name") if name else None, language=language,
                       email_verified_at=now if verified and email else None,
                       phone_verified_at=now if verified and phone else None)
    where = consent.Where("store-1", None, None, "form")
    for purpose in ("wifi_terms", *purposes):
        consent.record(lead, purpose, True, where, at=now)
    return lead


def visit(lead: Lead, start: datetime.datetime, minutes: int = 30) -> Visit:
    device = Device.get_or_none(Device.lead == lead)
    if device is None:
        n = next(_macs)
        device = Device.create(mac="02:00:00:%02x:%02x:%02x" % (n >> 16 & 255, n >> 8 & 255, n & 255), lead=lead)
    return Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=minutes))


EMAIL = {"email_subject_vi": "Chào {name}", "email_text_vi": "{store} tặng bạn mã {voucher} đến {voucher_expires}.",
         "email_subject_en": "Hello {name}", "email_text_en": "{store} gives you the code {voucher} until {voucher_expires}."}


def automation(kind: str, tz, actor="manager:owner1", enabled=True, **fields):
    form = MultiDict({"kind": kind, "name": f"{kind} test", "voucher_days": "30", **EMAIL, **fields})
    if "channels" not in fields:
        form.setlist("channels", ["email"])
    else:
        form.setlist("channels", fields["channels"])
    auto = texts.save(texts.clean(form, tz), actor)
    auto.enabled = enabled
    auto.save()
    return auto


class Recorder:
    """A driver that keeps what it was handed (for the tests of what is planned and guarded;
    the real providers are in test_delivery.py)."""
    name = "recorder"

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)
        return f"rec-{len(self.sent)}"


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def ctx(rt, recorder):
    return send.context(rt.settings, rt.vault, {"email": recorder, "sms": recorder, "zalo": recorder},
                        send.Pacer(1000, clock=lambda: 0.0, sleep=lambda s: None))

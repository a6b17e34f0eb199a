"""The weekly summary by email to the owners (issue 16): off by default, turned on by the owner
in the panel, its figures right on a week built by hand, in Vietnamese and in English, once a
week, through a real SMTP server (aiosmtpd)."""
import dataclasses
import datetime
import time

import pytest

from portal import password_reset, store_settings, weekly_summary
from portal.jobs import JOBS
from portal.messages import Dispatcher, load_drivers
from portal.models import AuditEntry, Device, ExportLog, Lead, Visit, utcnow
from portal.visitors import Client, SignInForm
from tests.panel.conftest import PASSWORD

@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, email_driver="smtp", smtp_host="127.0.0.1", smtp_port=smtp_server[0],
                               smtp_security="none", smtp_from="panel@shop.test")


@pytest.fixture
def owner_email(app, accounts_by_role):
    vault = app.extensions["footfall"].vault
    password_reset.set_email(accounts_by_role["owner"], vault, "owner@example.org", PASSWORD, None)
    password_reset.set_email(accounts_by_role["manager"], vault, "manager@example.org", PASSWORD, None)
    return vault


def mails(inbox, to, count, timeout=10):
    deadline = time.monotonic() + timeout
    while len([m for r, m in inbox.messages if to in r]) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [m for r, m in inbox.messages if to in r]


def visit(now, device, days_ago, passerby=False):
    start = now - datetime.timedelta(days=days_ago)
    Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=30), passerby=passerby)


@pytest.fixture
def week(app, visitors):
    """Five visitors this week: one back after last month, one new, one twice this week, one who
    did not agree to visit analytics, one anonymous device; a passer-by and an older visit too.
    Returns the end of the week (just after the sign-ups)."""
    now = utcnow() + datetime.timedelta(minutes=1)
    def person(n, email, followed=True, marketing=()):
        client = Client(f"10.0.8.{n}", f"02:00:00:00:08:{n:02x}")
        outcome = visitors.sign_in(SignInForm(email=email, terms=True, adult=True, marketing=frozenset(marketing),
                                              analytics=frozenset({"visit_analytics"} if followed else ())), client)
        assert outcome.ok, outcome.errors
        return client, Device.get(Device.mac == client.mac)

    a_client, a = person(1, "a@example.com", marketing=("marketing_email",))
    _, b = person(2, "b@example.com")
    _, c = person(3, "c@example.com")
    _, d = person(4, "d@example.com", followed=False)
    _, old = person(5, "old@example.com")
    Lead.update(created_at=now - datetime.timedelta(days=9)).where(Lead.id == old.lead_id).execute()
    e = Device.create(mac="3c:00:00:00:08:09")
    passer = Device.create(mac="3c:00:00:00:08:0a")
    for device, days_ago in ((a, 20), (a, 2), (b, 3), (c, 1), (c, 4), (d, 2), (e, 5), (old, 8)):
        visit(now, device, days_ago)
    visit(now, passer, 1, passerby=True)
    visitors.withdraw(a_client, "marketing_email")
    ExportLog.create(actor="manager:manager1", segment_key="loyal", segment_name="Loyal", kind="csv", members=3)
    ExportLog.create(actor="manager:manager1", segment_key="loyal", segment_name="Loyal", kind="csv", members=3)
    ExportLog.create(actor="manager:manager1", segment_key="loyal", segment_name="Loyal", kind="meta", members=3,
                     created_at=now - datetime.timedelta(days=10))
    return now


def test_the_figures_of_a_week(week):
    summary = weekly_summary.figures(week)
    assert (summary.visitors, summary.new, summary.returning) == (5, 1, 2)
    assert summary.signups == 4  # the fifth signed up nine days ago
    assert summary.granted == {"marketing_email": 1, "marketing_sms": 0, "ad_audiences": 0, "visit_analytics": 4,
                               "chain_sharing": 0}
    assert summary.withdrawn["marketing_email"] == 1 and sum(summary.withdrawn.values()) == 1
    assert summary.exports == {"csv": 2}


def test_off_by_default_nothing_is_sent(app, settings, owner_email, smtp_server):
    assert settings.weekly_summary == "off"
    assert JOBS["weekly_summary"].run(store_settings.apply(settings)) == {"skipped": "off"}
    assert smtp_server[1].messages == []


def test_the_owner_turns_it_on_and_owners_get_it_once_a_week(app, settings, owner_email, smtp_server, as_role, week):
    owner = as_role("owner")
    bad = owner.form("/panel/settings", {"weekly_summary": "<script>"}, token_page="/panel/settings")
    assert bad.status_code == 422 and "<script>" not in bad.get_data(as_text=True)
    assert store_settings.apply(settings).weekly_summary == "off"
    page = owner.get("/panel/settings").get_data(as_text=True)
    assert 'name="weekly_summary"' in page and "Weekly summary by email" in page
    assert owner.form("/panel/settings", {"weekly_summary": "en"}, token_page="/panel/settings").status_code == 200
    live = store_settings.apply(settings)
    assert live.weekly_summary == "en"
    result = JOBS["weekly_summary"].run(live)
    assert result["sent"] == 1 and result["failed"] == 0
    got = mails(smtp_server[1], "owner@example.org", 1)
    assert len(got) == 1 and not [m for r, m in smtp_server[1].messages if "manager@example.org" in r]  # owners only
    assert got[0]["Subject"].startswith("Cà Phê Test: your week, ")
    body = got[0].get_body(("plain",)).get_content()
    assert "Visitors: 5" in body and "came for the first time: 1" in body and "came back: 2" in body
    assert "a@example.com" not in body  # aggregates only
    assert JOBS["weekly_summary"].run(live)["skipped"] == "sent already"
    assert len(mails(smtp_server[1], "owner@example.org", 2, timeout=0.3)) == 1
    assert AuditEntry.select().where(AuditEntry.action == "weekly_summary_sent").count() == 1


@pytest.mark.parametrize("language, lines", [
    ("en", ["Visitors: 5", "  came for the first time: 1", "  came back: 2", "Sign-ups: 4",
            "  offers by email: 1 / 1", "  visits followed: 4 / 0", "Audience exports: 2 (csv 2)"]),
    ("vi", ["Khách ghé: 5", "  lần đầu: 1", "  quay lại: 2", "Đăng ký mới: 4",
            "  ưu đãi qua email: 1 / 1", "  theo dõi lượt ghé: 4 / 0", "Lượt xuất tệp đối tượng: 2 (csv 2)"]),
])
def test_both_languages_with_the_figures(app, settings, owner_email, smtp_server, week, language, lines):
    dispatcher = Dispatcher(load_drivers(settings), workers=1)
    result = weekly_summary.send(dataclasses.replace(settings, weekly_summary=language), owner_email, dispatcher, now=week)
    assert result["sent"] == 1
    mail = mails(smtp_server[1], "owner@example.org", 1)[0]
    from portal import i18n
    first = i18n.format_date(week - datetime.timedelta(days=7), language)  # Babel's: 16/11/2026, 16 Nov 2026
    expected = {"en": f"Cà Phê Test: your week, {first} to ", "vi": f"Cà Phê Test: tuần của bạn, {first} đến "}[language]
    assert mail["Subject"].startswith(expected)
    body = mail.get_body(("plain",)).get_content().splitlines()
    for line in lines:
        assert line in body

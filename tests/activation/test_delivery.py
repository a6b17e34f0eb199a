"""Sending through the real message layer: aiosmtpd (headers, both languages, the one-click
unsubscribe end to end), the local eSMS and Zalo ZNS servers, retries and the send log."""
from __future__ import annotations

import dataclasses
import datetime
import re

import pytest

from portal import consent
from portal.activation import send
from portal.activation.models import ActivationSend, SendAttempt, Voucher
from portal.messages.esms import EsmsDriver
from portal.messages.smtp import SmtpDriver
from portal.messages.zns import ZnsDriver
from portal.models import Consent, OutboxEvent
from tests.activation.conftest import NOW, automation, person
from tests.messages.providers import Provider


@pytest.fixture
def settings(settings):
    """Links in messages point to the store's public address (the TLS front), which the portal serves too."""
    return dataclasses.replace(settings, public_url="https://wifi.caphe.example")


@pytest.fixture
def providers():
    esms, zns = Provider("esms"), Provider("zns")
    yield esms, zns
    esms.close()
    zns.close()


def _ctx(rt, drivers, **changes):
    settings = dataclasses.replace(rt.settings, **changes)
    return send.context(settings, rt.vault, drivers, send.Pacer(1000))


def test_email_in_both_languages_with_rfc8058_headers_and_one_click_unsubscribe(app, rt, smtp_server):
    port, inbox = smtp_server
    ctx = _ctx(rt, {"email": SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="none")})
    lan = person(rt.vault, "lan@example.com", name="Lan")
    john = person(rt.vault, "john@example.com", name="", language="en")
    automation("campaign", ctx.tz, segment="")
    assert send.run(ctx, NOW)["sent"] == 2
    mails = {rcpt[0]: msg for rcpt, msg in inbox.messages}
    vi, en = mails["lan@example.com"], mails["john@example.com"]
    assert vi["Subject"] == "Chào Lan" and vi["Content-Language"] == "vi"
    assert en["Subject"] == "Hello there" and en["Content-Language"] == "en"  # no name given: a greeting still reads
    assert "gives you the code" in en.get_body(("plain",)).get_content()
    assert en.get_body(("plain",)).get_content().count("Unsubscribe: https://wifi.caphe.example/u/") == 1
    link = re.fullmatch(r"<(https://wifi\.caphe\.example(/u/[^>]+))>", vi["List-Unsubscribe"])
    assert link and vi["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f'href="{link.group(1)}"' in vi.get_body(("html",)).get_content()
    # The mail client's one-click POST: no session, no CSRF token, a host of its own.
    client = app.test_client()
    before = OutboxEvent.select().where(OutboxEvent.topic == "consent.recorded").count()
    answer = client.post(link.group(2), data={"List-Unsubscribe": "One-Click"}, headers={"Host": "wifi.caphe.example"})
    assert answer.status_code == 200 and 'id="unsubscribed"' in answer.get_data(as_text=True)
    last = Consent.select().where(Consent.lead == lan, Consent.purpose == "marketing_email").order_by(Consent.id.desc()).get()
    assert not last.granted and last.method == "unsubscribe_link"
    assert OutboxEvent.select().where(OutboxEvent.topic == "consent.recorded").count() == before + 1
    assert ActivationSend.get(ActivationSend.lead == lan).unsubscribed_at is not None
    assert client.post(link.group(2), headers={"Host": "wifi.caphe.example"}).status_code == 200  # again: nothing more
    assert Consent.select().where(Consent.lead == lan, Consent.purpose == "marketing_email").count() == 2
    assert consent.latest_granted(john, "marketing_email")  # only the message's own person
    # A tampered token is refused, and the next campaign does not reach lan.
    assert client.post(link.group(2)[:-1] + "A", headers={"Host": "wifi.caphe.example"}).status_code == 404
    automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW + datetime.timedelta(days=8))
    assert [r[0] for r, _ in inbox.messages].count("lan@example.com") == 1


def test_unsubscribe_page_asks_before_acting(app, rt, smtp_server):
    port, inbox = smtp_server
    ctx = _ctx(rt, {"email": SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="none")})
    lan = person(rt.vault)
    automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    path = re.search(r"/u/[^>]+", inbox.messages[0][1]["List-Unsubscribe"]).group(0)
    page = app.test_client().get(path, headers={"Host": "portal.test:8080", "Accept-Language": "vi"})
    assert page.status_code == 200 and "Hủy đăng ký" in page.get_data(as_text=True)
    assert consent.latest_granted(lan, "marketing_email")  # a link scanner's GET withdraws nothing


def test_sms_and_zalo_through_the_providers_with_how_to_stop(rt, providers):
    esms, zns = providers
    ctx = _ctx(rt, {"sms": EsmsDriver("key", "secret", "CAPHE", url=esms.url),
                    "zalo": ZnsDriver("oa-token", "otp-template", url=zns.url)})
    person(rt.vault, None, phone="+84912345678", purposes=("marketing_sms",))
    automation("campaign", ctx.tz, segment="", channels=["sms", "zalo"], sms_text_vi="{store}: mã {voucher}",
               sms_text_en="{store}: code {voucher}", zalo_template="231452",
               zalo_params_vi="customer_name={name}\nvoucher={voucher}\nstop={unsubscribe}",
               zalo_params_en="customer_name={name}\nvoucher={voucher}\nstop={unsubscribe}")
    assert send.run(ctx, NOW)["sent"] == 2
    (sms,), (zalo,) = esms.received, zns.received
    assert sms["body"]["Phone"] == "84912345678" and sms["body"]["Content"].startswith("Cà Phê Test: mã ")
    assert "\nNgừng nhận: https://wifi.caphe.example/u/" in sms["body"]["Content"]
    data = zalo["body"]["template_data"]
    assert zalo["body"]["template_id"] == "231452" and data["customer_name"] == "Lan"
    assert data["stop"].startswith("https://wifi.caphe.example/u/") and data["voucher"] in sms["body"]["Content"]
    masked = {a.recipient_masked for a in SendAttempt.select()}
    assert masked == {"+849*****678"}


def test_temporary_failures_are_retried_later_then_fail(rt, providers):
    esms, _ = providers
    esms.mode = "http500"
    ctx = _ctx(rt, {"sms": EsmsDriver("key", "secret", "CAPHE", url=esms.url)})
    person(rt.vault, None, phone="+84912345678", purposes=("marketing_sms",))
    automation("campaign", ctx.tz, segment="", channels=["sms"], sms_text_vi="{voucher}", sms_text_en="{voucher}")
    assert send.run(ctx, NOW)["retry"] == 1
    assert send.run(ctx, NOW + datetime.timedelta(minutes=1))["retry"] == 0  # not before its backoff
    esms.mode = "ok"
    assert send.run(ctx, NOW + datetime.timedelta(minutes=6))["sent"] == 1
    row = ActivationSend.get()
    assert row.state == "sent" and row.attempts == 2
    assert [a.outcome for a in SendAttempt.select().order_by(SendAttempt.id)] == ["retry", "sent"]
    assert len(esms.received) == 2


def test_permanent_failure_is_not_retried(rt, providers):
    esms, _ = providers
    esms.mode = "101"  # wrong credentials: needs the owner
    ctx = _ctx(rt, {"sms": EsmsDriver("key", "secret", "CAPHE", url=esms.url)})
    person(rt.vault, None, phone="+84912345678", purposes=("marketing_sms",))
    automation("campaign", ctx.tz, segment="", channels=["sms"], sms_text_vi="{voucher}", sms_text_en="{voucher}")
    assert send.run(ctx, NOW)["failed"] == 1
    assert ActivationSend.get().reason == "esms_101" and send.run(ctx, NOW + datetime.timedelta(hours=1))["sent"] == 0


def test_the_rate_per_provider_is_bounded(rt):
    slept = []
    clock = [0.0]
    pacer = send.Pacer(2, clock=lambda: clock[0], sleep=lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)))
    for _ in range(5):
        pacer.wait("email")
    pacer.wait("sms")
    assert slept == [0.5, 0.5, 0.5, 0.5]  # 2 a second on email; sms has its own budget


def test_the_send_log_is_masked_and_the_purge_forgets_erased_people(app, rt, as_role, smtp_server):
    from portal import privacy
    port, inbox = smtp_server
    ctx = _ctx(rt, {"email": SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="none")})
    lan = person(rt.vault, "lan.nguyen@example.com")
    automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    log = as_role("manager").get("/panel/activation/log").get_data(as_text=True)
    assert "l***@example.com" in log and "lan.nguyen@" not in log
    privacy.erase_person(lan, [], rt.gateway, "store-1", "manager:owner1")
    assert send.purge(365) == {"sends": 1, "attempts_past_retention": 0}
    assert ActivationSend.select().count() == 0 and SendAttempt.select().count() == 0
    assert Voucher.select().count() == 0  # unused: gone with the person


def test_retention_and_the_next_run_forget_what_they_must(rt, recorder):
    from portal import privacy
    from portal.activation import vouchers
    ctx = send.context(rt.settings, rt.vault, {"email": recorder}, send.Pacer(1000))
    lan, binh = person(rt.vault), person(rt.vault, "binh@example.com")
    automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    vouchers.redeem(ActivationSend.get(ActivationSend.lead == binh).voucher_code, 50000, "manager:owner1")
    privacy.erase_person(binh, [], rt.gateway, "store-1", "manager:owner1")
    send.run(ctx, NOW + datetime.timedelta(minutes=5))  # the next run: binh's sends are gone, the till's record stays
    assert {r.lead_id for r in ActivationSend.select()} == {lan.id}
    assert [(v.lead_id, v.amount) for v in Voucher.select().where(Voucher.redeemed_at.is_null(False))] == [(None, 50000)]
    later = NOW + datetime.timedelta(days=400)
    assert send.purge(365, later) == {"sends": 1, "attempts_past_retention": 1}
    assert ActivationSend.select().count() == 0 and SendAttempt.select().count() == 0


def test_a_lost_send_is_never_sent_twice(rt, recorder):
    ctx = send.context(rt.settings, rt.vault, {"email": recorder}, send.Pacer(1000))
    person(rt.vault)
    automation("campaign", ctx.tz, segment="")
    quiet = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_quiet_start=11, activation_quiet_end=13))
    send.run(quiet, NOW)
    ActivationSend.update(state="sending").execute()  # the scheduler died while the provider had it
    send.run(ctx, NOW + datetime.timedelta(hours=1))
    assert recorder.sent == [] and ActivationSend.get().reason == "interrupted"


@pytest.mark.parametrize("path", ["/u/<script>alert(1)</script>", "/u/1-AAAAAAAAAAAAAAAA", "/u/0-AAAAAAAAAAAAAAAA",
                                  "/u/1-AAAAAAAAAAAAAAAA%0A", "/u/" + "9" * 40 + "-AAAAAAAAAAAAAAAA"])
def test_unsubscribe_refuses_bad_tokens_and_changes_nothing(app, rt, path):
    lan = person(rt.vault)
    before = Consent.select().count()
    for method in ("get", "post"):
        answer = getattr(app.test_client(), method)(path, headers={"Host": "portal.test:8080"})
        assert answer.status_code == 404 and "<script>alert" not in answer.get_data(as_text=True)
    assert Consent.select().count() == before and consent.latest_granted(lan, "marketing_email")


def test_unsubscribe_link_of_an_erased_person_is_gone(app, rt, recorder):
    from portal import privacy
    from portal.activation import unsubscribe
    ctx = send.context(rt.settings, rt.vault, {"email": recorder}, send.Pacer(1000))
    lan = person(rt.vault)
    automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    path = "/u/" + unsubscribe.token(rt.vault, ActivationSend.get())
    privacy.erase_person(lan, [], rt.gateway, "store-1", "manager:owner1")
    assert app.test_client().post(path, headers={"Host": "portal.test:8080"}).status_code == 404

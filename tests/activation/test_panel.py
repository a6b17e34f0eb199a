"""The panel's activation pages: who may do what, the form (bad input changes nothing), the
preview, the switch, the send log (masked), the till (a code redeemed once), RFM."""
from __future__ import annotations

import json

import pytest

from portal.activation import vouchers
from portal.activation.models import Automation, Voucher
from portal.models import OutboxEvent
from tests.activation.conftest import person

FORM = {"kind": "first_visit", "name": "Welcome", "channels": "email", "delay_hours": "2", "voucher_days": "14",
        "email_subject_vi": "Chào {name}", "email_text_vi": "Mã của bạn: {voucher}, hạn {voucher_expires}",
        "email_subject_en": "Hi {name}", "email_text_en": "Your code: {voucher}, until {voucher_expires}"}


@pytest.mark.parametrize("path, analyst", [("/panel/activation", 200), ("/panel/activation/new", 403),
                                           ("/panel/activation/log", 403), ("/panel/till", 403),
                                           ("/panel/activation/customers", 403)])
def test_analysts_see_results_only(as_role, path, analyst):
    assert as_role("analyst").get(path).status_code == analyst
    assert as_role("manager").get(path).status_code == 200


def test_a_manager_creates_previews_and_switches_an_automation(as_role):
    manager = as_role("manager")
    preview = manager.form("/panel/activation/new", {**FORM, "action": "preview"})
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Chào Lan" in page and "K7QP-M4XR" in page and "Hủy đăng ký" in page
    assert Automation.select().count() == 0  # a preview saves nothing
    saved = manager.form("/panel/activation/new", {**FORM, "action": "save"})
    auto = Automation.get()
    assert saved.status_code == 302 and not auto.enabled and auto.opts["voucher_days"] == 14
    assert manager.form(f"/panel/activation/{auto.uid}/switch", {"on": "1"}).status_code == 302
    assert Automation.get().enabled
    listing = manager.get("/panel/activation").get_data(as_text=True)
    assert f'id="state-{auto.uid}">On<' in listing


@pytest.mark.parametrize("change, message", [
    ({"delay_hours": "abc"}, "Delay after the first visit"),
    ({"email_text_en": "<script>alert(1)</script>{oops}"}, "Email text"),
    ({"voucher_days": "0"}, "voucher&#39;s days are 0"),
    ({"kind": "campaign", "segment": "no-such"}, "Segment"),
])
def test_bad_input_is_refused_and_changes_nothing(as_role, change, message):
    answer = as_role("owner").form("/panel/activation/new", {**FORM, **change, "action": "save"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in page and "<script>alert" not in page
    assert Automation.select().count() == 0


def test_the_till_redeems_a_code_once(as_role, rt):
    lead = person(rt.vault)
    voucher = vouchers.issue(lead, None, 30)
    owner = as_role("owner")
    typed = f"{voucher.code[:4].lower()} {voucher.code[4:]}"
    ok = owner.form("/panel/till", {"code": typed, "amount": "125.000"}, token_page="/panel/till")
    assert ok.status_code == 200 and "redeemed" in ok.get_data(as_text=True)
    assert Voucher.get().amount == 125000 and Voucher.get().redeemed_by == "manager:owner1"
    event = OutboxEvent.get(OutboxEvent.topic == "voucher.redeemed")
    assert json.loads(event.payload) == {"voucher": voucher.code, "code": vouchers.display(voucher.code), "value": 125000,
                                         "currency": "VND", "lead": lead.uid}
    again = owner.form("/panel/till", {"code": voucher.code, "amount": ""}, token_page="/panel/till")
    assert again.status_code == 409 and "already used, at" in again.get_data(as_text=True)
    assert Voucher.get().amount == 125000 and OutboxEvent.select().where(OutboxEvent.topic == "voucher.redeemed").count() == 1
    unknown = owner.form("/panel/till", {"code": "<b>x</b>", "amount": ""}, token_page="/panel/till")
    assert unknown.status_code == 404 and "<b>x" not in unknown.get_data(as_text=True)
    other = vouchers.issue(lead, None, 30)
    bad = owner.form("/panel/till", {"code": other.code, "amount": "12e3"}, token_page="/panel/till")
    assert bad.status_code == 400 and Voucher.get(Voucher.code == other.code).redeemed_at is None
    customers = owner.get("/panel/activation/customers").get_data(as_text=True)
    assert "125,000 ₫" in customers


def test_redeem_refuses_an_expired_code(rt):
    import datetime
    voucher = vouchers.issue(person(rt.vault), None, 1)
    with pytest.raises(vouchers.VoucherError) as late:
        vouchers.redeem(voucher.code, None, "manager:x", now=voucher.expires_at + datetime.timedelta(seconds=1))
    assert late.value.code == "expired" and Voucher.get().redeemed_at is None


def test_codes_are_readable():
    codes = {vouchers.new_code() for _ in range(2000)}
    assert len(codes) == 2000 and all(vouchers.CODE.match(c) for c in codes)
    assert not set("".join(codes)) & set("0O1IL2Z5S8B")


def test_hostile_requests_get_clear_answers(as_role, rt):
    from tests.activation.conftest import automation
    from portal.activation import texts
    auto = automation("campaign", texts.store_tz(rt.settings), segment="", enabled=False)
    analyst, manager = as_role("analyst"), as_role("manager")
    assert analyst.form(f"/panel/activation/{auto.uid}/switch", {"on": "1"}).status_code == 403
    assert not Automation.get().enabled
    assert manager.get("/panel/activation/nope").status_code == 404
    assert manager.form("/panel/activation/nope/switch", {"on": "1"}).status_code == 404
    assert manager.get("/panel/activation/log?before=１２").status_code == 400
    assert manager.get("/panel/activation/log?before=99999999999999999999999").status_code == 400


def test_a_campaign_that_went_out_cannot_be_changed(as_role, rt):
    import datetime
    from tests.activation.conftest import automation
    from portal.activation import texts
    auto = automation("campaign", texts.store_tz(rt.settings), segment="")
    Automation.update(launched_at=datetime.datetime(2026, 3, 1)).execute()
    answer = as_role("owner").form(f"/panel/activation/{auto.uid}", {**FORM, "kind": "campaign", "action": "save"})
    assert answer.status_code == 400 and "can no longer be changed" in answer.get_data(as_text=True)
    assert Automation.get().name == "campaign test"


def test_the_lead_page_shows_messages_vouchers_and_spend(as_role, rt):
    lead = person(rt.vault)
    used, unused = vouchers.issue(lead, None, 30), vouchers.issue(lead, None, 30)
    vouchers.redeem(used.code, 240000, "manager:owner1")
    page = as_role("manager").get(f"/panel/leads/{lead.uid}").get_data(as_text=True)
    assert 'id="activity"' in page and "spend with vouchers: 240,000 ₫" in page
    assert vouchers.display(unused.code) in page and "240,000 ₫" in page

"""Every trigger on a simulated clock, the guards at send time (consent, verification, erasure,
restriction, quiet hours, caps), holdouts, and never the same automation twice."""
from __future__ import annotations

import dataclasses
import datetime

from portal import privacy
from portal.activation import plan, send, texts
from portal.activation.models import ActivationSend, SendAttempt
from portal.models import Lead
from tests.activation.conftest import NOW, automation, person, visit

H = datetime.timedelta(hours=1)
D = datetime.timedelta(days=1)


def states(auto) -> dict[int, str]:
    return {r.lead_id: r.state for r in ActivationSend.select().where(ActivationSend.automation == auto)}


def test_first_visit_waits_for_its_delay_then_sends_once(rt, ctx, recorder):
    tz = ctx.tz
    automation("first_visit", tz, delay_hours="3")
    lan = person(rt.vault)
    visit(lan, NOW - 2 * H)
    assert send.run(ctx, NOW)["planned"] == 0 and recorder.sent == []  # 2 hours after: not yet
    assert send.run(ctx, NOW + 1 * H)["sent"] == 1
    (message,) = recorder.sent
    assert message.to == "lan@example.com" and message.subject == "Chào Lan" and message.language == "vi"
    code = ActivationSend.get().voucher_code
    assert f"{code[:4]}-{code[4:]}" in message.text and "Hủy đăng ký: http://portal.test:8080/u/" in message.text
    visit(lan, NOW + 26 * H)  # a second visit: not a first visit, and the automation never repeats
    assert send.run(ctx, NOW + 30 * H) == {"planned": 0, "sent": 0, "failed": 0, "retry": 0, "skipped": 0, "quiet": 0}
    assert len(recorder.sent) == 1


def test_first_visit_does_not_reach_old_visitors(rt, ctx, recorder):
    automation("first_visit", ctx.tz, delay_hours="0")
    visit(person(rt.vault), NOW - 30 * D)
    assert send.run(ctx, NOW)["planned"] == 0


def test_nth_visit(rt, ctx, recorder):
    auto = automation("nth_visit", ctx.tz, nth="3")
    two, three, old = person(rt.vault, "two@example.com"), person(rt.vault, "three@example.com"), person(rt.vault, "old@example.com")
    for lead, days in ((two, (5, 1)), (three, (20, 10, 1)), (old, (40, 30, 20, 19))):
        for d in days:
            visit(lead, NOW - d * D)
    send.run(ctx, NOW)
    assert states(auto) == {three.id: "sent"}  # two has 2 visits; old reached 3 weeks ago


def test_lapsed_and_its_repeat(rt, ctx, recorder):
    once = automation("lapsed", ctx.tz, lapsed_days="30")
    again = automation("lapsed", ctx.tz, lapsed_days="30", repeat="yes")
    lan = person(rt.vault)
    visit(lan, NOW - 31 * D)
    send.run(ctx, NOW)
    assert states(once) == {lan.id: "sent"} and states(again) == {lan.id: "sent"}
    visit(lan, NOW + 1 * D)  # came back, then lapsed again
    send.run(ctx, NOW + 32 * D)
    assert ActivationSend.select().where(ActivationSend.automation == once).count() == 1
    assert ActivationSend.select().where(ActivationSend.automation == again, ActivationSend.state == "sent").count() == 2


def test_review_the_day_after_a_visit_from_ten_store_time(rt, ctx, recorder):
    auto = automation("review", ctx.tz, review_link="https://g.page/r/caphe/review", voucher_days="0",
                      email_text_vi="Cảm ơn {name}! Đánh giá: {review_link}", email_text_en="Thanks {name}! Review: {review_link}")
    lan = person(rt.vault)
    # 19:00 store time on March 9 (12:00 UTC); the store's March 10 starts at 17:00 UTC on March 9
    visit(lan, datetime.datetime(2026, 3, 9, 12, 0))
    assert send.run(ctx, datetime.datetime(2026, 3, 10, 1, 0))["planned"] == 0  # 08:00 store time: too early
    assert send.run(ctx, datetime.datetime(2026, 3, 10, 3, 0))["sent"] == 1     # 10:00 store time
    assert "https://g.page/r/caphe/review" in recorder.sent[0].text
    assert states(auto) == {lan.id: "sent"}


def test_campaign_now_or_at_its_time_to_a_segment(rt, ctx, recorder):
    from portal import segments
    later = automation("campaign", ctx.tz, send_at="2026-03-10T18:00", segment="")  # store time: 11:00 UTC
    lan, binh = person(rt.vault), person(rt.vault, "binh@example.com", purposes=("marketing_email",))
    visit(lan, NOW - 2 * D)
    segments.recompute(NOW)
    to_returning = automation("campaign", ctx.tz, segment="new")
    send.run(ctx, NOW)
    assert states(to_returning) == {lan.id: "sent"}  # binh follows no visits: in no segment
    assert states(later) == {}
    send.run(ctx, NOW + 6 * H)
    assert states(later) == {lan.id: "sent", binh.id: "sent"}  # a campaign needs no visit analytics
    send.run(ctx, NOW + 7 * H)
    assert len(recorder.sent) == 3


def test_visit_triggers_need_visit_analytics(rt, ctx, recorder):
    automation("first_visit", ctx.tz, delay_hours="0")
    visit(person(rt.vault, purposes=("marketing_email",)), NOW - H)
    assert send.run(ctx, NOW)["planned"] == 0


def test_only_verified_contacts_with_current_consent(rt, ctx, recorder):
    auto = automation("first_visit", ctx.tz, delay_hours="0", channels=["email", "sms"],
                      sms_text_vi="{store}: mã {voucher}", sms_text_en="{store}: code {voucher}")
    claim = person(rt.vault, "claim@example.com", verified=False)
    sms_only = person(rt.vault, "mail@example.com", phone="+84912345678",
                      purposes=("marketing_sms", "visit_analytics"))
    for lead in (claim, sms_only):
        visit(lead, NOW - H)
    send.run(ctx, NOW)
    rows = list(ActivationSend.select().where(ActivationSend.automation == auto))
    assert [(r.lead_id, r.channel, r.state) for r in rows] == [(sms_only.id, "sms", "sent")]
    assert recorder.sent[0].to == "+84912345678" and "Ngừng nhận: http://portal.test:8080/u/" in recorder.sent[0].text


def test_consent_withdrawn_between_planning_and_sending_sends_nothing(rt, ctx, recorder):
    automation("first_visit", ctx.tz, delay_hours="0")
    lan, erased, restricted = (person(rt.vault, f"{n}@example.com") for n in ("lan", "gone", "kept"))
    for lead in (lan, erased, restricted):
        visit(lead, NOW - H)
    quiet = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_quiet_start=11,
                                                                   activation_quiet_end=13))
    assert send.run(quiet, NOW) == {"planned": 3, "sent": 0, "failed": 0, "retry": 0, "skipped": 0, "quiet": 3}
    privacy.withdraw(lan, "marketing_email", "store-1", "manager:owner1")
    privacy.erase_person(erased, [], rt.gateway, "store-1", "manager:owner1")
    privacy.restrict(Lead.get_by_id(restricted.id), "manager:owner1", "objection")
    result = send.run(ctx, NOW + 2 * H)
    assert result["sent"] == 0 and recorder.sent == []
    reasons = {r.lead_id: r.reason for r in ActivationSend.select()}
    # The erased person's planned message is forgotten at the start of the run, with the person.
    assert reasons == {lan.id: "no_consent", restricted.id: "restricted"}
    assert SendAttempt.select().where(SendAttempt.outcome == "skipped").count() == 2
    # An erasure landing during a run (after that start) is caught by the check at send time.
    from portal.activation import guards
    assert guards.refusal(Lead.get_by_id(erased.id), "email", "first_visit") == "erased"


def test_quiet_hours_in_store_time(rt, ctx, recorder):
    automation("first_visit", ctx.tz, delay_hours="0")
    visit(person(rt.vault), datetime.datetime(2026, 3, 10, 14, 0))  # 21:00 store time
    night = datetime.datetime(2026, 3, 10, 15, 0)                      # 22:00: quiet (21 to 8)
    assert send.run(ctx, night)["quiet"] == 1 and recorder.sent == []
    assert send.run(ctx, datetime.datetime(2026, 3, 11, 0, 30))["quiet"] == 1  # 07:30
    assert send.run(ctx, datetime.datetime(2026, 3, 11, 1, 0))["sent"] == 1    # 08:00


def test_caps_per_week_and_per_month(rt, ctx, recorder):
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_max_per_week=2,
                                                                marketing_max_per_month=3))
    lan = person(rt.vault)
    autos = [automation("campaign", ctx.tz, segment="") for _ in range(3)]
    send.run(ctx, NOW)
    assert [states(a)[lan.id] for a in autos] == ["sent", "sent", "skipped"]
    assert ActivationSend.get(ActivationSend.automation == autos[2]).reason == "cap_week"
    more = [automation("campaign", ctx.tz, segment="") for _ in range(2)]
    send.run(ctx, NOW + 8 * D)
    assert [states(a)[lan.id] for a in more] == ["sent", "skipped"]
    assert ActivationSend.get(ActivationSend.automation == more[1]).reason == "cap_month"


def test_holdout_is_kept_apart_and_never_sent(rt, ctx, recorder):
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_holdout_percent=30,
                                                                activation_max_per_week=100))
    people = [person(rt.vault, f"p{i}@example.com") for i in range(60)]
    auto = automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    rows = list(ActivationSend.select().where(ActivationSend.automation == auto))
    held = {r.lead_id for r in rows if r.holdout}
    assert all(r.state == "held_out" for r in rows if r.holdout) and 8 <= len(held) <= 30
    assert {m.to for m in recorder.sent} == {f"p{i}@example.com" for i, p in enumerate(people) if p.id not in held}
    from portal.activation.guards import in_holdout
    assert held == {p.id for p in people if in_holdout(auto.uid, p.uid, 30)}


def test_a_turned_off_automation_sends_nothing_more(rt, ctx, recorder):
    auto = automation("first_visit", ctx.tz, delay_hours="0")
    visit(person(rt.vault), NOW - H)
    quiet = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_quiet_start=11, activation_quiet_end=13))
    send.run(quiet, NOW)
    auto.enabled = False
    auto.save()
    send.run(ctx, NOW + 2 * H)
    assert recorder.sent == [] and ActivationSend.get().reason == "automation_off"


def test_plan_is_unique_per_occasion_under_a_second_run(rt, ctx):
    auto = automation("campaign", ctx.tz, segment="")
    lan = person(rt.vault)
    plan.plan(NOW, ctx.tz, 0, [auto])
    auto.launched_at = None  # even a second planning of the same campaign adds no row
    plan.plan(NOW, ctx.tz, 0, [auto])
    assert ActivationSend.select().where(ActivationSend.lead == lan).count() == 1


def test_forms_refuse_bad_input(rt):
    from werkzeug.datastructures import MultiDict
    import pytest
    tz = texts.store_tz(rt.settings)
    base = {"kind": "first_visit", "name": "Welcome", "delay_hours": "2", "voucher_days": "0", "channels": "email",
            "email_subject_vi": "Chào", "email_text_vi": "Xin chào {name}", "email_subject_en": "Hi", "email_text_en": "Hi {name}"}
    texts.clean(MultiDict(base), tz)
    for change, field in (({"kind": "spam"}, "kind"), ({"delay_hours": "２"}, "delay_hours"), ({"delay_hours": "999"}, "delay_hours"),
                          ({"email_text_en": "Hi {name.__class__}"}, "email_text_en"), ({"email_text_en": "{voucher}"}, "email_text_en:voucher"),
                          ({"email_subject_vi": ""}, "email_subject_vi"), ({"channels": "fax"}, "channels"),
                          ({"name": "<script>"}, "name")):
        with pytest.raises(texts.FormError) as bad:
            texts.clean(MultiDict({**base, **change}), tz)
        assert bad.value.field == field
    zalo = {**base, "channels": "zalo", "zalo_template": "231452", "zalo_params_vi": "name={name}", "zalo_params_en": "name={name}\nstop={unsubscribe}"}
    with pytest.raises(texts.FormError) as bad:
        texts.clean(MultiDict(zalo), tz)
    assert bad.value.field == "zalo_params_vi:unsubscribe"

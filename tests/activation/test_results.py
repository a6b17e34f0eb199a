"""Results against the holdout: visits within 14 days in both groups (the lift), vouchers
redeemed with their spend, unsubscribes; shown to analysts, who see no one's details."""
from __future__ import annotations

import dataclasses
import datetime

from portal.activation import results, send, vouchers
from portal.activation.guards import in_holdout
from portal.activation.models import ActivationSend, Automation
from tests.activation.conftest import NOW, automation, person, visit

D = datetime.timedelta(days=1)


def test_lift_against_the_holdout(rt, ctx, recorder, as_role):
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, activation_holdout_percent=50))
    people = [person(rt.vault, f"p{i}@example.com") for i in range(12)]
    auto = automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    held = [p for p in people if in_holdout(auto.uid, p.uid, 50)]
    treated = [p for p in people if p not in held]
    assert held and treated and len(recorder.sent) == len(treated)
    # Every treated person comes back within 14 days (one at day 15: too late); one held-out person does.
    for p in treated[1:]:
        visit(p, NOW + 3 * D)
    visit(treated[0], NOW + 15 * D)
    visit(held[0], NOW + 2 * D)
    code = ActivationSend.get(ActivationSend.lead == treated[1]).voucher_code
    vouchers.redeem(code, 90000, "manager:owner1")
    r = results.of(auto.id)
    assert (r.sent, r.delivered, r.failed, r.redeemed, r.spend) == (len(treated), len(treated), 0, 1, 90000)
    assert (r.people, r.people_visited, r.holdout, r.holdout_visited) == (len(treated), len(treated) - 1, len(held), 1)
    expected = round(round(100 * (len(treated) - 1) / len(treated), 1) - round(100 / len(held), 1), 1)
    assert r.lift == expected
    page = as_role("analyst").get("/panel/activation").get_data(as_text=True)
    assert f"{expected:+.1f} points" in page and "@example.com" not in page
    assert f"/panel/activation/{auto.uid}" not in page  # no edit link for analysts


def test_no_holdout_no_lift(rt, ctx):
    person(rt.vault)
    auto = automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    r = results.of(Automation.get_by_id(auto.id).id)
    assert r.holdout == 0 and r.lift is None and r.delivered == 1


def test_visits_of_people_not_followed_are_not_counted(rt, ctx):
    lan = person(rt.vault, purposes=("marketing_email",))  # no visit_analytics: a campaign reaches her
    auto = automation("campaign", ctx.tz, segment="")
    send.run(ctx, NOW)
    visit(lan, NOW + 2 * D)
    r = results.of(auto.id)
    assert r.delivered == 1 and (r.people, r.people_visited) == (0, 0)

"""Frequency, recency and dwell per person across devices, or per anonymous device."""
import datetime

import pytest
from click.testing import CliRunner

from portal.cli import main
from portal import consent
from portal.db import database
from portal.models import Device, Lead, Visit
from portal.visits import ESTIMATE_NOTE, summarize, visitor_stats

NOW = datetime.datetime(2026, 11, 23, 12, 0)


def visit(device, days_ago, minutes, passerby=False, source="lan"):
    start = NOW - datetime.timedelta(days=days_ago)
    Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=minutes), passerby=passerby, source=source)


def populate():
    lan = Lead.create(language="vi")
    consent.record(lan, "visit_analytics", True, consent.Where("store-1", None, None, "portal_form"))  # followed (issue 15)
    phone = Device.create(mac="3c:22:fb:00:00:01", lead=lan)
    laptop = Device.create(mac="00:1a:11:00:00:02", lead=lan)
    anon = Device.create(mac="anon-00112233445566778899aabbccddeeff", randomized=True, anonymous=True)
    old = Device.create(mac="anon-ffeeddccbbaa99887766554433221100", anonymous=True)
    visit(phone, 1, 30)
    visit(laptop, 3, 60)
    visit(phone, 10, 20)
    visit(anon, 2, 15)
    visit(anon, 2, 2, passerby=True)  # passers-by are not visits
    visit(anon, 2, 10, source="air")  # nor are probe requests
    visit(old, 200, 45)               # outside the window
    return lan


def test_a_person_is_counted_across_devices(app):
    lan = populate()
    stats = visitor_stats(90, NOW)
    assert [s.subject for s in stats] == [f"lead:{lan.uid}", "device:anon-00112233445566778899aabbccddeeff"]
    person, anon = stats
    assert (person.devices, person.visits, person.recency_days, person.median_dwell_minutes) == (2, 3, 0.98, 30.0)
    assert not person.randomized
    assert (anon.visits, anon.randomized, anon.lead_uid) == (1, True, None)


def test_summary_says_anonymous_counts_are_estimates(app):
    populate()
    s = summarize(visitor_stats(90, NOW), 90)
    assert (s.people, s.anonymous_devices, s.anonymous_randomized, s.visits, s.returning) == (1, 1, 1, 4, 1)
    assert "estimates" in s.note


def test_erased_leads_become_anonymous(app):
    lan = populate()
    Lead.update(erased_at=NOW).where(Lead.id == lan.id).execute()
    subjects = {s.subject for s in visitor_stats(90, NOW)}
    assert f"lead:{lan.uid}" not in subjects and "device:3c:22:fb:00:00:01" in subjects


@pytest.mark.parametrize("how", ["withdrew", "restricted", "never_agreed"])
def test_a_person_whose_visits_may_not_be_followed_is_no_person_in_the_figures(app, settings, how):
    """Withdrawn visit analytics, an objection or restriction upheld, or no consent: the visits
    count, the person is not followed (no person, not new nor returning, no MAC printed)."""
    lan = populate()
    if how == "withdrew":
        consent.record(lan, "visit_analytics", False, consent.Where("store-1", None, None, "portal_form"))
    elif how == "restricted":
        Lead.update(restricted_at=NOW).where(Lead.id == lan.id).execute()
    else:
        consent.Consent.delete().where(consent.Consent.lead == lan).execute()
    from portal.metrics import dashboard
    board = dashboard(NOW)
    assert (board.new_30, board.returning_30, board.visits_30) == (0, 0, 4)  # the dashboard agrees
    stats = visitor_stats(90, NOW)
    assert f"lead:{lan.uid}" not in {s.subject for s in stats} and all(s.kind is None for s in stats)
    s = summarize(stats, 90)
    # A withdrawal also unlinks the visits kept: one pseudonym per device and day (phone twice, laptop once).
    devices = 4 if how == "withdrew" else 3
    assert (s.people, s.anonymous_devices, s.visits, s.new, s.returning) == (0, devices, 4, 0, 0)
    database.close()
    result = CliRunner().invoke(main, ["visits", "--days", "3650"], env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    assert "0 known people" in result.output and "0 new and 0 returning" in result.output
    assert "3c:22:fb:00:00:01" not in result.output
    assert ("(not followed: MAC not shown)" in result.output) is (how != "withdrew")  # withdrawn: all pseudonyms


def test_cli_report(app, settings):
    populate()
    database.close()
    result = CliRunner().invoke(main, ["visits", "--days", "3650"], env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    assert ESTIMATE_NOTE in result.output and "known people" in result.output
    assert "(private address: estimate)" in result.output


# -- new and returning: one definition, the same answer everywhere -------------------------------

def shop():
    """Visitors of the last 30 days and around it; returns the leads by name."""
    leads = {name: Lead.create(language="en") for name in ("ana", "binh", "chi", "dung", "em", "edge_in", "edge_out")}
    for lead in leads.values():  # people whose visits may be followed (dashboard and segments need it, issue 15)
        consent.record(lead, "visit_analytics", True, consent.Where("store-1", None, None, "portal_form"))
    devices = {name: Device.create(mac=f"02:00:00:00:01:{i:02x}", lead=lead) for i, (name, lead) in enumerate(leads.items())}
    laptop = Device.create(mac="02:00:00:00:02:01", lead=leads["dung"])
    twice = Device.create(mac="da:00:00:00:03:01", randomized=True)
    once = Device.create(mac="da:00:00:00:03:02", randomized=True)
    passing = Device.create(mac="da:00:00:00:03:03", randomized=True)
    visit(devices["ana"], 2, 20)                              # new: one visit, the first
    visit(devices["binh"], 1, 30), visit(devices["binh"], 10, 30)   # returning: twice in the window
    visit(devices["chi"], 5, 30), visit(devices["chi"], 60, 30)     # returning: back after two months
    visit(devices["dung"], 3, 30), visit(laptop, 40, 30)            # returning: a person, across devices
    visit(devices["em"], 45, 30)                              # neither: not in the window
    visit(devices["edge_in"], 29.9, 30)                       # new: just inside 30 x 24 h
    visit(devices["edge_out"], 30.1, 30)                      # neither: just outside
    visit(twice, 4, 20), visit(twice, 6, 20)                  # an anonymous device, returning
    visit(once, 1, 20)                                        # an anonymous device, new
    visit(passing, 1, 2, passerby=True)                       # a passer-by: not a visitor
    return leads


def test_dashboard_segments_and_cli_agree_on_new_and_returning(app, settings):
    from portal import metrics, segments
    from portal.models import Segment

    leads = shop()
    figures = metrics.dashboard(NOW)
    # Totals count everyone; new and returning on the dashboard only people (anonymous devices are not followed).
    assert (figures.visitors_30, figures.visits_30, figures.new_30, figures.returning_30) == (7, 9, 2, 3)

    segments.recompute(NOW)
    members = {key: {m.lead_id for m in Segment.get(Segment.key == key).segmentmember_set} for key in ("new", "returning")}
    assert members == {"new": {leads["ana"].id, leads["edge_in"].id},
                       "returning": {leads["binh"].id, leads["chi"].id, leads["dung"].id}}

    stats = visitor_stats(30, NOW)
    kinds = {s.lead_uid or s.subject: s.kind for s in stats}
    # Only people whose visits may be followed are new or returning (issue 15), as on the dashboard.
    assert kinds == {leads["ana"].uid: "new", leads["edge_in"].uid: "new", "device:da:00:00:00:03:02": None,
                     leads["binh"].uid: "returning", leads["chi"].uid: "returning", leads["dung"].uid: "returning",
                     "device:da:00:00:00:03:01": None}
    summary = summarize(stats, 30)
    assert (summary.new, summary.returning) == (figures.new_30, figures.returning_30) == (2, 3)


def test_cli_says_the_same(app, settings, monkeypatch):
    shop()
    database.close()
    # `footfall visits` counts back from the real clock: move the fixture's NOW to it.
    import portal.visits
    monkeypatch.setattr(portal.visits, "utcnow", lambda: NOW)
    result = CliRunner().invoke(main, ["visits", "--days", "30"], env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    assert "Last 30 days: 9 visits; 5 known people; 2 anonymous devices" in result.output
    assert "2 new and 3 returning" in result.output


def test_former_built_in_rules_are_replaced_but_an_owners_edit_is_kept(app):
    import json

    from portal import segments
    from portal.models import Segment
    from portal.core.segment_rules import BUILTIN, FORMER_BUILTIN

    segments.ensure_builtins()
    Segment.update(rule=json.dumps(FORMER_BUILTIN["new"])).where(Segment.key == "new").execute()
    edited = {"visits_min": 3, "window_days": 30}
    Segment.update(rule=json.dumps(edited)).where(Segment.key == "returning").execute()
    segments.ensure_builtins()
    assert json.loads(Segment.get(Segment.key == "new").rule) == BUILTIN["new"][1]
    assert json.loads(Segment.get(Segment.key == "returning").rule) == edited


def test_visitor_kind_is_the_definition():
    from portal.core.segment_rules import NEW, RETURNING, visitor_kind

    assert visitor_kind(0, False) is None and visitor_kind(0, True) is None
    assert visitor_kind(1, False) == NEW
    assert visitor_kind(1, True) == RETURNING and visitor_kind(2, False) == RETURNING
    with pytest.raises(ValueError):
        visitor_kind(-1, False)

"""Frequency, recency and dwell per person across devices, or per anonymous device."""
import datetime

from click.testing import CliRunner

from portal.cli import main
from portal.db import database
from portal.models import Device, Lead, Visit
from portal.visits import ESTIMATE_NOTE, summarize, visitor_stats

NOW = datetime.datetime(2026, 11, 23, 12, 0)


def visit(device, days_ago, minutes, passerby=False, source="lan"):
    start = NOW - datetime.timedelta(days=days_ago)
    Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=minutes), passerby=passerby, source=source)


def populate():
    lan = Lead.create(language="vi")
    phone = Device.create(mac="3c:22:fb:00:00:01", lead=lan)
    laptop = Device.create(mac="00:1a:11:00:00:02", lead=lan)
    anon = Device.create(mac="da:a1:19:00:00:03", randomized=True)
    old = Device.create(mac="3c:22:fb:00:00:04")
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
    assert [s.subject for s in stats] == [f"lead:{lan.uid}", "device:da:a1:19:00:00:03"]
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


def test_cli_report(app, settings):
    populate()
    database.close()
    result = CliRunner().invoke(main, ["visits", "--days", "3650"], env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    assert ESTIMATE_NOTE in result.output and "known people" in result.output
    assert "(private address: estimate)" in result.output

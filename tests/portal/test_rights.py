"""Issue 15 rights on the appliance, without HTTP: restriction told to the central store, the store's
time zone for the desk's clocks, the export log's retention, just connect forgetting the device when
its session ends, breach descriptions encrypted at rest."""
import dataclasses
import datetime
import json
from pathlib import Path

import pytest

from portal import compliance, privacy, retention, sync
from portal.config import ConfigError, database_path, load_settings
from portal.core import deadlines
from portal.core.events import validate
from portal.db import database
from portal.models import (AuditEntry, Authorization, Breach, Device, ExportLog, ExportMember, Lead, OutboxEvent, Visit,
                           utcnow)
from portal.visitors import Client, SignInForm
from tests.conftest import prove_claims


def a_person(visitors, i=0):
    client = Client(f"10.0.3.{i + 1}", f"02:00:00:00:03:{i:02x}")
    outcome = visitors.sign_in(SignInForm(email=f"r{i}@example.com", terms=True, adult=True,
                                          marketing=frozenset({"marketing_email"}),
                                          analytics=frozenset({"visit_analytics"})), client)
    prove_claims(visitors, outcome, client)
    return Lead.get(Lead.email_index == visitors.vault.blind_index("email", f"r{i}@example.com"))


def wire_events(visitors, topic):
    return [sync.to_wire(e, visitors.vault) for e in OutboxEvent.select().where(OutboxEvent.topic == topic).order_by(OutboxEvent.id)]


# -- restriction reaches the central store ------------------------------------------------------------

def test_restricting_and_lifting_go_to_the_outbox_and_read_the_state_when_sent(visitors):
    lead = a_person(visitors)
    privacy.restrict(lead, "manager:m", "objection")
    sent = wire_events(visitors, "lead.restricted")
    assert [e["data"] for e in sent] == [{"lead": lead.uid, "restricted": True}]
    assert validate(sent[0]).data["restricted"] is True  # what the central accepts
    privacy.lift_restriction(Lead.get_by_id(lead.id), "manager:m")
    # Both events are still waiting: each says what is true when the push reads it (lifted).
    assert [e["data"]["restricted"] for e in wire_events(visitors, "lead.restricted")] == [False, False]
    privacy.restrict(Lead.get_by_id(lead.id), "manager:m", "restriction")
    assert [e["data"]["restricted"] for e in wire_events(visitors, "lead.restricted")] == [True, True, True]


def test_an_upheld_objection_on_the_desk_tells_the_central(visitors, settings):
    lead = a_person(visitors)
    request = privacy.open_request("objection", utcnow(), privacy.rules_from(settings), visitors.vault, "manager:m", lead)
    privacy.verify_manually(request, "in_person", "manager:m")
    privacy.close_request(request, "done", "manager:m")
    assert [e["data"] for e in wire_events(visitors, "lead.restricted")] == [{"lead": lead.uid, "restricted": True}]


# -- the store's time zone ---------------------------------------------------------------------------

@pytest.fixture
def machine_in_new_york(machine_zone):
    machine_zone("America/New_York")


def test_the_desk_counts_days_in_the_stores_zone_not_the_machines(settings, machine_in_new_york):
    # Thursday 30 April 2026 01:00 UTC is Thursday 08:00 in Hanoi, Wednesday 21:00 in New York.
    received = datetime.datetime(2026, 4, 30, 1, 0)
    hanoi = dataclasses.replace(settings, store_time_zone="Asia/Ho_Chi_Minh", public_holidays="2026-04-30,2026-05-01")
    clock = deadlines.request_clock(received, *privacy.rules_from(hanoi), processor=False)
    # Friday 1 May is a holiday and the weekend follows: the two working days are Mon 4 and Tue 5 May.
    assert clock.ack_due == datetime.datetime(2026, 5, 5, 16, 59, 59, 999999)  # the end of 5 May in Hanoi
    assert clock.due == datetime.datetime(2026, 5, 15, 16, 59, 59, 999999)
    machine = dataclasses.replace(hanoi, store_time_zone="")  # empty: the machine's (New York) calendar
    assert deadlines.request_clock(received, *privacy.rules_from(machine), processor=False).due.hour == 3  # 23:59 EDT


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "Asia/Ho_Chi_Minh\n", "UTC; rm", "x" * 80])
def test_a_zone_that_is_none_is_refused_by_name(tmp_path, name):
    with pytest.raises(ConfigError, match="store_time_zone"):
        load_settings(environ={}, data_dir=str(tmp_path), store_time_zone=name)


def test_a_breach_detected_at_a_local_time_is_read_in_the_stores_zone(machine_in_new_york):
    tz = deadlines.zone("Asia/Ho_Chi_Minh")
    assert deadlines.to_utc(datetime.datetime(2026, 3, 2, 8, 0), tz) == datetime.datetime(2026, 3, 2, 1, 0)


# -- the export log's retention ----------------------------------------------------------------------

def test_the_purge_deletes_export_log_entries_past_their_retention(app, visitors):
    lead = a_person(visitors)
    now = utcnow()
    old = ExportLog.create(actor="manager:m", segment_key="all", segment_name="All", kind="meta", members=1,
                           created_at=now - datetime.timedelta(days=1096))
    recent = ExportLog.create(actor="manager:m", segment_key="all", segment_name="All", kind="meta", members=1,
                              created_at=now - datetime.timedelta(days=1094))
    for log in (old, recent):
        ExportMember.create(export=log, lead=lead, email_hash="e" * 64)
    assert retention.purge_export_log(1095, now) == 1
    assert [e.id for e in ExportLog.select()] == [recent.id]
    assert [m.export_id for m in ExportMember.select()] == [recent.id]
    assert AuditEntry.get(AuditEntry.action == "export_log_purged").detail == json.dumps(
        {"exports": 1, "retention_days": 1095}, sort_keys=True)
    assert retention.purge_export_log(1095, now) == 0  # idempotent


def test_the_default_export_log_retention_is_three_years(tmp_path):
    assert load_settings(environ={}, data_dir=str(tmp_path)).export_log_retention_days == 1095
    with pytest.raises(ConfigError, match="export_log_retention_days"):
        load_settings(environ={}, data_dir=str(tmp_path), export_log_retention_days=0)


# -- just connect --------------------------------------------------------------------------------------

@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, just_connect=True)


def test_just_connect_keeps_the_device_only_while_its_session_lasts(app, visitors, settings):
    guest, other = Client("10.0.4.1", "02:00:00:00:04:01"), Client("10.0.4.2", "02:00:00:00:04:02")
    assert visitors.just_connect(guest, True, "vi").ok and visitors.just_connect(other, True, "en").ok
    start = utcnow() - datetime.timedelta(hours=1)  # the collector saw the other one: an anonymous visit
    Visit.create(device=Device.get(Device.mac == other.mac), start=start, end=start + datetime.timedelta(minutes=20))
    during = retention.forget_just_connect(settings.session_seconds)
    assert during == {"authorizations": 0, "devices": 0, "audit_ips": 0}  # still online: nothing forgotten
    assert Device.select().count() == 2
    later = utcnow() + datetime.timedelta(seconds=settings.session_seconds + 1)
    assert retention.forget_just_connect(settings.session_seconds, later) == {"authorizations": 2, "devices": 1, "audit_ips": 2}
    assert Device.get_or_none(Device.mac == guest.mac) is None
    kept = Device.get(Device.mac == other.mac)  # the collector's anonymous device, as any other
    assert kept.last_ip is None and Authorization.select().count() == 0
    assert [e.ip for e in AuditEntry.select().where(AuditEntry.action == "just_connect")] == [None, None]
    # Nothing of the guest's MAC or address is left in the database's rows.
    with database.connection_context():
        dump = "\n".join(database.connection().iterdump())
    assert guest.mac not in dump and "10.0.4.1" not in dump


def test_a_device_that_signed_in_since_is_not_forgotten(app, visitors, settings):
    guest = Client("10.0.4.3", "02:00:00:00:04:03")
    assert visitors.just_connect(guest, True, "vi").ok
    assert visitors.sign_in(SignInForm(email="later@example.com", terms=True), guest).ok
    later = utcnow() + datetime.timedelta(seconds=settings.session_seconds + 1)
    retention.forget_just_connect(settings.session_seconds, later)
    assert Device.get(Device.mac == guest.mac).lead is not None


# -- breaches at rest ----------------------------------------------------------------------------------

def test_a_breach_description_is_encrypted_at_rest(app, visitors, settings):
    secret = "Laptop of Nguyễn Văn Thành stolen with export 7"
    row = compliance.record_breach(utcnow(), secret, "emails", "12", "Passwords rotated at Chi nhánh Q1", "owner:o",
                                   visitors.vault)
    assert compliance.breach_texts(Breach.get_by_id(row.id), visitors.vault) == (secret, "Passwords rotated at Chi nhánh Q1")
    database.close()
    path = database_path(settings)
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    for needle in (secret, "Nguyễn Văn Thành", "Passwords rotated"):
        assert needle.encode() not in raw, needle


def test_rows_from_before_the_migration_are_sealed(app, visitors):
    legacy = Breach.create(detected_at=utcnow(), description="Old plain text", measures="Old measures", recorded_by="owner:o")
    assert compliance.breach_texts(legacy, visitors.vault) == ("Old plain text", "Old measures")
    assert compliance.seal_breaches(visitors.vault) == 1
    sealed = Breach.get_by_id(legacy.id)
    assert (sealed.description, sealed.measures) == ("", "") and sealed.description_enc is not None
    assert compliance.breach_texts(sealed, visitors.vault) == ("Old plain text", "Old measures")
    assert compliance.seal_breaches(visitors.vault) == 0

"""The privacy desk under Law 91/2025 and Decree 356/2025, through the panel: the clocks on a
simulated calendar, the requester's verification, restriction that really excludes, and the
owner's compliance pack (transfers gating exports, the breach clock, the record, the dossier)."""
import dataclasses
import datetime
import json
import time

import pytest

from portal import compliance, privacy
from portal.config import ConfigError, load_settings
from portal.core import deadlines
from portal.models import AuditEntry, Breach, DataRequest, Lead, Segment, SegmentMember, TransferAssessment, VerificationCode
from portal.visitors import Client, SignInForm
from tests.conftest import prove_claims

UTC = datetime.timezone.utc
HANOI = datetime.timezone(datetime.timedelta(hours=7))
# 30 April and 1 May 2026 (Thursday, Friday) are public holidays in Vietnam.
HOLIDAYS = "2026-04-30,2026-05-01"


def utc(*args) -> datetime.datetime:
    return datetime.datetime(*args)


def end_of_local_day(y, m, d) -> datetime.datetime:
    """23:59:59.999999 in Hanoi, as naive UTC."""
    return datetime.datetime(y, m, d, 16, 59, 59, 999999)


# -- the clocks, as pure arithmetic -------------------------------------------------------------------

def test_acknowledgement_counts_working_days_of_the_local_calendar():
    plain = deadlines.Calendar(tz=HANOI)
    holidays = deadlines.Calendar(deadlines.parse_holidays(HOLIDAYS), tz=HANOI)
    wednesday = utc(2026, 4, 29, 2, 0)  # 09:00 in Hanoi
    assert plain.add_working_days(wednesday, 2) == end_of_local_day(2026, 5, 1)  # Thursday, Friday
    assert holidays.add_working_days(wednesday, 2) == end_of_local_day(2026, 5, 5)  # Monday, Tuesday
    # 18:00 UTC on Thursday is already Friday in Hanoi: Monday and Tuesday, not Friday and Monday.
    assert plain.add_working_days(utc(2026, 1, 8, 18, 0), 2) == end_of_local_day(2026, 1, 13)
    saturday = utc(2026, 1, 10, 3, 0)
    assert plain.add_working_days(saturday, 2) == end_of_local_day(2026, 1, 13)


def test_completion_processor_and_one_extension_count_calendar_days():
    cal = deadlines.Calendar(deadlines.parse_holidays(HOLIDAYS), tz=HANOI)
    periods = deadlines.Periods(15, 20, 15)
    received = utc(2026, 4, 29, 2, 0)
    clock = deadlines.request_clock(received, cal, periods, processor=False)
    assert clock.due == end_of_local_day(2026, 5, 14)
    assert deadlines.request_clock(received, cal, periods, processor=True).due == end_of_local_day(2026, 5, 19)
    assert deadlines.extended(clock.due, cal, periods) == end_of_local_day(2026, 5, 29)


@pytest.mark.parametrize("text", ["2026-13-01", "30/04/2026", "tomorrow"])
def test_bad_holidays_are_refused_by_name(text):
    with pytest.raises(ValueError, match=text.replace("/", ".")):
        deadlines.parse_holidays(f"2026-01-01, {text}")
    with pytest.raises(ConfigError, match="public_holidays"):
        load_settings(environ={}, public_holidays=text)


def test_processor_period_cannot_be_shorter():
    with pytest.raises(ConfigError, match="dsr_processor_days"):
        load_settings(environ={}, dsr_deadline_days=15, dsr_processor_days=10)


# -- through the panel ------------------------------------------------------------------------------

@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, public_holidays=HOLIDAYS, email_driver="smtp", smtp_host="127.0.0.1",
                               smtp_port=smtp_server[0], smtp_security="none", smtp_from="wifi@shop.test",
                               dpo_contact="Chị Hoa, dpo@shop.test")


@pytest.fixture
def hanoi(machine_zone):
    """The machine's zone is Hanoi's (the desk counts days on the local calendar)."""
    machine_zone("Asia/Ho_Chi_Minh")


@pytest.fixture
def at(monkeypatch):
    """Set the desk's and the pack's clock: at(datetime in naive UTC)."""
    def move(when: datetime.datetime):
        for module in ("portal.privacy", "portal.panel.privacy_desk", "portal.compliance", "portal.panel.compliance"):
            monkeypatch.setattr(f"{module}.utcnow", lambda: when)
    return move


@pytest.fixture
def people(app):
    """Four people who agreed to emails and proved their address; a visit each."""
    from portal.models import Device, Visit, utcnow
    visitors = app.extensions["footfall"].visitors
    for i in range(4):
        mac = f"02:00:00:00:02:{i:02x}"
        client = Client(f"10.0.2.{i + 1}", mac)
        outcome = visitors.sign_in(SignInForm(email=f"q{i}@example.com", terms=True, adult=True,
                                              marketing=frozenset({"marketing_email"}),
                                              analytics=frozenset({"visit_analytics"})), client)
        prove_claims(visitors, outcome, client)
        start = utcnow() - datetime.timedelta(days=1)
        Visit.create(device=Device.get(Device.mac == mac), start=start, end=start + datetime.timedelta(minutes=30))
    # They signed in hours ago: the codes their sign-in sent are past the resend cooldown.
    for row in VerificationCode.select():
        VerificationCode.update(created_at=row.created_at - datetime.timedelta(hours=2)).where(VerificationCode.id == row.id).execute()
    return visitors


def wait_codes(inbox, to: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(inbox.codes(to)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    codes = inbox.codes(to)
    assert len(codes) >= count, f"no code reached {to}"
    return codes


def lead_of(visitors, email: str) -> Lead:
    return Lead.get(Lead.email_index == visitors.vault.blind_index("email", email))


def test_the_clocks_on_a_simulated_calendar(as_role, hanoi, at):
    client = as_role("manager")
    at(utc(2026, 4, 29, 2, 0))  # Wednesday 09:00 in Hanoi, before the 30 April and 1 May holidays
    client.form("/panel/privacy/requests", {"kind": "restriction", "requester": "Anh Minh"})
    client.form("/panel/privacy/requests", {"kind": "provision", "processor": "yes"})
    plain, with_processor = DataRequest.select().order_by(DataRequest.id)
    assert (plain.ack_due_at, plain.due_at) == (end_of_local_day(2026, 5, 5), end_of_local_day(2026, 5, 14))
    assert (with_processor.ack_due_at, with_processor.due_at) == (end_of_local_day(2026, 5, 5), end_of_local_day(2026, 5, 19))
    assert "past a deadline" not in client.get("/panel/privacy").get_data(as_text=True)

    at(utc(2026, 5, 6, 3, 0))  # Wednesday: nobody acknowledged them
    page = client.get("/panel/privacy").get_data(as_text=True)
    assert "2 request(s) past a deadline" in page
    client.form(f"/panel/privacy/requests/{plain.id}/acknowledge", {})
    assert DataRequest.get_by_id(plain.id).acknowledged_at == utc(2026, 5, 6, 3, 0)
    assert "1 request(s) past a deadline" in client.get("/panel/privacy").get_data(as_text=True)

    refused = client.form(f"/panel/privacy/requests/{plain.id}/extend", {"reason": "   "})
    assert "error=reason_needed" in refused.headers["Location"]
    assert DataRequest.get_by_id(plain.id).due_at == end_of_local_day(2026, 5, 14)
    client.form(f"/panel/privacy/requests/{plain.id}/extend", {"reason": "Records kept by our processor"})
    extended = DataRequest.get_by_id(plain.id)
    assert extended.due_at == end_of_local_day(2026, 5, 29) and extended.extension_reason == "Records kept by our processor"
    again = client.form(f"/panel/privacy/requests/{plain.id}/extend", {"reason": "more time"})
    assert "error=extended_already" in again.headers["Location"]
    assert DataRequest.get_by_id(plain.id).due_at == end_of_local_day(2026, 5, 29)

    at(utc(2026, 5, 14, 16, 59))  # the last minute of the first deadline: not late
    assert privacy.clock_flags(DataRequest.get_by_id(plain.id), utc(2026, 5, 14, 16, 59)) == []
    at(utc(2026, 5, 30, 0, 0))
    row = client.get("/panel/privacy").get_data(as_text=True).split(f'id="request-{plain.id}"')[1].split("</tr>")[0]
    assert "overdue" in row


def test_unknown_person_or_kind_changes_nothing(as_role, people):
    client = as_role("manager")
    for data, code in (({"kind": "access", "person": "nobody@example.com"}, "person_unknown"),
                       ({"kind": "erasure"}, "kind_unknown"), ({"kind": "gossip"}, "kind_unknown")):
        assert f"error={code}" in client.form("/panel/privacy/requests", data).headers["Location"]
    assert DataRequest.select().count() == 0
    client.form("/panel/privacy/requests", {"kind": "access", "person": " Q1@Example.com "})
    assert DataRequest.get().lead_id == lead_of(people, "q1@example.com").id


def test_a_code_to_the_records_email_verifies_the_requester(as_role, people, smtp_server):
    client = as_role("manager")
    client.form("/panel/privacy/requests", {"kind": "provision", "requester": "by phone"})
    request = DataRequest.get()
    assert "error=person_needed" in client.form(f"/panel/privacy/requests/{request.id}/code", {"contact": "email"}).headers["Location"]
    assert "error=verify_first" in client.form(f"/panel/privacy/requests/{request.id}", {"status": "done"}).headers["Location"]
    client.form(f"/panel/privacy/requests/{request.id}/link", {"person": "q2@example.com"})
    assert "error=record_contact_missing" in client.form(f"/panel/privacy/requests/{request.id}/code", {"contact": "phone"}).headers["Location"]
    wait_codes(smtp_server[1], "q2@example.com", 1)  # the one her sign-in sent
    sent = client.form(f"/panel/privacy/requests/{request.id}/code", {"contact": "email"})
    assert "sent=email" in sent.headers["Location"]
    code = wait_codes(smtp_server[1], "q2@example.com", 2)[-1]

    provision = client.get(f"/panel/privacy/requests/{request.id}/provision.json")
    assert provision.status_code == 302 and "error=verify_first" in provision.headers["Location"]
    wrong = "000000" if code != "000000" else "111111"
    assert "error=code_wrong" in client.form(f"/panel/privacy/requests/{request.id}/code/check", {"code": wrong}).headers["Location"]
    assert DataRequest.get_by_id(request.id).verified_at is None
    client.form(f"/panel/privacy/requests/{request.id}/code/check", {"code": code})
    checked = DataRequest.get_by_id(request.id)
    assert (checked.verify_method, checked.verified_by) == ("code:email", "manager:manager1")
    assert "code sent to the email on file" in client.get("/panel/privacy").get_data(as_text=True)
    body = json.loads(client.get(f"/panel/privacy/requests/{request.id}/provision.json").get_data())
    assert body["person"]["email"] == "q2@example.com" and body["request"]["kind"] == "provision"
    client.form(f"/panel/privacy/requests/{request.id}", {"status": "done"})
    assert DataRequest.get_by_id(request.id).status == "done"
    assert {"request_code_sent", "request_verified", "person_provided", "request_closed"} <= {e.action for e in AuditEntry.select()}


def test_a_manual_check_names_its_method(as_role, people):
    client = as_role("manager")
    client.form("/panel/privacy/requests", {"kind": "access", "person": "q0@example.com"})
    request = DataRequest.get()
    assert "error=method_unknown" in client.form(f"/panel/privacy/requests/{request.id}/verify", {"method": "trust me"}).headers["Location"]
    client.form(f"/panel/privacy/requests/{request.id}/verify", {"method": "id_document"})
    assert DataRequest.get_by_id(request.id).verify_method == "id_document"
    # Linking someone else forgets a check made about the first person.
    client.form(f"/panel/privacy/requests/{request.id}/link", {"person": "q3@example.com"})
    assert DataRequest.get_by_id(request.id).verified_at is None


def export_emails(client, key: str) -> set[str]:
    lines = client.get(f"/panel/segments/{key}/export/csv").get_data(as_text=True).strip().splitlines()[1:]
    return {line.split(",")[0] for line in lines}


def test_an_upheld_objection_keeps_the_person_out_of_segments_and_exports(as_role, people):
    client = as_role("owner")
    client.form("/panel/segments/new", {"name": "Everyone", "visits_min": "1", "window_days": "30"})
    client.form("/panel/segments/recompute", {})
    segment = Segment.get(Segment.name == "Everyone")
    assert export_emails(client, segment.key) == {f"q{i}@example.com" for i in range(4)}

    client.form("/panel/privacy/requests", {"kind": "objection"})
    orphan = DataRequest.get()
    client.form(f"/panel/privacy/requests/{orphan.id}/verify", {"method": "in_person"})
    assert "error=person_needed" in client.form(f"/panel/privacy/requests/{orphan.id}", {"status": "done"}).headers["Location"]
    assert DataRequest.get_by_id(orphan.id).status == "open"

    client.form(f"/panel/privacy/requests/{orphan.id}/link", {"person": "q1@example.com"})
    client.form(f"/panel/privacy/requests/{orphan.id}/verify", {"method": "in_person"})
    client.form(f"/panel/privacy/requests/{orphan.id}", {"status": "done"})
    q1 = lead_of(people, "q1@example.com")
    assert q1.restricted_at is not None and DataRequest.get_by_id(orphan.id).status == "done"
    assert Segment.get_by_id(segment.id).members == 3  # out at once, before any recompute
    assert "q1@example.com" not in export_emails(client, segment.key)
    client.form("/panel/segments/recompute", {})
    assert not SegmentMember.select().where(SegmentMember.lead == q1).exists()  # segments skip restricted people
    SegmentMember.create(segment=segment, lead=q1)  # a membership written by a recompute racing the restriction
    assert "q1@example.com" not in export_emails(client, segment.key)  # exports skip them too
    assert "restricted since" in client.get(f"/panel/leads/{q1.uid}").get_data(as_text=True)

    client.form(f"/panel/leads/{q1.uid}/restrict", {"lift": "yes"})
    client.form("/panel/segments/recompute", {})
    assert "q1@example.com" in export_emails(client, segment.key)
    assert "error=not_restricted" in client.form(f"/panel/leads/{q1.uid}/restrict", {"lift": "yes"}).headers["Location"]


def test_erasures_made_on_the_portal_appear_in_the_desk(app, as_role, people):
    q3 = lead_of(people, "q3@example.com")
    assert people.erase(Client("10.0.2.4", "02:00:00:00:02:03"), proven={q3.uid}).ok  # proved by a code this session
    assert Lead.get_by_id(q3.id).erased_at is not None
    table = as_role("manager").get("/panel/privacy").get_data(as_text=True).split('id="on-portal"')[1]
    assert "deletion" in table and "on the portal" in table and q3.uid in table


# -- the compliance pack ----------------------------------------------------------------------------

def test_the_transfer_register_gates_ad_exports(as_role, people, at):
    owner, manager = as_role("owner"), as_role("manager")
    owner.form("/panel/segments/recompute", {})
    refused = manager.get("/panel/segments/loyal/export/google")
    assert refused.status_code == 409 and "Ask the store&#39;s owner" in refused.get_data(as_text=True)
    assert not AuditEntry.select().where(AuditEntry.action == "export").exists()
    at(utc(2026, 3, 1, 5, 0))
    for data, code in (({"platform": "google", "assessed_on": "2026-03-02"}, "assessed_on_future"),
                       ({"platform": "google", "assessed_on": "1 March"}, "assessed_on"),
                       ({"platform": "tiktok", "assessed_on": "2026-02-01"}, "platform_unknown"),
                       ({"platform": "google", "assessed_on": "2026-02-01", "country": "x" * 61}, "country_long")):
        assert f"error={code}" in owner.form("/panel/compliance/transfers", data).headers["Location"]
    assert TransferAssessment.select().count() == 0
    assert manager.get("/panel/segments/loyal/export/google").status_code == 409
    owner.form("/panel/compliance/transfers", {"platform": "google", "assessed_on": "2026-02-01", "reference": "TIA-01"})
    row = TransferAssessment.get()
    assert (row.recipient, row.country, str(row.assessed_on)) == ("Google LLC", "United States", "2026-02-01")
    assert manager.get("/panel/segments/loyal/export/google").status_code == 200
    assert manager.get("/panel/segments/loyal/export/meta").status_code == 409  # each platform its own
    owner.form(f"/panel/compliance/transfers/{row.id}/withdraw", {})
    assert manager.get("/panel/segments/loyal/export/google").status_code == 409
    assert "error=transfer_unknown" in owner.form(f"/panel/compliance/transfers/{row.id}/withdraw", {}).headers["Location"]


def test_the_breach_clock(as_role, hanoi, at):
    owner = as_role("owner")
    at(utc(2026, 3, 2, 2, 0))
    before = Breach.select().count()
    for data, code in (({"description": "  "}, "description"), ({"description": "x", "people": "many"}, "people"),
                       ({"description": "x", "detected_at": "yesterday"}, "detected_at"),
                       ({"description": "x", "detected_at": "2026-03-03T09:00"}, "detected_future")):
        assert f"error={code}" in owner.form("/panel/compliance/breaches", data).headers["Location"]
    assert Breach.select().count() == before
    owner.form("/panel/compliance/breaches", {"detected_at": "2026-03-02T08:00", "description": "A laptop with an export was stolen",
                                             "people": "120", "data_kinds": "emails"})
    breach = Breach.get()
    assert breach.detected_at == utc(2026, 3, 2, 1, 0)  # 08:00 in Hanoi
    at(utc(2026, 3, 3, 1, 0))
    row = owner.get("/panel/compliance").get_data(as_text=True).split(f'id="breach-{breach.id}"')[1].split("</tr>")[0]
    assert "48.0 h left" in row and "overdue" not in row
    at(utc(2026, 3, 5, 1, 30))
    row = owner.get("/panel/compliance").get_data(as_text=True).split(f'id="breach-{breach.id}"')[1].split("</tr>")[0]
    assert "overdue" in row
    owner.form(f"/panel/compliance/breaches/{breach.id}/reported", {"reference": "A05-123"})
    reported = Breach.get_by_id(breach.id)
    assert reported.reported_at == utc(2026, 3, 5, 1, 30) and reported.reported_by == "manager:owner1"
    assert compliance.breach_state(reported, utc(2026, 3, 6))["late"] is True
    again = owner.form(f"/panel/compliance/breaches/{breach.id}/reported", {})
    assert "error=reported_already" in again.headers["Location"]
    assert "error=breach_unknown" in owner.form("/panel/compliance/breaches/999/reported", {}).headers["Location"]


def test_the_pack_shows_the_record_the_dossier_and_the_contact(as_role, people):
    owner = as_role("owner")
    owner.form("/panel/compliance/transfers", {"platform": "meta", "assessed_on": "2026-01-05"})
    page = owner.get("/panel/compliance").get_data(as_text=True)
    assert "Chị Hoa, dpo@shop.test" in page and "Record of processing" in page and "acknowledged within 2 working days" in page
    dossier = owner.get("/panel/compliance/dossier.md")
    text = dossier.get_data(as_text=True)
    assert dossier.mimetype == "text/markdown" and "impact assessment" in text
    assert "Chị Hoa, dpo@shop.test" in text and "meta: Meta Platforms, Inc. (United States), assessed on 2026-01-05" in text
    assert "People on file now: 4 (0 restricted" in text
    record = owner.get("/panel/compliance/record.md").get_data(as_text=True)
    assert "Data-protection contact: Chị Hoa, dpo@shop.test" in record
    assert "Compliance" in page and "Compliance" not in as_role("manager").get("/panel/privacy").get_data(as_text=True)


DESK_POSTS = ["/panel/privacy/requests/{id}/acknowledge", "/panel/privacy/requests/{id}/extend",
              "/panel/privacy/requests/{id}/verify", "/panel/privacy/requests/{id}/code",
              "/panel/privacy/requests/{id}/code/check", "/panel/privacy/requests/{id}/link"]


@pytest.mark.parametrize("path", DESK_POSTS)
def test_analysts_cannot_act_on_requests(as_role, path):
    manager = as_role("manager")
    manager.form("/panel/privacy/requests", {"kind": "access"})
    request = DataRequest.get()
    analyst = as_role("analyst")
    assert analyst.form(path.format(id=request.id), {"method": "in_person", "reason": "x"}).status_code == 403
    assert analyst.get(f"/panel/privacy/requests/{request.id}/provision.json").status_code == 403
    assert DataRequest.get_by_id(request.id).verified_at is None and DataRequest.get_by_id(request.id).acknowledged_at is None


def test_closed_requests_take_no_more_actions(as_role):
    client = as_role("manager")
    client.form("/panel/privacy/requests", {"kind": "correction"})
    request = DataRequest.get()
    client.form(f"/panel/privacy/requests/{request.id}", {"status": "refused"})
    for path in ("acknowledge", "verify"):
        assert "error=request_closed" in client.form(f"/panel/privacy/requests/{request.id}/{path}",
                                                     {"method": "in_person"}).headers["Location"]
    assert client.form("/panel/privacy/requests/999/acknowledge", {}).status_code == 404

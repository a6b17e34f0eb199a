"""Issue 15 in the panel: withdrawing visit analytics and chain sharing from the lead page (and the
event the central store reads), and the owner's privacy settings with clear labels."""
import dataclasses
import datetime

import pytest

from portal import consent
from portal.core.events import validate
from portal.models import AuditEntry, Device, Lead, OutboxEvent, Segment, SegmentMember, StoreSetting, Visit, utcnow
from portal.sync import to_wire
from portal.visitors import Client, SignInForm
from tests.conftest import prove_claims


@pytest.fixture
def lan(app):
    visitors = app.extensions["footfall"].visitors
    client = Client("10.0.5.1", "02:00:00:00:05:01")
    outcome = visitors.sign_in(SignInForm(email="lan@example.com", terms=True, adult=True,
                                          marketing=frozenset({"marketing_email"}),
                                          analytics=frozenset({"visit_analytics", "chain_sharing"})), client)
    prove_claims(visitors, outcome, client)
    start = utcnow() - datetime.timedelta(days=1)
    Visit.create(device=Device.get(Device.mac == client.mac), start=start, end=start + datetime.timedelta(minutes=30))
    return Lead.get(Lead.email_index == visitors.vault.blind_index("email", "lan@example.com"))


def test_the_lead_page_withdraws_every_optional_purpose(as_role, app, lan):
    client = as_role("manager")
    page = client.get(f"/panel/leads/{lan.uid}").get_data(as_text=True)
    assert 'name="purpose" value="wifi_terms"' not in page  # the terms are no optional purpose
    vault = app.extensions["footfall"].vault
    for purpose in ("visit_analytics", "chain_sharing", "marketing_email"):
        assert f'name="purpose" value="{purpose}"' in client.get(f"/panel/leads/{lan.uid}").get_data(as_text=True)
        before = OutboxEvent.select().count()
        response = client.form(f"/panel/leads/{lan.uid}/withdraw", {"purpose": purpose}, token_page=f"/panel/leads/{lan.uid}")
        assert response.status_code == 302
        assert purpose not in consent.granted_purposes(lan)
        events = list(OutboxEvent.select().where(OutboxEvent.id > before).order_by(OutboxEvent.id))
        withdrawn = [to_wire(e, vault) for e in events if e.topic == "consent.recorded"]
        assert [(e["data"]["purpose"], e["data"]["granted"], e["data"]["method"]) for e in withdrawn] == [(purpose, False, "panel")]
        assert validate(withdrawn[0]).data["purpose"] == purpose  # the central accepts it
        upserted = [to_wire(e, vault)["data"]["chain_sharing"] for e in events if e.topic == "lead.upserted"]
        # Chain sharing withdrawn: the central splits the person off again, so it gets the lead anew.
        assert upserted == ([False] if purpose == "chain_sharing" else [])


def test_withdrawing_visit_analytics_takes_the_person_out_of_segments_at_once(as_role, lan):
    owner = as_role("owner")
    owner.form("/panel/segments/recompute", {})
    assert SegmentMember.select().where(SegmentMember.lead == lan).exists()
    owner.form(f"/panel/leads/{lan.uid}/withdraw", {"purpose": "visit_analytics"}, token_page=f"/panel/leads/{lan.uid}")
    assert not SegmentMember.select().where(SegmentMember.lead == lan).exists()  # before any recompute
    assert all(s.members == 0 for s in Segment.select())


def test_the_lead_page_refuses_other_purposes(as_role, lan):
    client = as_role("manager")
    before = [c.id for c in consent.history(lan)]
    for purpose in ("wifi_terms", "nope", "<script>", ""):
        response = client.form(f"/panel/leads/{lan.uid}/withdraw", {"purpose": purpose}, token_page=f"/panel/leads/{lan.uid}")
        assert response.status_code == 400 and "<script>" not in response.get_data(as_text=True), purpose
    assert [c.id for c in consent.history(lan)] == before


# -- the owner's privacy settings -------------------------------------------------------------------

PRIVACY_FORM = {"min_age": "18", "just_connect": "yes", "marketing_max_per_month": "2", "dsr_deadline_days": "10",
                "dsr_processor_days": "20", "dsr_extension_days": "15", "public_holidays": "2026-09-02, 2026-04-30",
                "store_time_zone": "Asia/Bangkok", "export_log_retention_days": "730",
                # The texts state the messages a month: re-rendered, confirmed by the owner (portal/panel/settings.py).
                "confirm": "1", "rerender_kind": "editorial"}


def test_the_owner_edits_the_privacy_settings(as_role, app):
    owner = as_role("owner")
    page = owner.get("/panel/settings").get_data(as_text=True)
    for label in ("Minimum age to agree to optional purposes", "Offer &#34;just connect&#34;", "Days to complete a data request",
                  "The store&#39;s time zone", "Days the export log is kept"):
        assert label in page, label
    response = owner.form("/panel/settings", PRIVACY_FORM, token_page="/panel/settings")
    assert response.status_code == 200 and "Saved." in response.get_data(as_text=True)
    s = app.extensions["footfall"].settings
    assert (s.min_age, s.just_connect, s.marketing_max_per_month, s.dsr_deadline_days, s.public_holidays,
            s.store_time_zone, s.export_log_retention_days) == (18, True, 2, 10, "2026-04-30,2026-09-02", "Asia/Bangkok", 730)
    # At once for visitors: the splash offers just connect; the default texts state the new figures.
    splash = app.test_client().get("/?form=1", headers={"Host": "portal.test:8080"}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert 'id="just-connect"' in splash.get_data(as_text=True)
    assert "at most 2 emails a month" in consent.current("marketing_email", "en").text
    # Empty is a value of the holidays; "no" turns just connect off again.
    owner.form("/panel/settings", {"public_holidays": "", "just_connect": "no", "confirm": "1", "rerender_kind": "editorial"},
               token_page="/panel/settings")
    s = app.extensions["footfall"].settings
    assert (s.public_holidays, s.just_connect) == ("", False)
    assert AuditEntry.select().where(AuditEntry.action == "settings_changed").count() == 2


BAD_SETTINGS = [("min_age", "30"), ("min_age", "１８"), ("just_connect", "true"), ("marketing_max_per_month", "0"),
                ("dsr_deadline_days", "45"), ("dsr_processor_days", "5"),  # shorter than the 15 days without a processor
                ("public_holidays", "2026-02-30"), ("public_holidays", "tomorrow"), ("store_time_zone", "Mars/Olympus"),
                ("store_time_zone", "../../etc/localtime"), ("dpo_contact", "<script>alert(1)</script>"),
                ("export_log_retention_days", "7")]


def test_a_bad_privacy_setting_changes_nothing(as_role, app):
    owner = as_role("owner")
    before = {s.key: s.value for s in StoreSetting.select()}
    for field, value in BAD_SETTINGS:
        response = owner.form("/panel/settings", {"store_name": "Fine name", field: value}, token_page="/panel/settings")
        body = response.get_data(as_text=True)
        assert response.status_code == 422 and field in body and "<script>alert" not in body, (field, value)
        assert {s.key: s.value for s in StoreSetting.select()} == before, (field, value)
    assert app.extensions["footfall"].settings.store_name != "Fine name"


def test_only_the_owner_edits_settings(as_role):
    response = as_role("manager").form("/panel/settings", {"min_age": "0"})
    assert response.status_code == 403
    assert not StoreSetting.select().where(StoreSetting.key == "min_age").exists()


def test_times_are_entered_and_shown_on_the_stores_clock_whatever_the_machines(as_role, app, machine_zone):
    """The store is in Hanoi (`store_time_zone`), the machine's zone is New York: a breach detected at 08:00
    in the store is stored as 01:00 UTC and shown as 08:00; the calendar's edge renders, never a 500."""
    from portal.captive.look import store_zone
    from portal.i18n import format_datetime
    from portal.models import Breach
    rt = app.extensions["footfall"]
    app.extensions["footfall"] = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, store_time_zone="Asia/Ho_Chi_Minh"))
    machine_zone("America/New_York")
    owner = as_role("owner")
    owner.form("/panel/compliance/breaches", {"detected_at": "2026-03-02T08:00", "description": "Lost tablet"},
               token_page="/panel/compliance")
    breach = Breach.get()
    assert breach.detected_at == datetime.datetime(2026, 3, 2, 1, 0)
    row = owner.get("/panel/compliance").get_data(as_text=True).split(f'id="breach-{breach.id}"')[1].split("</td>")[0]
    assert "2 Mar 2026, 08:00" in row  # the panel's English, by Babel
    zone = store_zone(app.extensions["footfall"].settings)
    assert format_datetime(datetime.datetime(9999, 12, 31, 23, 0), "en", zone) == "9999-12-31 23:00 UTC"

"""Issue 15 through the app: visit analytics and chain sharing are purposes of their own, each
gating exactly the use it names; an age confirmation for any optional purpose; "just connect";
the texts of the new purposes reach existing installs."""
import dataclasses
import datetime
import gzip
import json
import re

import pytest

from portal import consent, create_app, exports, metrics, segments, sync
from portal.db import database
from portal.models import (Authorization, Consent, ContactClaim, Device, Lead, OutboxEvent, PolicyVersion, Segment,
                           Visit, utcnow)
from portal.policy_texts import DEFAULTS, FORMER_DEFAULTS
from portal.sync import to_wire
from tests.conftest import PortalClient, row_counts

NOW = utcnow()


def text(response) -> str:
    return response.get_data(as_text=True)


def lead_of(client: PortalClient) -> Lead:
    mac = client.raw.application.extensions["footfall"].gateway.client_mac(client.ip)
    return Lead.get(Lead.id == Device.get(Device.mac == mac).lead_id)


def visits(lead: Lead, *days_ago: int) -> None:
    device = Device.get(Device.lead == lead)
    for days in days_ago:
        start = NOW - datetime.timedelta(days=days, hours=1)
        Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=30))


@pytest.fixture
def app_with(settings, gateway):
    """An app with some settings changed (the database file is the test's own)."""
    made = []

    def make(**changes):
        app = create_app(dataclasses.replace(settings, **changes), gateway=gateway)
        app.config["TESTING"] = True
        made.append(app)
        return app
    yield make
    database.close()


# -- the splash form ------------------------------------------------------------------------------

def test_each_optional_purpose_is_its_own_unticked_box_with_its_own_text(client):
    page = text(client.get("/", headers={"Accept-Language": "en"}))
    for purpose in ("visit_analytics", "chain_sharing"):
        box = re.search(rf'<input type="checkbox" name="analytics" value="{purpose}" id="{purpose}"([^>]*)>', page)
        assert box and "checked" not in box.group(1)
        assert consent.current(purpose, "en").text.replace("'", "&#39;") in page
    assert re.search(r'<input type="checkbox" name="age" value="yes" id="age">', page)
    assert "I am 16 or older" in page
    assert "just-connect" not in page  # off by default


def test_both_languages_have_a_text_for_every_purpose(app):
    for purpose in ("visit_analytics", "chain_sharing", "marketing_email", "marketing_sms"):
        for language in ("vi", "en"):
            assert consent.current(purpose, language) is not None
    # The marketing texts say the form and the frequency of the messages (marketing_max_per_month).
    assert "at most 4 emails a month" in consent.current("marketing_email", "en").text
    assert "tối đa 4 tin mỗi tháng" in consent.current("marketing_sms", "vi").text


def test_the_ticked_purposes_are_recorded_with_the_texts_shown(client):
    assert client.sign_in(analytics=["visit_analytics"]).status_code == 303
    lead = lead_of(client)
    assert consent.granted_purposes(lead) == {"wifi_terms", "visit_analytics"}
    row = Consent.get((Consent.lead == lead) & (Consent.purpose == "visit_analytics"))
    assert row.policy_sha256 == consent.current("visit_analytics", "vi").sha256


def test_an_unknown_analytics_purpose_is_refused_and_nothing_written(client):
    client.get("/")
    before = row_counts()
    response = client.sign_in(analytics=["sell_my_visits"])
    assert response.status_code == 422 and 'id="marketing-error"' in text(response)
    assert row_counts() == before


# -- the age confirmation -------------------------------------------------------------------------

@pytest.mark.parametrize("ticked", [{"marketing": ["marketing_email"]}, {"analytics": ["visit_analytics"]},
                                    {"analytics": ["chain_sharing"]}], ids=["marketing", "analytics", "sharing"])
def test_no_optional_purpose_without_the_age_confirmation(client, ticked):
    client.get("/?lang=en")  # the language cookie
    before = row_counts()
    response = client.sign_in(age=False, **ticked)
    assert response.status_code == 422
    page = text(response)
    assert 'id="age-error"' in page and "only for people aged 16 or older" in page
    assert row_counts() == before  # nothing written: no lead, no consent, no authorization


def test_the_age_error_is_translated(client):
    client.get("/?lang=vi")
    response = client.sign_in(age=False, marketing=["marketing_email"])
    assert response.status_code == 422 and "từ 16 tuổi trở lên" in text(response)


def test_getting_online_needs_no_age_confirmation(client):
    response = client.sign_in(age=False)
    assert response.status_code == 303
    assert consent.granted_purposes(lead_of(client)) == {"wifi_terms"}


def test_min_age_zero_turns_the_confirmation_off(app_with):
    client = PortalClient(app_with(min_age=0).test_client())
    assert 'name="age"' not in text(client.get("/"))
    assert client.sign_in(age=False, marketing=["marketing_email"]).status_code == 303
    assert "marketing_email" in consent.granted_purposes(lead_of(client))


def test_the_age_set_is_the_age_asked(app_with):
    client = PortalClient(app_with(min_age=18).test_client())
    assert "I am 18 or older" in text(client.get("/?lang=en"))


# -- just connect ---------------------------------------------------------------------------------

def test_just_connect_is_off_by_default(client):
    client.get("/")
    assert client.post("/just-connect", data={"csrf_token": client.token(), "terms": "yes"}).status_code == 404


def test_just_connect_gets_online_on_the_terms_alone(app_with, gateway):
    client = PortalClient(app_with(just_connect=True).test_client())
    page = text(client.get("/?lang=en"))
    assert 'id="just-connect"' in page and 'formaction="/just-connect"' in page
    response = client.post("/just-connect", data={"csrf_token": client.token(), "terms": "yes",
                                                  "email": "typed@example.com", "marketing": ["marketing_email"],
                                                  "analytics": ["visit_analytics"], "age": "yes"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/online")
    mac = gateway.client_mac(client.ip)
    assert mac in gateway.grants
    auth = Authorization.get()
    assert (auth.lead_id, auth.method, auth.device.mac, auth.device.lead_id) == (None, "just_connect", mac, None)
    # No person, no contact, no consent: nothing typed is kept.
    assert (Lead.select().count(), Consent.select().count(), ContactClaim.select().count()) == (0, 0, 0)
    assert not OutboxEvent.select().where(OutboxEvent.topic.in_(["lead.upserted", "consent.recorded"])).exists()
    assert client.get("/online").status_code == 200


def test_just_connect_still_needs_the_terms(app_with):
    client = PortalClient(app_with(just_connect=True).test_client())
    client.get("/")
    before = row_counts()
    response = client.post("/just-connect", data={"csrf_token": client.token(), "terms": ""},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 422 and "Accept the WiFi terms" in text(response)
    assert row_counts() == before


# -- each purpose gates exactly its use -----------------------------------------------------------

@pytest.fixture
def three(make_client, visitors):
    """Three people who came twice; one agreed to visit analytics, one to chain sharing, one to email."""
    people = {}
    for n, (name, ticked) in enumerate([("followed", {"analytics": ["visit_analytics"]}),
                                        ("shared", {"analytics": ["chain_sharing"]}),
                                        ("mailed", {"marketing": ["marketing_email"]})]):
        client = make_client(f"10.0.3.{n + 1}")
        assert client.sign_in(email=f"{name}@example.com", **ticked).status_code == 303
        lead = lead_of(client)
        for claim in ContactClaim.select().where(ContactClaim.lead_uid == lead.uid):
            visitors.contacts._prove(claim, "email", claim.device_mac, client.ip)  # double opt-in: proved
        visits(lead, 2, 9)
        people[name] = (client, Lead.get_by_id(lead.id))
    return people


def test_segments_hold_only_people_who_agreed_to_visit_analytics(three):
    everyone = segments.save_custom("Everyone who came", {"visits_min": 1, "window_days": 3650})
    counts = segments.recompute(NOW)
    members = {m.lead_id for m in Segment.get(Segment.key == everyone.key).segmentmember_set}
    assert members == {three["followed"][1].id}
    assert counts["returning"] == 1


def test_withdrawing_visit_analytics_takes_the_person_out_of_every_segment(three, visitors):
    client, lead = three["followed"]
    segments.recompute(NOW)
    assert segments.segments_of(lead.id)
    response = client.post("/my-data/withdraw", data={"csrf_token": client.token("/my-data"), "purpose": "visit_analytics"})
    assert response.status_code == 303
    segments.recompute(NOW)
    assert segments.segments_of(lead.id) == []
    members = OutboxEvent.select().where(OutboxEvent.topic == "segment.members").order_by(OutboxEvent.id.desc()).first()
    # The central store learns it too: the event's members are read when it is sent.
    wire = sync.to_wire(members, visitors.vault)
    assert wire["data"]["members"] is not None and lead.uid not in wire["data"]["members"]


def test_the_dashboard_counts_only_followed_people_per_person(three):
    figures = metrics.dashboard(NOW)
    assert (figures.visitors_30, figures.visits_30) == (3, 6)          # totals: everyone
    assert (figures.new_30, figures.returning_30) == (0, 1)            # per person: the one who agreed
    assert sum(n for _, n in figures.frequency) == 1
    rates = {p: n for p, n, _ in figures.consent_rates}
    assert (rates["visit_analytics"], rates["chain_sharing"], rates["marketing_email"]) == (1, 1, 1)


def test_visit_analytics_is_no_marketing_consent(three):
    everyone = segments.save_custom("Everyone who came", {"visits_min": 1, "window_days": 3650})
    segments.recompute(NOW)
    segment = Segment.get(Segment.key == everyone.key)
    vault = three["followed"][0].raw.application.extensions["footfall"].vault
    assert list(exports.export_rows(segment.id, "csv", vault)) == [["email", "phone", "name", "language"]]


def wire_of(app, lead: Lead) -> dict:
    """The lead's latest lead.upserted as sent, one event alone (to_wire) and in a batch
    (sync.prepare, which reads the batch's leads and their chain sharing at once): the same."""
    vault = app.extensions["footfall"].vault
    event = (OutboxEvent.select().where((OutboxEvent.topic == "lead.upserted") & OutboxEvent.payload.contains(lead.uid))
             .order_by(OutboxEvent.id.desc()).first())
    alone = to_wire(event, vault)
    batch = json.loads(gzip.decompress(sync.prepare(vault, 100_000).body))["events"]
    assert [e for e in batch if e["uid"] == event.uid] == [alone]
    return alone["data"]


def test_the_sync_marks_chain_sharing_on_each_lead(three, app):
    assert {name: wire_of(app, lead)["chain_sharing"] for name, (_, lead) in three.items()} == \
        {"followed": False, "shared": True, "mailed": False}


def test_withdrawing_chain_sharing_tells_the_central_store(three, app):
    client, lead = three["shared"]
    sent = OutboxEvent.select().where(OutboxEvent.topic == "lead.upserted").count()
    response = client.post("/my-data/withdraw", data={"csrf_token": client.token("/my-data"), "purpose": "chain_sharing"})
    assert response.status_code == 303
    assert OutboxEvent.select().where(OutboxEvent.topic == "lead.upserted").count() == sent + 1
    assert wire_of(app, lead)["chain_sharing"] is False
    assert segments.recompute(NOW)["returning"] == 1  # chain sharing never touched the segments


def test_a_material_change_of_the_chain_sharing_text_is_sent_as_not_shared(three, app):
    """Chain sharing given under a text since changed materially no longer counts: the batch says
    so as the one-event path does."""
    assert wire_of(app, three["shared"][1])["chain_sharing"] is True
    for language in ("vi", "en"):
        consent.publish("chain_sharing", language, f"Chain sharing, materially changed ({language}).", material=True)
    OutboxEvent.emit("lead.upserted", lead=three["shared"][1].uid)
    assert wire_of(app, three["shared"][1])["chain_sharing"] is False


def test_my_data_lists_and_withdraws_the_new_purposes(three):
    client, _ = three["followed"]
    page = text(client.get("/my-data?lang=en"))
    assert "Visits followed day to day" in page and "One customer in all stores" in page
    assert 'name="purpose" value="visit_analytics"' in page


# -- the texts reach existing installs ------------------------------------------------------------

def test_existing_installs_get_the_new_texts_and_keep_their_own(app, settings):
    values = {"store": settings.store_name, "controller": settings.store_name, "contact": settings.privacy_contact,
              "retention": settings.retention_days, "max_per_month": settings.marketing_max_per_month}
    # An install from before issue 15: no text of the new purposes, the former marketing defaults,
    # and one text its owner wrote.
    PolicyVersion.delete().where(PolicyVersion.document.in_(["visit_analytics", "chain_sharing"])).execute()
    for document in ("marketing_email", "marketing_sms", "ad_audiences"):
        PolicyVersion.delete().where(PolicyVersion.document == document).execute()
        for language in ("vi", "en"):
            consent.publish(document, language, FORMER_DEFAULTS[document][language][0].format(**values))
    own = consent.publish("marketing_sms", "en", "Our own SMS text, at most one a week.")
    old_email = consent.current("marketing_email", "en")
    consent.ensure_policies(settings)
    for document in ("visit_analytics", "chain_sharing", "marketing_email", "ad_audiences"):
        for language in ("vi", "en"):
            assert consent.current(document, language).text == DEFAULTS[document][language].format(**values)
    assert consent.current("marketing_sms", "vi").text == DEFAULTS["marketing_sms"]["vi"].format(**values)
    assert consent.current("marketing_sms", "en").id == own.id          # the owner's text is kept
    assert PolicyVersion.get_by_id(old_email.id).text == old_email.text  # the old version stays, as proof
    count = PolicyVersion.select().count()
    consent.ensure_policies(settings)
    assert PolicyVersion.select().count() == count                      # idempotent

"""Adversarial review 2 of issue 15 (privacy by construction; Vietnam Law 91/2025, Decree 356/2025, GDPR).

Read as a regulator, a hostile guest, a curious manager and a careless newcomer. Each test is one
attack: the findings (fixed on this branch, the test guards the fix) first, then the attacks that
held, kept as regression tests of the precise safe behaviour. Real parts: a real SQLite file per
test, real PostgreSQL for the central store (tests/central/fixtures.py), the Flask test client.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re

import pytest

from portal import consent
from portal.db import database
from portal.models import Authorization, Device, Lead, OutboxEvent, Visit, utcnow
from portal.visitors import Client, SignInForm
from portal.visits import daily_figures, visitor_stats

from tests.panel.conftest import PanelClient, accounts_by_role, as_role, cheap_hashing  # noqa: F401,E402

ALICE = Client("10.0.0.10", "02:aa:00:00:00:01")
BOB = Client("10.0.0.11", "02:bb:00:00:00:02")


@pytest.fixture
def settings(settings):
    """The shared settings, two-factor optional for the panel's staff (tests/panel/conftest.py)."""
    return dataclasses.replace(settings, panel_require_2fa=False)


def form(**kw):
    base = dict(email="alice@example.com", terms=True, language="en", adult=True)
    base.update(kw)
    return SignInForm(**base)


def lead_of(mac: str) -> Lead:
    return Lead.get_by_id(Device.get(Device.mac == mac).lead_id)


# =================================================================================================
# Findings (fixed here)
# =================================================================================================

# -- P1 (high): withdrawing visit analytics left the person's kept visits under their MAC ---------

def test_p1_withdrawing_visit_analytics_unlinks_what_was_kept(app, visitors):
    """Alice agreed to visit analytics; the collector kept her visits of two days under her MAC,
    with her phone's host name, and a visit.closed event waits for the central store. She withdraws
    on "my data". Before the fix the visits stayed hers (per person, per device under the MAC, in
    her download, in the event to the central store): followed after she said no. Now the visits
    move to one pseudonym per device and local day, the host name goes, the unsent event goes, and
    the day figures are unchanged."""
    assert visitors.sign_in(form(analytics=frozenset({"visit_analytics"})), ALICE).ok
    lead = lead_of(ALICE.mac)
    assert consent.follows_visits(lead)
    device = Device.get(Device.mac == ALICE.mac)
    Device.update(hostname="alices-pixel", dhcp_fingerprint="1,3,6,15").where(Device.id == device.id).execute()
    day1 = datetime.datetime(2026, 11, 20, 3, 0)
    day2 = datetime.datetime(2026, 11, 22, 3, 0)
    for start in (day1, day1 + datetime.timedelta(hours=2), day2):
        Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=40), source="lan", passerby=False)
    OutboxEvent.create(topic="visit.closed", payload=json.dumps({"device": ALICE.mac, "start": str(day2),
                                                                 "end": str(day2), "passerby": False, "source": "lan"}))
    before = daily_figures(datetime.date(2026, 11, 19), datetime.date(2026, 11, 23))
    assert f"lead:{lead.uid}" in {s.subject for s in visitor_stats(3650)}

    assert visitors.withdraw(ALICE, "visit_analytics").ok

    assert not consent.follows_visits(Lead.get_by_id(lead.id))
    assert Visit.select().where(Visit.device == device).count() == 0
    subjects = {s.subject for s in visitor_stats(3650)}
    assert not any(ALICE.mac in s for s in subjects) and f"lead:{lead.uid}" not in subjects
    assert len(subjects) == 2  # one pseudonym per device and local day: not linkable across days
    aliases = list(Device.select().where(Device.anonymous == True))  # noqa: E712
    assert len(aliases) == 2 and all(a.lead_id is None and a.hostname is None and a.last_ip is None for a in aliases)
    assert Device.get_by_id(device.id).hostname is None and Device.get_by_id(device.id).dhcp_fingerprint is None
    assert not [e for e in OutboxEvent.select().where(OutboxEvent.topic == "visit.closed")
                if ALICE.mac in e.payload]
    # The central store is told to drop its copy of her devices (and their visits there).
    assert [json.loads(e.payload)["devices"] for e in OutboxEvent.select().where(OutboxEvent.topic == "devices.erased")] \
        == [[ALICE.mac]]
    assert daily_figures(datetime.date(2026, 11, 19), datetime.date(2026, 11, 23)) == before
    from portal.privacy import person_data
    held = person_data(Lead.get_by_id(lead.id), visitors.vault)
    assert held["visits"] == [] and [d["hostname"] for d in held["devices"]] == [None]


def test_p1_a_grant_again_does_not_take_back_the_pseudonyms(app, visitors):
    """Granting again follows from then on: the visits made anonymous stay anonymous."""
    assert visitors.sign_in(form(analytics=frozenset({"visit_analytics"})), ALICE).ok
    device = Device.get(Device.mac == ALICE.mac)
    Visit.create(device=device, start=datetime.datetime(2026, 11, 20, 3), end=datetime.datetime(2026, 11, 20, 4),
                 source="lan", passerby=False)
    assert visitors.withdraw(ALICE, "visit_analytics").ok
    lead = lead_of(ALICE.mac)
    consent.record(lead, "visit_analytics", True, consent.Where("store-1", ALICE.mac, ALICE.ip, "portal_form"))
    assert Visit.select().where(Visit.device == device).count() == 0
    assert Visit.select().count() == 1


# -- P2 (high): the central store kept following a person who withdrew visit analytics -------------
# (Fixed on this branch, then on main by the `rights` merge (central/people.py FOLLOWED), whose
# rule is kept; the test stays as the attack.)

def test_p2_the_central_store_stops_following_a_person_who_withdrew_visit_analytics(central_app, stores, monkeypatch):
    """Lan agreed to visit analytics and ads at hcm-01; her five visits reached the central store.
    She withdraws visit analytics. Before the fix the central still put her in the chain's
    "loyal" segment built from those visits, exported her hashes to Meta for it, and served her
    visit counts per store on /v1/people/<id>. Now none of these."""
    import central.api as api
    from central import add_token
    from central.db import database as central_db
    from tests.central.fixtures import event, post_batch
    from tests.central.test_ingest import lead
    monkeypatch.setattr(api, "utcnow", lambda: datetime.datetime(2026, 11, 23, 12, 0))
    with central_app.app_context(), central_db.connection_context():
        read, export = add_token("crm", ["people:read"]), add_token("ads", ["exports:read"])
    client = central_app.test_client()
    visits = [event("visit.closed", device="3c:22:fb:00:00:01", start=f"2026-11-{d:02d} 10:00:00",
                    end=f"2026-11-{d:02d} 10:45:00", passerby=False) for d in (2, 9, 16, 20, 22)]
    grants = [event("consent.recorded", lead="L1", purpose=p, granted=True)
              for p in ("marketing_email", "ad_audiences", "visit_analytics")]
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", phone="+84912345678", name="Lan"), event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
        *grants, *visits]).status_code == 200

    def seen():
        h = {"Authorization": f"Bearer {read}"}
        segments = {s["key"]: s["members"] for s in client.get("/v1/segments", headers=h).json["segments"]}
        person_id = client.get("/v1/people", headers=h).json["people"][0]["id"]
        counts = client.get(f"/v1/people/{person_id}", headers=h).json["visits"]
        meta = client.get("/v1/segments/loyal/export/meta", headers={"Authorization": f"Bearer {export}"})
        return segments["loyal"], counts, len(meta.get_data(as_text=True).splitlines()) - 1

    assert seen() == (1, [{"store": "hcm-01", "visits": 5, "last": "2026-11-22T10:45:00"}], 1)  # followed: all there
    assert post_batch(client, "hcm-01", stores["hcm-01"], [event(
        "consent.recorded", lead="L1", purpose="visit_analytics", granted=False, at="2026-11-23T09:00:00")]).status_code == 200
    assert seen() == (0, [], 0)
    # The store then tells it to drop her devices (portal/visits.unfollow): their visits go there too.
    assert post_batch(client, "hcm-01", stores["hcm-01"], [event("devices.erased", devices=["3c:22:fb:00:00:01"])]
                      ).status_code == 200
    with central_app.app_context(), central_db.connection_context():
        assert central_db.execute_sql("SELECT count(*) FROM visit").fetchone()[0] == 0


# -- P3 (medium, fixed on main meanwhile by portal/retention.forget_just_connect) ---------------

def test_p3_just_connect_leaves_no_mac_once_the_session_is_over(app, visitors, settings):
    """A guest uses "just connect": no person, only the device and its authorization, for the
    gateway. Found at the review: the device row (MAC, last IP) and the authorization stayed for
    ever. main now forgets them once the session is over (the "forget" job); kept here as the
    attack: no byte of the MAC in the file, a session in force kept, the visit still counted."""
    from portal import retention, signin_visits
    from portal.config import database_path
    visitors.settings = dataclasses.replace(visitors.settings, just_connect=True)
    assert visitors.just_connect(ALICE, True, "en").ok
    assert visitors.just_connect(BOB, True, "en").ok
    assert Lead.select().count() == 0
    session = datetime.timedelta(seconds=visitors.settings.session_seconds)
    alice = Device.get(Device.mac == ALICE.mac)
    Authorization.update(started_at=utcnow() - 2 * session, expires_at=utcnow() - session).where(
        Authorization.device == alice).execute()
    now = utcnow()
    signin_visits.run(15, now=now + datetime.timedelta(hours=1))  # her run becomes a visit (a pseudonym's)
    retention.forget_just_connect(visitors.settings.session_seconds, now=now)
    assert not Device.select().where(Device.mac == ALICE.mac).exists()
    assert not Authorization.select().where(Authorization.ip == ALICE.ip).exists()
    assert Device.select().where(Device.mac == BOB.mac).exists()  # online now: the gateway needs it
    assert Visit.select().join(Device).where(Device.anonymous == True).count() >= 1  # noqa: E712 - still counted
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(database_path(settings), "rb") as f:
        assert ALICE.mac.encode() not in f.read()


# -- P4 (high): a settings file passed a material change off as editorial -------------------------

@pytest.mark.parametrize("change", [
    {"retention_days": 3650},                          # what the notice promises about keeping data
    {"central_url": "https://central.caphe.vn"},      # a new organisation receives the data
    {"sms_driver": "esms"},                            # a new processor
])
def test_p4_a_settings_file_that_changes_a_promise_is_a_material_change(app, settings, visitors, change):
    """The panel asks the owner (editorial or material, with the count of people asked again)
    when new settings change what a text promises. The settings file (or the environment) does
    not go through the panel: at the next start ensure_policies re-rendered every text and
    published it as *editorial*, so a ten-year retention, or the head office receiving the data,
    slipped in while every consent stayed valid and nobody was asked again. Now such a re-render
    is material (and said in the log); names and addresses alone stay editorial."""
    assert visitors.sign_in(form(marketing=frozenset({"marketing_email"})), ALICE).ok
    published = consent.ensure_policies(dataclasses.replace(settings, **change))
    assert published and {v.document for v in published} >= {"privacy_notice"}
    assert all(v.material for v in published), [(v.document, v.language, v.material) for v in published]
    assert "marketing_email" in consent.stale_purposes(lead_of(ALICE.mac))  # asked again


def test_p4_names_and_addresses_alone_stay_editorial(app, settings, visitors):
    assert visitors.sign_in(form(marketing=frozenset({"marketing_email"})), ALICE).ok
    renamed = dataclasses.replace(settings, store_name="Cà Phê <Mới> {retention}", privacy_contact="dpo@caphe.vn",
                                  portal_url="http://portal.caphe.vn/")
    published = consent.ensure_policies(renamed)
    assert published and not any(v.material for v in published)
    assert not consent.stale_purposes(lead_of(ALICE.mac))
    assert consent.ensure_policies(renamed) == []


def test_p4_shown_values_reads_a_rendering_back():
    assert consent.shown_values("Keep {retention} days at {store}; {store} {x}", "Keep 90 days at A; A {x}") == \
        {"retention": "90", "store": "A"}
    assert consent.shown_values("Keep {retention} days at {store}; {store}", "Keep 90 days at A; B") is None


# -- P5 (medium): a segment member who withdrew or lapsed was still exported until the next run ---

def member_of_loyal(visitors, client: Client, email: str):
    """A person with a proved email, email offers and visit analytics, in the loyal segment."""
    from portal.models import Segment, SegmentMember
    from portal.segments import ensure_builtins
    from tests.conftest import prove_claims
    outcome = visitors.sign_in(form(email=email, marketing=frozenset({"marketing_email"}),
                                    analytics=frozenset({"visit_analytics"})), client)
    prove_claims(visitors, outcome, client)
    ensure_builtins()
    loyal = Segment.get(Segment.key == "loyal")
    SegmentMember.create(segment=loyal, lead=lead_of(client.mac))  # as the segments job computed it
    return loyal


def exported_emails(visitors, segment) -> list[str]:
    from portal import exports
    _log, rows = exports.logged_export(segment, "csv", visitors.vault, "owner")
    return [row[0] for row in rows[1:]] if rows and rows[0][0] == "email" else [row[0] for row in rows]


@pytest.mark.parametrize("how", ["lapsed", "withdrew"])
def test_p5_a_member_no_longer_followed_is_not_exported_before_the_segments_run_again(app, visitors, how):
    """Segments are visit analytics. Alice (email offers, proved) is in "loyal". The visit
    analytics text changes materially (her consent lapses), or she withdraws it; the owner exports
    "loyal" before the segments job runs again. Before the fix she was in the file (and in a
    campaign to that segment): the membership of the last run was trusted. Now the export reads
    who is followed, and a withdrawal takes her out of every segment at once."""
    from portal.models import SegmentMember
    loyal = member_of_loyal(visitors, ALICE, "alice@example.com")
    member_of_loyal(visitors, BOB, "bob@example.com")
    assert sorted(exported_emails(visitors, loyal)) == ["alice@example.com", "bob@example.com"]
    if how == "lapsed":
        latest = consent.current("visit_analytics", "en")
        consent.publish("visit_analytics", "en", latest.text + " We now also keep the route you walk.", material=True)
        assert "visit_analytics" in consent.stale_purposes(lead_of(ALICE.mac))
        assert "visit_analytics" in consent.stale_purposes(lead_of(BOB.mac))
        assert exported_emails(visitors, loyal) == []
    else:
        assert visitors.withdraw(ALICE, "visit_analytics").ok
        assert not SegmentMember.select().where(SegmentMember.lead == lead_of(ALICE.mac)).exists()
        assert exported_emails(visitors, loyal) == ["bob@example.com"]


def test_p5_a_campaign_to_a_segment_skips_a_member_whose_visit_analytics_lapsed(app):
    """The same with a campaign to the "new" segment: Lan's visit analytics consent lapses (a
    material change of its text) after the segments job put her in "new"; the campaign planned
    before the next run sent her the offer. Now a segment campaign reaches only people followed."""
    from portal import segments
    from portal.activation import send
    from portal.activation.models import ActivationSend
    from tests.activation.conftest import NOW, Recorder, automation, person, visit
    rt = app.extensions["footfall"]
    settings = dataclasses.replace(rt.settings, store_time_zone="Asia/Ho_Chi_Minh", activation_holdout_percent=0)
    recorder = Recorder()
    ctx = send.context(settings, rt.vault, {"email": recorder, "sms": recorder, "zalo": recorder},
                       send.Pacer(1000, clock=lambda: 0.0, sleep=lambda s: None))
    lan, minh = person(rt.vault), person(rt.vault, "minh@example.com", name="Minh")
    shown = consent.current("visit_analytics", "vi")
    for who in (lan, minh):  # on the text shown (a consent with no text is judged by its channel alone)
        consent.record(who, "visit_analytics", True, consent.Where("store-1", None, None, "form"), shown, at=NOW)
    visit(lan, NOW - datetime.timedelta(days=2))
    visit(minh, NOW - datetime.timedelta(days=3))
    segments.recompute(NOW)
    for language in ("vi", "en"):
        latest = consent.current("visit_analytics", language)
        consent.publish("visit_analytics", language, latest.text + " (+ routes)", material=True)
    consent.record(minh, "visit_analytics", True, consent.Where("store-1", None, None, "form"),
                   consent.current("visit_analytics", "vi"), at=NOW)  # asked again: yes
    auto = automation("campaign", ctx.tz, segment="new")
    send.run(ctx, NOW)
    sent = {row.lead_id for row in ActivationSend.select().where(ActivationSend.automation == auto)}
    assert sent == {minh.id}


# =================================================================================================
# Attacks that held (regression tests of the safe behaviour)
# =================================================================================================

XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>'


def test_h_a_placeholder_cannot_inject_markup_into_the_splash_or_the_notice(app, settings, client):
    """A store name or contact with markup (the settings file, the panel) is rendered into every
    text by its placeholder: the splash's consent boxes and the privacy notice show it as text."""
    hostile = dataclasses.replace(settings, store_name="Cà Phê " + XSS, privacy_contact="x@caphe.vn " + XSS)
    published = consent.ensure_policies(hostile)
    assert published and all(XSS in v.text or v.document == "wifi_terms" for v in published if "{store}" in (v.template or ""))
    for path in ("/?form=1", "/privacy"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_h_a_forged_form_records_no_optional_purpose_without_the_age_box(app, settings, client, visitors):
    """min_age is set: a form posted without "I am old enough" but with every marketing and
    analytics box (and a made-up purpose) records nothing optional, and no one."""
    from portal.models import Consent
    visitors.settings = dataclasses.replace(visitors.settings, min_age=16)
    page = client.sign_in(email="kid@example.com", marketing=("marketing_email", "marketing_sms", "ad_audiences"),
                          analytics=("visit_analytics", "chain_sharing"), age=False)
    assert page.status_code in (200, 400, 422)
    assert Consent.select().where(Consent.purpose != "wifi_terms").count() == 0
    assert Lead.select().count() == 0
    smuggled = client.sign_in(email="kid@example.com", marketing=("visit_analytics",), analytics=("marketing_email",))
    assert smuggled.status_code in (200, 400, 422)
    assert Consent.select().where(Consent.purpose != "wifi_terms").count() == 0


def test_h_a_notice_without_the_laws_sections_is_never_published(app, settings):
    """Not through the code's own publish, nor a settings change re-rendering an owner's template
    that lost a section (skipped, said in the log), nor an unknown placeholder."""
    from portal.policy_texts import TextError
    before = consent.current("privacy_notice", "en")
    with pytest.raises(TextError) as refused:
        consent.publish("privacy_notice", "en", "## Who we are\n{store}\n\nNothing else.")
    assert refused.value.code == "sections"
    with pytest.raises(TextError):
        consent.publish("privacy_notice", "en", before.text + "\n\n{secret_key}")
    assert consent.current("privacy_notice", "en").id == before.id


# -- P6 (high): the central store's API sent audiences to Meta and Google with no assessment -------

def test_p6_the_central_refuses_ad_platform_exports_without_a_transfer_assessment(central_settings, stores):
    """The panel refuses a Meta or Google export (409) until the owner records the transfer
    impact assessment of that platform. The chain's central store exported the same files through
    /v1/segments/<key>/export/meta with no such record anywhere: the gate was bypassed by asking
    the head office. Now it answers 409 unless `central_transfers_assessed` names the platform (a
    date not in the future, checked at load); the CRM file (no transfer) is not affected."""
    from central import add_token, create_app
    from central.db import database as central_db
    from portal.config import ConfigError, load_settings
    app = create_app(dataclasses.replace(central_settings, central_transfers_assessed=""))
    with app.app_context(), central_db.connection_context():
        token = add_token("ads", ["exports:read"])
    h = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    for kind in ("meta", "google"):
        refused = client.get(f"/v1/segments/loyal/export/{kind}", headers=h)
        assert refused.status_code == 409 and "central_transfers_assessed" in refused.json["error"]
    assert client.get("/v1/segments/loyal/export/csv", headers=h).status_code == 200
    only_meta = create_app(dataclasses.replace(central_settings, central_transfers_assessed="meta:2026-01-01")).test_client()
    assert only_meta.get("/v1/segments/loyal/export/meta", headers=h).status_code == 200
    assert only_meta.get("/v1/segments/loyal/export/google", headers=h).status_code == 409
    for bad in ("meta", "meta:2026-02-30", "tiktok:2026-01-01", "meta:2999-01-01", "meta:2026-01-01;google"):
        with pytest.raises(ConfigError):
            load_settings(environ={}, data_dir=central_settings.data_dir, central_transfers_assessed=bad)


def test_h_a_withdrawal_leaves_no_byte_of_what_dhcp_said_in_the_file_or_its_wal(tmp_path):
    """The phone was followed (the store_pcap capture: host name, fingerprint and vendor class
    stored); its person withdraws on "my data" (consent.record: its visits unlinked at once); the
    collector runs again. Neither the database file nor its WAL holds the host name, the
    fingerprint or the vendor class any more (secure_delete), and no visit is under the MAC."""
    from collector.service import replay
    from portal.db import init_db
    from tests.collector.test_anonymous import file_bytes
    from tests.collector.test_followed import empty_pcap
    from tests.collector.test_replay import PHONE, capture, follow, rows, settings_for
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    replay(settings, pcap)
    db = tmp_path / "data" / "footfall.db"
    secrets_ = (b"lan-pixel", b"1,3,6,15,26,28,51,58,59,43", b"android-dhcp-14")
    assert all(s in file_bytes(db) for s in secrets_)  # followed: kept
    init_db(db)
    try:
        with database.connection_context():
            lead = Lead.get()
            consent.record(lead, "visit_analytics", False, consent.Where("store-1", None, None, "portal_my_data"))
    finally:
        database.close()
    replay(settings, empty_pcap(tmp_path))
    assert rows(db, f"SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.mac = '{PHONE}'") == [(0,)]
    data = file_bytes(db)
    assert [s for s in secrets_ if s in data] == []


# -- P7 (high): the central store never learned that a material change lapsed a consent -----------

def test_p7_a_material_change_lapses_the_consent_at_the_central_store_too(app, visitors, central_app, stores):
    """Alice agreed to email offers and proved her email; the store synced her to the central
    store, whose API serves her email to the CRM. The owner changes the email text materially
    ("...and our partners' offers"): at the store her consent stops counting until she agrees
    again. The central store was never told (no event carries a material change), so its API kept
    serving her email and its exports kept her. Now the store sends the lapse as a consent event
    (granted false, method "lapsed"), and a new grant counts again."""
    from central import add_token
    from central.db import database as central_db
    from portal import sync
    from tests.central.fixtures import post_batch
    from tests.conftest import prove_claims
    with central_app.app_context(), central_db.connection_context():
        token = add_token("crm", ["people:read"])
    central = central_app.test_client()
    sent = set()

    def push():
        events = [e for e in OutboxEvent.select().order_by(OutboxEvent.id) if e.id not in sent]
        sent.update(e.id for e in events)
        wire = [sync.to_wire(e, visitors.vault) for e in events]
        assert post_batch(central, "hcm-01", stores["hcm-01"], wire).status_code == 200
        return wire

    def served():
        people = central.get("/v1/people", headers={"Authorization": f"Bearer {token}"}).json["people"]
        return [p["email"] for p in people]

    outcome = visitors.sign_in(form(marketing=frozenset({"marketing_email"})), ALICE)
    prove_claims(visitors, outcome, ALICE)
    push()
    assert served() == ["alice@example.com"]
    latest = consent.current("marketing_email", "en")
    consent.publish("marketing_email", "en", latest.text + " And our partners' offers.", material=True)
    lead = lead_of(ALICE.mac)
    assert "marketing_email" in consent.stale_purposes(lead)
    wire = push()
    assert [(w["data"]["purpose"], w["data"]["granted"], w["data"]["method"]) for w in wire
            if w["topic"] == "consent.recorded"] == [("marketing_email", False, "lapsed")]
    assert served() == []
    consent.record(lead, "marketing_email", True, consent.Where("store-1", ALICE.mac, ALICE.ip, "portal_form"),
                   consent.current("marketing_email", "en"))
    push()
    assert served() == ["alice@example.com"]
    # An editorial change lapses nothing and tells nothing.
    consent.publish("marketing_email", "en", consent.current("marketing_email", "en").text + " ", material=False)
    consent.publish("marketing_email", "en", consent.current("marketing_email", "en").text + " Thanks.", material=False)
    assert not [e for e in OutboxEvent.select() if e.id not in sent and e.topic == "consent.recorded"]


def test_h_a_desk_code_cannot_be_guessed_nor_borrowed_from_another_claim(app, visitors):
    """The privacy desk verifies a requester by a code sent to the contact on the record. Five
    wrong tries spend the code (the right one is then refused); a code issued for another claim
    (Alice's own sign-in, someone else's request) is no answer to this request; re-linking the
    request to another person drops what was checked."""
    from portal import privacy
    from portal.models import DataRequest
    from portal.verification import VerificationError
    assert visitors.sign_in(form(), ALICE).ok
    assert visitors.sign_in(form(email="bob@example.com"), BOB).ok
    alice, bob = lead_of(ALICE.mac), lead_of(BOB.mac)
    rules = privacy.rules_from(visitors.settings)
    contacts = visitors.contacts
    request = privacy.open_request("access", utcnow(), rules, visitors.vault, "manager:m", alice, "Alice")

    def issue_for(lead):
        claim = contacts.claim(lead, "email", visitors.vault.decrypt(lead.email_enc, "lead.email"), None, None, "en",
                               typed=False)
        # A code as Codes.issue writes it (issue() itself waits out the sign-in's cooldown).
        from portal.models import VerificationCode
        code = f"{len(VerificationCode.select()) * 7919 % 10**6:06d}"
        row = VerificationCode.create(channel="email", destination_index=claim.destination_index, code_hash="",
                                      created_at=utcnow(), expires_at=utcnow() + datetime.timedelta(minutes=10),
                                      device_mac=None, ip=None, claim_uid=claim.uid)
        VerificationCode.update(code_hash=contacts.codes._hash(row.uid, code)).where(VerificationCode.id == row.id).execute()
        return claim, type("Issued", (), {"code": code, "uid": row.uid})

    claim, issued = issue_for(alice)
    DataRequest.update(verify_claim=claim.uid).where(DataRequest.id == request.id).execute()
    wrong = "000000" if issued.code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(VerificationError) as refused:
            privacy.check_code(DataRequest.get_by_id(request.id), wrong, contacts, "manager:m")
        assert refused.value.code == "wrong"
    with pytest.raises(VerificationError) as spent:
        privacy.check_code(DataRequest.get_by_id(request.id), issued.code, contacts, "manager:m")
    assert spent.value.code == "too_many_tries"
    assert DataRequest.get_by_id(request.id).verified_at is None
    # Another claim's code (Bob's, issued now) answers nothing here.
    other = privacy.open_request("access", utcnow(), rules, visitors.vault, "manager:m", alice, "Alice again")
    mine, _ = issue_for(alice)
    DataRequest.update(verify_claim=mine.uid).where(DataRequest.id == other.id).execute()
    _bobs_claim, bobs = issue_for(bob)
    with pytest.raises(VerificationError):
        privacy.check_code(DataRequest.get_by_id(other.id), bobs.code, contacts, "manager:m")
    assert DataRequest.get_by_id(other.id).verified_at is None
    privacy.verify_manually(DataRequest.get_by_id(other.id), "id_document", "manager:m")
    privacy.link_person(DataRequest.get_by_id(other.id), bob, "manager:m")  # verified for Alice, then moved to Bob
    with pytest.raises(privacy.DeskError):
        privacy.provision(DataRequest.get_by_id(other.id), visitors.vault, "manager:m")


# -- P8 (low): a restricted person's queued visit webhook still named them ------------------------

def test_p8_a_restricted_person_is_out_of_exports_messages_webhooks_and_the_collector(app, visitors):
    """The desk upholds Alice's objection. She is in no export, no activation audience, the
    collector no longer follows her device, and a visit webhook still queued from before names no
    one (before the fix it carried her pseudonymous id: her visits stayed linkable in the CRM)."""
    from collector.pseudonyms import followed_macs
    from portal import privacy
    from portal.activation import plan
    from portal.webhooks import queue
    loyal = member_of_loyal(visitors, ALICE, "alice@example.com")
    alice = lead_of(ALICE.mac)
    assert ALICE.mac in followed_macs(database) and alice.id in plan.people()
    delivery = type("Delivery", (), {"type": "visit.closed", "subject": json.dumps(
        {"device": ALICE.mac, "start": "2026-11-20 10:00:00", "end": "2026-11-20 10:40:00"})})()
    assert queue.data_of(delivery, visitors.vault, b"k" * 32, "store-1")["person"] is not None
    privacy.restrict(alice, "manager:m", "objection")
    assert ALICE.mac not in followed_macs(database)
    assert alice.id not in plan.people()
    assert exported_emails(visitors, loyal) == []
    assert queue.data_of(delivery, visitors.vault, b"k" * 32, "store-1")["person"] is None


# -- P9 (medium): the panel showed per-person visits of people who may not be followed ------------

@pytest.mark.parametrize("how", ["restricted", "lapsed"])
def test_p9_the_panel_shows_no_visits_of_a_person_who_may_not_be_followed(app, visitors, as_role, how):
    """Alice's visits were kept while she was followed. Then an objection is upheld (restricted),
    or the visit analytics text changes materially (her consent lapses). Before the fix the leads
    list still gave her visit count and last visit, and her page her visit history: per-person
    figures without a visit analytics consent that counts. Now neither; the JSON export (her
    right of access) still holds what is kept."""
    from portal import privacy
    assert visitors.sign_in(form(name="Alice", analytics=frozenset({"visit_analytics"})), ALICE).ok
    lead = lead_of(ALICE.mac)
    device = Device.get(Device.mac == ALICE.mac)
    start = datetime.datetime(2026, 11, 20, 3, 17)
    Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=43), source="lan", passerby=False)
    manager = as_role("owner")

    def shown():
        row = re.search(r'<tr><td><a href="/panel/leads/' + lead.uid + r'">.*?</tr>',
                        manager.get("/panel/leads").get_data(as_text=True), re.S).group(0)
        count = re.findall(r'<td class="num">(\d+)</td>', row)
        page = manager.get(f"/panel/leads/{lead.uid}").get_data(as_text=True)
        return count, "43 min" in page, 'id="visits-not-followed"' in page

    assert shown() == (["1"], True, False)
    if how == "restricted":
        privacy.restrict(lead, "manager:m", "objection")
    else:
        latest = consent.current("visit_analytics", "en")
        consent.publish("visit_analytics", "en", latest.text + " And the route you walk.", material=True)
    assert shown() == (["0"], False, True)
    held = privacy.person_data(Lead.get_by_id(lead.id), visitors.vault)
    assert len(held["visits"]) == 1


# -- P10 (high): the central store's webhooks handed a restricted person's contacts to the CRM -----

def test_p10_central_webhooks_name_a_restricted_person_by_pseudonym_only(central_app, stores):
    """A store upheld Alice's objection (lead.restricted): the central's people API, segments and
    exports hide her. Its webhooks did not: every message about her (a consent change, a visit,
    a segment change) carried her email and name to the CRM. Now a restricted person is named by
    the pseudonym alone, and a visit message names no one, as at the store."""
    from central import webhooks as central_webhooks
    from central.db import database as central_db
    from tests.central.fixtures import event, post_batch
    from tests.central.test_verified_identity import ALICE as ALICE_EMAIL, consent as grant, person_of, upsert
    client = central_app.test_client()
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        upsert("A1", ALICE_EMAIL, name="Alice", email_verified=True), grant("A1", "marketing_email"),
        grant("A1", "visit_analytics")]).status_code == 200
    person = person_of("hcm-01", "A1")
    vault = central_app.extensions["central"]["vault"]
    key = b"k" * 32

    def told():
        with central_app.app_context(), central_db.connection_context():
            return (central_webhooks.person(person, vault, key),
                    central_webhooks._data("visit.closed", {"store": "hcm-01", "person": person}, vault, key)["person"])

    named, visit = told()
    assert named["email"] == ALICE_EMAIL and named["name"] == "Alice" and visit["email"] == ALICE_EMAIL
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        event("lead.restricted", lead="A1", restricted=True, at="2026-11-22T10:00:00")]).status_code == 200
    named, visit = told()
    assert set(named) == {"id"} and visit is None


def test_h_visits_json_is_aggregate_and_names_no_device(app, settings, visitors):
    """`footfall visits --json`, the figures to check from outside: per day counts only. No MAC,
    no pseudonym, no person, whoever agreed to what."""
    from click.testing import CliRunner
    from portal.cli import main
    assert visitors.sign_in(form(analytics=frozenset({"visit_analytics"})), ALICE).ok
    assert visitors.sign_in(form(email="bob@example.com"), BOB).ok
    lead = lead_of(ALICE.mac)
    day = datetime.datetime(2026, 11, 20, 3, 0)
    Visit.create(device=Device.get(Device.mac == ALICE.mac), start=day, end=day + datetime.timedelta(minutes=30),
                 source="lan", passerby=False)
    anon = Device.create(mac="anon-" + "ab" * 16, anonymous=True, randomized=True)
    Visit.create(device=anon, start=day, end=day + datetime.timedelta(minutes=20), source="lan", passerby=False)
    database.close()
    out = CliRunner().invoke(main, ["visits", "--json", "--since", "2026-11-19", "--until", "2026-11-21"],
                             env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output)
    assert figures["total"]["visits"] == 2 and figures["total"]["device_days"] == 2
    for needle in (ALICE.mac, BOB.mac, "anon-", lead.uid, "alice@", "bob@"):
        assert needle not in out.output


# -- P11 (medium): every signed-in device's MAC went to the central store -------------------------

def test_p11_no_mac_leaves_the_store_for_a_person_who_is_not_followed(app, visitors):
    """The central store uses a device link only to count a followed person's visits. Before the
    fix every sign-in sent device.linked (the MAC) to the central, consent or not: a chain-wide
    list of the MACs of people who never agreed to be followed. Now a link is sent only while the
    person is followed: at a sign-in, when they agree to visit analytics, when a restriction of a
    followed person is lifted."""
    from portal import privacy

    def links():
        return [json.loads(e.payload)["device"] for e in OutboxEvent.select().where(OutboxEvent.topic == "device.linked")]

    assert visitors.sign_in(form(marketing=frozenset({"marketing_email"})), ALICE).ok
    assert links() == []
    lead = lead_of(ALICE.mac)
    consent.record(lead, "visit_analytics", True, consent.Where("store-1", ALICE.mac, ALICE.ip, "portal_my_data"),
                   consent.current("visit_analytics", "en"))
    assert links() == [ALICE.mac]
    privacy.restrict(lead, "manager:m", "objection")
    assert visitors.sign_in(form(email="bob@example.com", analytics=frozenset({"visit_analytics"})), BOB).ok
    assert links() == [ALICE.mac, BOB.mac]  # Bob agreed at his sign-in
    privacy.lift_restriction(Lead.get_by_id(lead.id), "manager:m")
    assert links() == [ALICE.mac, BOB.mac, ALICE.mac]

"""Issue 15 at the central store: a store's objection or restriction (lead.restricted) keeps the
person out of chain segments, exports and /v1/people until that store lifts it; chain segments
follow only people whose latest visit_analytics choice is a grant. Real PostgreSQL."""
import datetime

import pytest

from central.db import database
from portal.core.events import EventError, validate
from tests.central.fixtures import event, post_batch
from tests.central.test_api import auth, tokens  # noqa: F401  (the fixture)
from tests.central.test_sync_e2e import central_server  # noqa: F401  (the fixture)
from tests.central.test_verified_identity import ALICE, consent, one, person_of, upsert

NOW = datetime.datetime(2026, 11, 23, 12, 0)


def visits(mac):
    return [event("visit.closed", device=mac, start=f"2026-11-{d:02d} 10:00:00", end=f"2026-11-{d:02d} 10:45:00",
                  passerby=False) for d in (2, 9, 16, 20, 22)]


@pytest.fixture
def alice(central_app, stores, monkeypatch):
    """Alice proved her email at store A, agreed to emails, ad audiences and visit analytics; loyal."""
    import central.api as api
    monkeypatch.setattr(api, "utcnow", lambda: NOW)
    client = central_app.test_client()
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        upsert("A1", ALICE, name="Alice", email_verified=True), consent("A1", "marketing_email"),
        consent("A1", "ad_audiences"), consent("A1", "visit_analytics"),
        event("device.linked", device="3c:22:fb:00:00:0a", lead="A1"), *visits("3c:22:fb:00:00:0a")]).status_code == 200
    return client, person_of("hcm-01", "A1")


def restricted(uid, flag, at="2026-11-22T10:00:00"):
    return event("lead.restricted", lead=uid, restricted=flag, at=at)


def seen(client, tokens, person):
    """Where the chain's marketing team finds the person: (listed, own page, loyal members, csv rows)."""
    listed = [p["id"] for p in client.get("/v1/people", headers=auth(tokens["read"])).json["people"]]
    page = client.get(f"/v1/people/{person}", headers=auth(tokens["read"])).status_code
    loyal = {s["key"]: s["members"] for s in client.get("/v1/segments", headers=auth(tokens["read"])).json["segments"]}["loyal"]
    csv = client.get("/v1/segments/loyal/export/csv", headers=auth(tokens["export"])).get_data(as_text=True).splitlines()
    return person in listed, page, loyal, len(csv) - 1


def test_a_restriction_hides_the_person_everywhere_and_lifting_it_brings_them_back(alice, stores, tokens):
    client, person = alice
    assert seen(client, tokens, person) == (True, 200, 1, 1)
    assert post_batch(client, "hcm-01", stores["hcm-01"], [restricted("A1", True)]).status_code == 200
    assert seen(client, tokens, person) == (False, 404, 0, 0)
    meta = client.get("/v1/segments/loyal/export/meta", headers=auth(tokens["export"])).get_data(as_text=True).splitlines()
    assert len(meta) == 1  # the header alone
    assert one("SELECT restricted_at FROM store_lead WHERE lead_uid = 'A1'")[0] == datetime.datetime(2026, 11, 22, 10, 0)
    assert post_batch(client, "hcm-01", stores["hcm-01"], [restricted("A1", False)]).status_code == 200
    assert seen(client, tokens, person) == (True, 200, 1, 1)


def test_a_restriction_at_one_store_holds_for_the_merged_person_until_that_store_lifts_it(alice, stores, tokens):
    client, person = alice
    assert post_batch(client, "hn-02", stores["hn-02"], [
        upsert("B1", ALICE, name="Alice", email_verified=True), consent("B1", "marketing_email"),
        restricted("B1", True)]).status_code == 200
    assert person_of("hn-02", "B1") == person  # one person, merged on the proved email
    assert seen(client, tokens, person)[:2] == (False, 404)
    # Store A saying "not restricted" is about its own lead: B's objection still holds.
    assert post_batch(client, "hcm-01", stores["hcm-01"], [restricted("A1", False)]).status_code == 200
    assert seen(client, tokens, person)[:2] == (False, 404)
    assert post_batch(client, "hn-02", stores["hn-02"], [restricted("B1", False)]).status_code == 200
    assert seen(client, tokens, person)[:2] == (True, 200)


def test_a_restriction_of_a_lead_unknown_here_changes_nothing(alice, stores, tokens):
    client, person = alice
    assert post_batch(client, "hn-02", stores["hn-02"], [restricted("nobody", True)]).status_code == 200
    assert seen(client, tokens, person) == (True, 200, 1, 1)


def test_a_malformed_restriction_is_refused_whole(alice, stores, tokens):
    client, person = alice
    for data in ({"lead": "A1"}, {"lead": "A1", "restricted": "yes"}, {"lead": "A1", "restricted": 1},
                 {"lead": "A1\n", "restricted": True}):
        with pytest.raises(EventError):
            validate(event("lead.restricted", **data))
        response = post_batch(client, "hcm-01", stores["hcm-01"], [restricted("A1", True, at="2026-11-22T09:00:00"),
                                                                    event("lead.restricted", **data)])
        assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True), data
        assert one("SELECT restricted_at FROM store_lead WHERE lead_uid = 'A1'")[0] is None  # the whole batch refused


def test_chain_segments_follow_only_people_who_agreed_to_visit_analytics(alice, stores, tokens):
    client, person = alice
    # Bob agreed to emails but not to visit analytics: his visits are no segment's business.
    bob = "bob@example.com"
    from tests.central.test_ingest import IDX
    import hashlib
    IDX[bob] = hashlib.sha256(bob.encode()).hexdigest()
    assert post_batch(client, "hn-02", stores["hn-02"], [
        upsert("B2", bob, name="Bob", email_verified=True), consent("B2", "marketing_email"),
        event("device.linked", device="3c:22:fb:00:00:0b", lead="B2"), *visits("3c:22:fb:00:00:0b")]).status_code == 200
    assert seen(client, tokens, person)[2:] == (1, 1)  # Alice only
    # Alice withdraws visit analytics later: she leaves the chain's segments too.
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        event("consent.recorded", lead="A1", purpose="visit_analytics", granted=False, at="2026-11-22T11:00:00")]).status_code == 200
    assert seen(client, tokens, person)[2:] == (0, 0)
    with database.connection_context():
        assert database.execute_sql("SELECT count(*) FROM visit").fetchone()[0] == 10  # kept, just not followed


def test_a_restriction_and_its_lifting_travel_from_the_appliance_over_real_http(app, visitors, central_settings,
                                                                                central_server):
    """The appliance's desk restricts and lifts; each push carries it to the central store."""
    from portal import privacy, sync
    from portal.models import Lead
    from portal.visitors import Client, SignInForm
    from tests.central.test_sync_e2e import enroll_store
    from tests.conftest import prove_claims

    keys = enroll_store(central_settings, app)
    target = sync.Target(f"http://127.0.0.1:{central_server}", keys.store_id, keys.sync_key, allow_http=True)
    guest = Client("10.1.0.1", "3c:22:fb:00:00:01")
    outcome = visitors.sign_in(SignInForm(email="lan@example.com", terms=True, adult=True,
                                          marketing=frozenset({"marketing_email"})), guest)
    prove_claims(visitors, outcome, guest)
    lead = Lead.get(Lead.email_index.is_null(False))

    def pushed_state():
        sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, 100)
        with database.connection_context():
            return database.execute_sql("SELECT restricted_at IS NOT NULL FROM store_lead WHERE lead_uid = %s",
                                        (lead.uid,)).fetchone()[0]

    assert pushed_state() is False
    privacy.restrict(lead, "manager:m", "objection")
    assert pushed_state() is True
    privacy.lift_restriction(Lead.get_by_id(lead.id), "manager:m")
    assert pushed_state() is False

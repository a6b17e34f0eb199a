"""Issue 15 on the portal's "My data" page: a guest objects to marketing and profiling (in force at
once, recorded done in the desk's register) or asks for a restriction (a request for the desk),
with the proof erasing needs. Real SQLite, the app's own views."""
import re
import time

from portal.gateway.null import synthetic_mac
from portal.models import AuditEntry, DataRequest, Lead, OutboxEvent
from portal.visitors import Client, SignInForm
from tests.conftest import PORTAL_HOST, prove_claims


def text(response):
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def ask(client, kind, grounds, lang="en", token_page="/my-data"):
    return client.post("/my-data/object", data={"csrf_token": client.token(token_page), "kind": kind, "grounds": grounds},
                       headers={"Accept-Language": lang})


def test_objecting_to_marketing_restricts_at_once_and_is_recorded_done(client):
    client.sign_in(email="lan@example.com", marketing=["marketing_email"], analytics=["visit_analytics"])
    assert 'id="object"' in text(client.get("/my-data"))  # the record is all this device's own
    response = ask(client, "objection", "marketing")
    assert response.status_code == 303 and response.headers["Location"].endswith("/my-data?done=objected")
    lead = Lead.get()
    assert lead.restricted_at is not None
    request = DataRequest.get()
    assert (request.kind, request.status, request.verify_method, request.verified_by) == (
        "objection", "done", "portal:own_record", "visitor")
    assert OutboxEvent.select().where(OutboxEvent.topic == "lead.restricted").count() == 1  # the central hears it
    assert "no longer used for marketing" in text(client.get("/my-data?done=objected", headers={"Accept-Language": "en"}))
    assert "không còn được dùng cho tiếp thị" in text(client.get("/my-data?done=objected", headers={"Accept-Language": "vi"}))
    # Asking again adds nothing: no second request, no second event.
    assert ask(client, "objection", "marketing").status_code == 303
    assert DataRequest.select().count() == 1
    assert OutboxEvent.select().where(OutboxEvent.topic == "lead.restricted").count() == 1


def test_a_restriction_request_waits_for_the_desk_with_its_clock(client):
    client.sign_in(email="lan@example.com")
    for _ in range(3):  # once is enough: the same open request comes back
        response = ask(client, "restriction", "other")
        assert response.status_code == 303 and response.headers["Location"].endswith("/my-data?done=requested")
    request = DataRequest.get()
    assert DataRequest.select().count() == 1
    assert (request.kind, request.status, request.verify_method) == ("restriction", "open", "portal:own_record")
    assert request.ack_due_at is not None and request.due_at > request.received_at
    assert Lead.get().restricted_at is None  # the desk decides
    assert "privacy desk will answer" in text(client.get("/my-data?done=requested", headers={"Accept-Language": "en"}))


def test_a_device_that_proved_nothing_cannot_object_for_the_person(app, client, visitors):
    """The person's record holds a proved email from another phone: this device, which only names
    it, must prove it first (the same rule as erasing)."""
    owner = Client("10.0.9.1", synthetic_mac("10.0.9.1"))
    outcome = visitors.sign_in(SignInForm(email="lan@example.com", terms=True), owner)
    prove_claims(visitors, outcome, owner)
    lead = Lead.get()
    # The portal client's device is linked to the same record (a welcome back on a shared tablet, say).
    from portal.models import Device
    Device.create(mac=synthetic_mac(client.ip), lead=lead)
    page = text(client.get("/my-data"))
    assert 'id="object"' not in page
    before = AuditEntry.select().count()
    response = ask(client, "objection", "marketing")
    assert response.status_code == 303 and response.headers["Location"].endswith("/my-data?done=prove_first")
    assert Lead.get().restricted_at is None and DataRequest.select().count() == 0
    assert AuditEntry.select().count() == before
    # With a code entered in this browser session, the same device may.
    with client.raw.session_transaction(headers={"Host": PORTAL_HOST}, environ_base={"REMOTE_ADDR": client.ip}) as session:
        session["proven"] = [[lead.uid, synthetic_mac(client.ip), time.time()]]
    assert ask(client, "objection", "marketing").headers["Location"].endswith("/my-data?done=objected")
    assert DataRequest.get().verify_method == "portal:code"


def test_a_bad_request_changes_nothing(client):
    client.sign_in(email="lan@example.com")
    for kind, grounds in (("objection", "nope"), ("restriction", "marketing"), ("erasure", "other"), ("<script>", "other"),
                          ("", "")):
        response = ask(client, kind, grounds)
        assert response.status_code == 400 and "<script>" not in response.get_data(as_text=True), kind
    assert DataRequest.select().count() == 0 and Lead.get().restricted_at is None


def test_a_device_unknown_here_gets_a_clear_answer(client):
    response = ask(client, "objection", "marketing", token_page="/?form=1")
    assert response.status_code == 400 and "do not recognise this device" in text(response)

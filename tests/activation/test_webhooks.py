"""Webhooks from a store (portal/webhooks/): signed as Standard Webhooks and checked by the
reference library, fed from the outbox, retried, dead-lettered, sent again, consent-scoped."""
from __future__ import annotations

import dataclasses
import datetime
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from portal import consent, jobs
from portal.consent import Where
from portal.core.events import WEBHOOK_TYPES
from portal.models import Device, Lead, OutboxEvent, utcnow
from portal.visitors import Client, SignInForm
from portal.webhooks import queue, wire
from tests.activation.receiver import Receiver
from tests.conftest import prove_claims
from tests.portal.test_writers import written  # noqa: F401  (the fixture: tables each connection writes)


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, webhook_allow_loopback=True, webhook_max_attempts=3, webhook_timeout_seconds=1)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def rt(app):
    return app.extensions["footfall"]


def endpoint(rt, receiver, types=WEBHOOK_TYPES):
    created = queue.add_endpoint(receiver.url, list(types), rt.vault, "test", allow_loopback=True)
    receiver.secret = created.secret
    return created.endpoint


def sender(rt, **kw):
    return queue.Sender(rt.vault, b"k" * 32, rt.settings.store_id, 1.0, 3, True, **kw)


def person_signs_in(visitors, email, mac, marketing=(), analytics=(), prove=True):
    outcome = visitors.sign_in(SignInForm(email=email, terms=True, marketing=frozenset(marketing),
                                          analytics=frozenset(analytics), adult=True), Client("10.0.0.9", mac))
    assert outcome.ok, outcome.errors
    if prove:
        prove_claims(visitors, outcome, Client("10.0.0.9", mac))
    return Lead.get(Lead.uid == outcome.lead)


def test_the_scheduler_job_sends_messages_the_reference_library_verifies(app, rt, visitors, receiver):
    endpoint(rt, receiver)
    lead = person_signs_in(visitors, "lan@example.com", "02:00:00:00:00:01", marketing=["marketing_email"])
    result = jobs.run_job("webhooks", rt.settings)
    assert result["delivered"] == result["queued"] > 0 and result["failed"] == 0
    assert receiver.requests and all(r["verified"] for r in receiver.requests), receiver.requests
    types = [p["type"] for p in receiver.payloads()]
    assert types.count("lead.created") == 1 and types.count("lead.verified") == 1
    assert "consent.changed" in types
    created = receiver.payloads("lead.created")[0]
    who = created["data"]["person"]
    assert who["email"] == "lan@example.com" and who["marketing"] == ["marketing_email"]
    assert who["id"].startswith("p_") and lead.uid not in who["id"] and who["id"] != str(lead.id)
    # One person, one stable id in every message about them.
    assert {p["data"]["person"]["id"] for p in receiver.payloads() if p["data"].get("person")} == {who["id"]}
    assert created["data"]["store"] == rt.settings.store_id
    headers = receiver.requests[0]["headers"]
    assert headers["webhook-id"].startswith("msg_") and headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    # Run again: nothing new, nothing sent twice.
    before = len(receiver.requests)
    assert jobs.run_job("webhooks", rt.settings)["queued"] == 0
    assert len(receiver.requests) == before


def test_a_person_without_marketing_consent_is_only_an_opaque_id(app, rt, visitors, receiver):
    endpoint(rt, receiver, ["lead.created", "lead.verified"])
    person_signs_in(visitors, "khong@example.com", "02:00:00:00:00:02")  # terms only, email proved
    person_signs_in(visitors, "chua@example.com", "02:00:00:00:00:03", marketing=["marketing_email"], prove=False)
    queue.fan_out()
    queue.deliver_due(sender(rt))
    people = [p["data"]["person"] for p in receiver.payloads()]
    assert len(people) == 3  # two created, one verified
    for who in people:
        assert set(who) == {"id"}, who  # no contact: no consent, or a consent whose channel is not proved
    raw = b"".join(r["body"] for r in receiver.requests)
    assert b"khong@" not in raw and b"chua@" not in raw
    # A withdrawal after the message was queued, before it was sent: what waited changes too.
    lead = person_signs_in(visitors, "rut@example.com", "02:00:00:00:00:04", marketing=["marketing_email"])
    queue.fan_out()
    consent.record(lead, "marketing_email", False, Where("store-1", None, None, "panel"))
    queue.deliver_due(sender(rt))
    created = receiver.payloads("lead.created")
    assert len(created) == 3 and set(created[-1]["data"]["person"]) == {"id"}
    assert b"rut@" not in b"".join(r["body"] for r in receiver.requests)


def test_failures_are_retried_with_backoff_then_dead_lettered_and_sent_again(app, rt, visitors, receiver):
    endpoint(rt, receiver, ["lead.created"])
    person_signs_in(visitors, "loi@example.com", "02:00:00:00:00:05")
    queue.fan_out()
    (row,) = queue.WebhookDelivery.select()
    clock = [utcnow()]
    modes = ["500", "garbage", "slow"]  # a server error, an answer that is not HTTP, no answer in time
    for n, mode in enumerate(modes, start=1):
        receiver.mode = mode
        totals = queue.deliver_due(sender(rt), now=lambda: clock[0])
        row = queue.WebhookDelivery.get_by_id(row.id)
        assert row.attempts == n
        if n < len(modes):
            assert totals["failed"] == 1 and row.state == queue.PENDING
            wait = (row.next_at - clock[0]).total_seconds()
            assert wire.BACKOFF_BASE * 2 ** (n - 1) * 0.5 <= wait <= wire.BACKOFF_BASE * 2 ** (n - 1) + 1
            # Not due yet: nothing is sent before the backoff ends.
            assert queue.deliver_due(sender(rt), now=lambda: clock[0]) == {"delivered": 0, "failed": 0, "dead": 0}
            clock[0] = row.next_at
        else:
            assert totals["dead"] == 1 and row.state == queue.DEAD
    assert "TimeoutError" in row.last_error or "timed out" in row.last_error
    assert [d.id for d in queue.dead_letters()] == [row.id]
    receiver.mode = "ok"
    assert queue.deliver_due(sender(rt), now=lambda: clock[0] + datetime.timedelta(days=1))["delivered"] == 0
    assert queue.send_again(row.id, clock[0])
    assert queue.deliver_due(sender(rt), now=lambda: clock[0])["delivered"] == 1
    assert queue.WebhookDelivery.get_by_id(row.id).state == queue.DELIVERED
    # Every attempt was the same message (one webhook-id for the receiver to dedupe on), each signed afresh.
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert ids == {row.msg_id} and len(receiver.requests) == 4 and all(r["verified"] for r in receiver.requests)
    assert not queue.send_again(row.id)  # delivered: no longer a dead letter


def test_a_redirect_is_never_followed_a_500_page_is_read_bounded_and_a_rebound_name_is_refused(
        app, rt, visitors, receiver):
    endpoint(rt, receiver, ["lead.created"])
    person_signs_in(visitors, "redirect@example.com", "02:00:00:00:00:06")
    queue.fan_out()
    receiver.mode = "redirect"
    queue.deliver_due(sender(rt))
    row = queue.WebhookDelivery.get()
    assert row.last_status == 302 and row.last_error == "redirect not followed" and receiver.redirected == 0
    receiver.mode = "500"
    queue.deliver_due(sender(rt), now=lambda: row.next_at)
    row = queue.WebhookDelivery.get()
    assert row.last_status == 500 and len(row.last_error) <= 300
    sent = len(receiver.requests)
    rebound = sender(rt, resolver=lambda host, port: ["10.0.0.1"])  # the name now answers a LAN address
    assert queue.deliver_due(rebound, now=lambda: row.next_at)["dead"] == 1  # the third attempt of three
    row = queue.WebhookDelivery.get()
    assert row.last_error.startswith("refused target: err_webhook_private") and len(receiver.requests) == sent


def test_a_receiver_dripping_its_answer_is_cut_off(receiver):
    receiver.mode = "drip"
    payload = wire.body("lead.created", "2026-11-20T10:00:00Z", {})
    secret = wire.new_secret()
    outcome = wire.post(receiver.url, wire.headers(secret, "msg_drip", int(time.time()), payload), payload,
                        timeout=1.0, allow_loopback=True)
    # Each byte comes well within the per-operation timeout: only the whole exchange's deadline ends it.
    assert not outcome.ok and outcome.error == "no complete answer within 2 s"


def test_https_goes_to_the_checked_address_with_the_certificate_checked_for_the_name(tmp_path):
    import ssl

    import trustme
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    results = {}
    for name in ("localhost", "elsewhere.test"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        receiver = Receiver(tls=context)
        receiver.secret = wire.new_secret()
        try:
            payload = wire.body("lead.created", "2026-11-20T10:00:00Z", {"person": {"id": "p_1"}})
            outcome = wire.post(receiver.url, wire.headers(receiver.secret, "msg_tls", int(time.time()), payload), payload,
                                timeout=2, allow_loopback=True, resolver=lambda host, port: ["127.0.0.1"],
                                ca_file=str(ca_file))
            results[name] = (outcome, len(receiver.payloads()))
        finally:
            receiver.close()
    assert results["localhost"] == (wire.Outcome(True, 204, ""), 1)
    refused, received = results["elsewhere.test"]  # a certificate for another name: nothing is sent
    assert not refused.ok and "CERTIFICATE_VERIFY_FAILED" in refused.error and received == 0


def test_an_erasure_tells_the_crm_the_pseudonym_and_nothing_else(app, rt, visitors, receiver):
    from portal import privacy
    endpoint(rt, receiver, ["lead.created", "lead.erased"])
    lead = person_signs_in(visitors, "xoa@example.com", "02:00:00:00:00:0d", marketing=["marketing_email"])
    queue.fan_out()
    queue.deliver_due(sender(rt))
    privacy.erase_person(Lead.get_by_id(lead.id), [], rt.gateway, rt.settings.store_id, "test")
    queue.fan_out()
    queue.deliver_due(sender(rt))
    (created,), (erased,) = receiver.payloads("lead.created"), receiver.payloads("lead.erased")
    assert created["data"]["person"]["email"] == "xoa@example.com"
    assert erased["data"]["person"] == {"id": created["data"]["person"]["id"]}


def test_a_replayed_or_altered_message_is_refused_by_the_receiver(app, rt, visitors, receiver):
    endpoint(rt, receiver, ["lead.created"])
    person_signs_in(visitors, "replay@example.com", "02:00:00:00:00:07")
    queue.fan_out()
    queue.deliver_due(sender(rt))
    (entry,) = receiver.requests
    hook = Webhook(receiver.secret)
    assert hook.verify(entry["body"], entry["headers"])["type"] == "lead.created"
    old = int(entry["headers"]["webhook-timestamp"]) - 600
    # The same message re-signed ten minutes in the past (a replay): the library refuses its age.
    replay = {**entry["headers"], "webhook-timestamp": str(old),
              "webhook-signature": wire.webhook_signature(receiver.secret, entry["headers"]["webhook-id"], old, entry["body"])}
    with pytest.raises(WebhookVerificationError, match="too old"):
        hook.verify(entry["body"], replay)
    # Moving the timestamp without the secret breaks the signature; so does changing the body.
    with pytest.raises(WebhookVerificationError, match="signature"):
        hook.verify(entry["body"], {**entry["headers"], "webhook-timestamp": str(int(entry["headers"]["webhook-timestamp"]) + 1)})
    with pytest.raises(WebhookVerificationError):
        hook.verify(entry["body"].replace(b"lead.created", b"lead.verified"), entry["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(wire.new_secret()).verify(entry["body"], entry["headers"])


def test_visits_segments_and_vouchers_from_outbox_events(app, rt, visitors, receiver):
    endpoint(rt, receiver, ["visit.closed", "segment.membership_changed", "voucher.redeemed"])
    followed = person_signs_in(visitors, "theo@example.com", "02:00:00:00:00:08", analytics=["visit_analytics"],
                               marketing=["marketing_email"])
    private = person_signs_in(visitors, "rieng@example.com", "02:00:00:00:00:09")
    visit = {"start": "2026-11-20T10:00:00", "end": "2026-11-20T10:40:00"}
    OutboxEvent.emit("visit.closed", device="02:00:00:00:00:08", passerby=False, source="dhcp", **visit)
    OutboxEvent.emit("visit.closed", device="02:00:00:00:00:09", passerby=False, source="dhcp", **visit)
    OutboxEvent.emit("visit.closed", device="02:00:00:00:00:08", passerby=True, source="dhcp", **visit)
    OutboxEvent.emit("segment.members", segment="returning", members=[followed.uid, private.uid])
    OutboxEvent.emit("segment.members", segment="returning", members=[followed.uid])
    # Another part (vouchers) emits this event; its webhook type is defined here.
    OutboxEvent.emit("voucher.redeemed", lead=private.uid, voucher="TET-2027", campaign="tet", value=50000,
                     note="staff only", device="02:00:00:00:00:09")
    assert Device.get(Device.mac == "02:00:00:00:00:09").lead_id == private.id
    queue.fan_out()
    queue.deliver_due(sender(rt))
    assert all(r["verified"] for r in receiver.requests)
    visits = receiver.payloads("visit.closed")
    assert len(visits) == 2  # the passer-by is no visit
    by_person = {bool(v["data"]["person"]): v["data"] for v in visits}
    assert by_person[True]["person"]["email"] == "theo@example.com" and by_person[True]["start"] == visit["start"]
    assert by_person[False]["person"] is None  # no visit_analytics consent: the visit is anonymous
    assert "02:00:00:00:00:0" not in json.dumps(receiver.payloads())  # never a MAC
    first, second = receiver.payloads("segment.membership_changed")
    assert len(first["data"]["added"]) == 2 and first["data"]["removed"] == []
    assert second["data"]["added"] == [] and [set(p) for p in second["data"]["removed"]] == [{"id"}]
    (voucher,) = receiver.payloads("voucher.redeemed")
    assert voucher["data"]["voucher"] == "TET-2027" and voucher["data"]["value"] == 50000
    assert "note" not in voucher["data"] and "device" not in voucher["data"] and set(voucher["data"]["person"]) == {"id"}


def test_the_queue_is_fed_once_from_the_outbox_and_only_for_subscribed_enabled_endpoints(app, rt, visitors, receiver):
    on = endpoint(rt, receiver, ["lead.created"])
    off = endpoint(rt, receiver, WEBHOOK_TYPES)
    queue.set_enabled(off, False)
    person_signs_in(visitors, "mot@example.com", "02:00:00:00:00:0a")
    read, queued = queue.fan_out()
    assert read > 0 and queued == 1
    assert queue.fan_out() == (0, 0)
    assert queue.mark() == OutboxEvent.select().order_by(OutboxEvent.id.desc()).get().id
    (row,) = queue.WebhookDelivery.select()
    assert row.endpoint_id == on.id and row.type == "lead.created"
    assert b"mot@example.com" not in row.subject.encode()  # the queue holds identifiers only
    queue.remove_endpoint(on)
    assert queue.WebhookDelivery.select().count() == 0


PUBLIC = lambda host, port: ["93.184.215.14"]  # noqa: E731  (an answer a public name gives)


@pytest.mark.parametrize("url,code", [
    ("http://example.com/hook", "err_webhook_https"),
    ("ftp://example.com/hook", "err_webhook_https"),
    ("javascript:alert(1)", "err_webhook_url"),
    ("https://user:pw@example.com/hook", "err_webhook_url"),
    ("https://example.com/<script>", "err_webhook_url"),
    ("https://example.com:99999/", "err_webhook_url"),
    ("https://127.0.0.1/hook", "err_webhook_private"),
    ("https://localhost/hook", "err_webhook_private"),
    ("https://10.1.2.3/hook", "err_webhook_private"),
    ("https://172.16.0.1/hook", "err_webhook_private"),
    ("https://192.168.1.1/hook", "err_webhook_private"),
    ("https://169.254.169.254/latest/meta-data", "err_webhook_private"),
    ("https://100.64.0.1/", "err_webhook_private"),
    ("https://[::1]/hook", "err_webhook_private"),
    ("https://[::ffff:127.0.0.1]/hook", "err_webhook_private"),
    ("https://[fe80::1]/hook", "err_webhook_private"),
    ("https://[fd00::1]/hook", "err_webhook_private"),
    ("https://0.0.0.0/hook", "err_webhook_private"),
    ("https://224.0.0.1/hook", "err_webhook_private"),
    ("https://2130706433/hook", "err_webhook_private"),  # 127.0.0.1 as one number
    ("https://0x7f.1/hook", "err_webhook_private"),
])
def test_unsafe_targets_are_refused(url, code):
    resolver = PUBLIC if "example.com" in url else wire.resolve
    with pytest.raises(wire.TargetRefused) as caught:
        wire.check_target(url, allow_loopback=False, resolver=resolver)
    assert caught.value.code == code


def test_a_name_with_any_private_address_is_refused_and_loopback_needs_the_setting():
    mixed = lambda host, port: ["93.184.215.14", "192.168.0.10"]  # noqa: E731
    with pytest.raises(wire.TargetRefused, match="err_webhook_private"):
        wire.check_target("https://crm.example.com/hook", resolver=mixed)
    assert wire.check_target("https://crm.example.com/hook", resolver=PUBLIC)[1] == "93.184.215.14"
    with pytest.raises(wire.TargetRefused, match="err_webhook_https"):
        wire.check_target("http://127.0.0.1:9/hook")
    assert wire.check_target("http://127.0.0.1:9/hook", allow_loopback=True)[1] == "127.0.0.1"
    with pytest.raises(wire.TargetRefused, match="err_webhook_private"):  # the setting opens loopback only
        wire.check_target("https://10.0.0.1/hook", allow_loopback=True)


def test_secrets_are_whsec_and_signatures_match_the_reference_library():
    secret = wire.new_secret()
    assert secret.startswith("whsec_")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    body = wire.body("lead.created", "2026-11-20T10:00:00Z", {"person": {"id": "p_1"}, "store": "Cà Phê"})
    ours = wire.webhook_signature(secret, "msg_1", int(stamp.timestamp()), body)
    assert ours == Webhook(secret).sign("msg_1", stamp, body.decode())
    with pytest.raises(ValueError):
        wire.webhook_signature("not-a-secret", "msg_1", 1, body)


def test_the_webhooks_job_writes_only_the_schedulers_tables(app, rt, visitors, receiver, written):
    from portal.db import WRITERS, database
    endpoint(rt, receiver, WEBHOOK_TYPES)
    person_signs_in(visitors, "ghi@example.com", "02:00:00:00:00:0c", marketing=["marketing_email"])
    database.close()
    written.clear()
    assert jobs.run_job("webhooks", rt.settings)["delivered"] > 0
    assert jobs.run_job("purge", rt.settings)["webhooks_delivered"] == 0  # delivered today: kept a week
    assert written and written <= WRITERS["scheduler"], written - WRITERS["scheduler"]


def test_the_migration_starts_after_the_existing_outbox_and_knows_the_existing_people(app, rt, visitors, receiver):
    import importlib

    from portal.db import database
    from portal.models import StoreSetting
    old = person_signs_in(visitors, "cu@example.com", "02:00:00:00:00:0e", marketing=["marketing_email"])
    migration = importlib.import_module("portal.migrations.0018_webhooks")
    with database.atomic():  # the box as it was before 0018, with its people and outbox
        migration.down(None, database)
        migration.up(None, database)
    assert queue.mark() == OutboxEvent.select().order_by(OutboxEvent.id.desc()).get().id
    assert StoreSetting.get(StoreSetting.key == queue.MARK_KEY).value == str(queue.mark())
    endpoint(rt, receiver, ["lead.created", "lead.verified", "consent.changed"])
    assert queue.fan_out() == (0, 0)  # history is not replayed to a new CRM
    OutboxEvent.emit("lead.upserted", lead=old.uid)  # the old person changes: no "new person", no new proof
    consent.record(old, "marketing_sms", True, Where("store-1", None, None, "panel"))
    queue.fan_out()
    queue.deliver_due(sender(rt))
    assert [p["type"] for p in receiver.payloads()] == ["consent.changed"]


def test_a_segment_job_s_event_announces_the_members_it_has_when_read(app, rt, visitors, receiver):
    """The segment job's event names the segment only (portal/segments.py); the fan-out reads its
    members, so a recompute announces who joined, not an empty segment."""
    from portal import segments
    from portal.models import Segment, SegmentMember, Visit, utcnow
    endpoint(rt, receiver, ["segment.membership_changed"])
    followed = person_signs_in(visitors, "lan@example.com", "02:00:00:00:00:0b", analytics=["visit_analytics"])
    device = Device.get(Device.mac == "02:00:00:00:00:0b")
    Visit.create(device=device, start=utcnow() - datetime.timedelta(days=1), end=utcnow() - datetime.timedelta(hours=23))
    queue.fan_out()  # what the sign-in announced
    segments.recompute()
    new = Segment.get(Segment.key == "new")
    assert SegmentMember.get(SegmentMember.segment == new).lead_id == followed.id
    event = OutboxEvent.select().where(OutboxEvent.topic == "segment.members").order_by(OutboxEvent.id.desc()).first()
    assert "members" not in json.loads(event.payload)
    queue.fan_out()
    queue.deliver_due(sender(rt))
    changes = {p["data"]["segment"]: p["data"] for p in receiver.payloads("segment.membership_changed")}
    assert len(changes["new"]["added"]) == 1 and changes["new"]["removed"] == []

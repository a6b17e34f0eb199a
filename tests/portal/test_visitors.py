"""The visitor journey without HTTP."""
import json

import pytest

from portal import consent
from portal.gateway import GatewayError
from portal.models import ContactClaim, Authorization, AuditEntry, Consent, Device, Lead, OutboxEvent, Visit, utcnow
from portal.identity import clean_name
from portal.visitors import Client, SignInForm

ALICE = Client("10.0.0.10", "02:aa:00:00:00:01")


def form(**kw):
    base = dict(email="alice@example.com", terms=True, language="en", adult=True)
    base.update(kw)
    return SignInForm(**base)


def test_sign_in_stores_lead_consent_authorization_and_outbox_together(visitors, gateway):
    outcome = visitors.sign_in(form(marketing=frozenset({"marketing_email"})), ALICE)
    assert outcome.ok and outcome.online_until > utcnow()
    lead = Lead.get()
    assert visitors.vault.decrypt(lead.email_enc, "lead.email") == "alice@example.com"
    assert lead.email_index == visitors.vault.blind_index("email", "alice@example.com")
    assert {(c.purpose, c.granted) for c in Consent.select()} == {("wifi_terms", True), ("marketing_email", True)}
    terms = Consent.get(Consent.purpose == "wifi_terms")
    assert terms.policy_sha256 == consent.current("wifi_terms", "en").sha256
    assert (terms.device_mac, terms.ip, terms.store_id) == (ALICE.mac, ALICE.ip, "store-1")
    device = Device.get(Device.mac == ALICE.mac)
    assert device.lead_id == lead.id and device.randomized
    assert Authorization.get().ip == ALICE.ip
    assert gateway.grants[ALICE.mac].until == outcome.online_until
    topics = [e.topic for e in OutboxEvent.select()]
    assert {"lead.upserted", "consent.recorded"} <= set(topics)
    assert "device.linked" not in topics  # no visit analytics: the device's MAC stays here (issue 15)
    for event in OutboxEvent.select():
        assert "alice" not in event.payload
    assert AuditEntry.get().action == "sign_in"


def test_marketing_is_never_implied(visitors):
    assert visitors.sign_in(form(), ALICE).ok
    assert consent.granted_purposes(Lead.get()) == {"wifi_terms"}


@pytest.mark.parametrize("phone", ["0912 345 678", "+84 912 345 678", "84912345678"])
def test_one_person_whatever_the_phone_format(visitors, phone):
    """Every spelling is the same number: the second form claims the first one's phone (a code,
    not a second holder; issue 11 joins the two once the code is entered)."""
    visitors.sign_in(form(email="", phone="0912345678"), ALICE)
    second = visitors.sign_in(form(email="", phone=phone), Client("10.0.0.11", "02:aa:00:00:00:02"))
    holders = Lead.select().where(Lead.phone_index.is_null(False))
    assert holders.count() == 1 and Device.select().where(Device.lead == holders.get()).count() == 1
    claim = ContactClaim.get(ContactClaim.uid == second.claims[0])
    assert claim.kind == "phone" and claim.destination_index == holders.get().phone_index


def test_email_case_and_spaces_do_not_make_a_new_person(visitors):
    visitors.sign_in(form(email="Alice@Example.com "), ALICE)
    visitors.sign_in(form(email="alice@example.COM"), ALICE)
    assert Lead.select().count() == 1


def test_phone_added_to_an_existing_email_lead(visitors):
    visitors.sign_in(form(), ALICE)
    visitors.sign_in(form(phone="0912345678"), ALICE)
    lead = Lead.get()
    assert visitors.vault.decrypt(lead.phone_enc, "lead.phone") == "+84912345678"


def test_a_phone_held_by_another_person_is_not_taken_over(visitors):
    bob_device = Client("10.0.0.12", "02:bb:00:00:00:01")
    visitors.sign_in(form(email="", phone="0912345678"), ALICE)
    visitors.sign_in(form(email="bob@example.com"), bob_device)
    visitors.sign_in(form(email="bob@example.com", phone="0912345678"), bob_device)
    bob = Lead.get(Lead.email_index == visitors.vault.blind_index("email", "bob@example.com"))
    assert bob.phone_index is None
    assert Lead.select().count() == 2


def test_an_email_added_to_a_phone_only_lead_is_the_same_person(visitors):
    visitors.sign_in(form(email="", phone="0912345678"), ALICE)
    visitors.sign_in(form(email="alice@example.com", phone="+84912345678"), ALICE)
    assert Lead.select().count() == 1 and Lead.get().email_index is not None


@pytest.mark.parametrize("kw,field,code", [
    (dict(email="", phone=""), "contact", "contact_missing"),
    (dict(email="not-an-email"), "email", "email_invalid"),
    (dict(email="", phone="12"), "phone", "phone_invalid"),
    (dict(terms=False), "terms", "terms_required"),
    (dict(name="<script>alert(1)</script>"), "name", "name_invalid"),
    (dict(name="x" * 81), "name", "name_too_long"),
    (dict(marketing=frozenset({"sell_my_data"})), "marketing", "purpose_unknown"),
    (dict(email="", phone="0912345678", marketing=frozenset({"marketing_email"})), "email", "email_needed_for_marketing"),
    (dict(marketing=frozenset({"marketing_sms"})), "phone", "phone_needed_for_marketing"),
])
def test_invalid_forms_change_nothing(visitors, gateway, kw, field, code):
    outcome = visitors.sign_in(form(**kw), ALICE)
    assert not outcome.ok and outcome.errors[field] == code
    assert Lead.select().count() == 0 and Consent.select().count() == 0 and Authorization.select().count() == 0
    assert OutboxEvent.select().count() == 0 and gateway.grants == {}


def test_names_in_any_script_are_accepted():
    assert clean_name("  Nguyễn   Thị  Minh Khai ") == "Nguyễn Thị Minh Khai"
    assert clean_name("O'Brien-Smith Jr.") == "O'Brien-Smith Jr."


def test_device_unknown_to_the_gateway_cannot_sign_in(visitors):
    outcome = visitors.sign_in(form(), Client("10.0.0.10", None))
    assert outcome.errors == {"form": "device_unknown"}
    assert Lead.select().count() == 0


class FailingGateway:
    name = "failing"

    def client_mac(self, ip):
        return ALICE.mac

    def authorize(self, grant):
        raise GatewayError("nft said no")

    def revoke(self, mac):
        raise GatewayError("nft said no")


def test_gateway_failure_is_reported_and_the_authorization_revoked(visitors, monkeypatch):
    monkeypatch.setattr(visitors, "gateway", FailingGateway())
    outcome = visitors.sign_in(form(), ALICE)
    assert outcome.errors == {"form": "gateway_failed"}
    assert Authorization.get().revoked_at is not None
    assert visitors.online_until(ALICE.ip) is None


def test_welcome_back_needs_current_terms(visitors):
    assert visitors.recognised(ALICE) is None
    visitors.sign_in(form(name="Alice"), ALICE)
    lead = visitors.recognised(ALICE)
    assert lead is not None and visitors.greeting_name(lead) is None  # a name only to a proven session
    assert visitors.greeting_name(lead, {lead.uid}) == "Alice"
    assert visitors.reconnect(ALICE).ok
    assert Authorization.select().count() == 2
    consent.publish("wifi_terms", "en", "Changed terms.")
    assert visitors.recognised(ALICE) is None
    assert visitors.reconnect(ALICE).errors == {"form": "not_recognised"}


def test_my_data_is_masked_and_complete(visitors):
    visitors.sign_in(form(phone="0912345678", name="Alice", marketing=frozenset({"marketing_sms"})), ALICE)
    data = visitors.my_data(ALICE)
    assert (data.email, data.phone, data.name) == ("a***@example.com", "+849*****678", "A***")
    assert data.current["marketing_sms"].granted and data.current["marketing_email"] is None
    assert [line.purpose for line in data.history] == ["wifi_terms", "marketing_sms"]
    assert data.online_until is not None
    assert visitors.my_data(Client("10.9.9.9", "02:00:00:00:00:99")) is None


def test_withdraw_appends_and_keeps_wifi(visitors):
    visitors.sign_in(form(marketing=frozenset({"marketing_email", "ad_audiences"})), ALICE)
    assert visitors.withdraw(ALICE, "marketing_email").ok
    assert visitors.withdraw(ALICE, "marketing_email").ok  # twice: no second event
    lead = Lead.get()
    assert consent.granted_purposes(lead) == {"wifi_terms", "ad_audiences"}
    assert Consent.select().where(Consent.granted == False).count() == 1  # noqa: E712
    assert visitors.online_until(ALICE.ip) is not None
    assert visitors.withdraw(ALICE, "wifi_terms").errors == {"form": "purpose_unknown"}


def test_erase_removes_personal_data_everywhere_on_the_appliance(visitors, gateway):
    visitors.sign_in(form(phone="0912345678", name="Alice", marketing=frozenset({"marketing_email"})), ALICE)
    other = Client("10.0.0.20", "02:aa:00:00:00:09")
    visitors.sign_in(form(), other)  # the same email from another device: a claim of its own
    Visit.create(device=Device.get(Device.mac == ALICE.mac), start=utcnow(), end=utcnow())
    lead = Device.get(Device.mac == ALICE.mac).lead
    assert visitors.erase(ALICE).ok  # her record is all her device's own submission: erased whole
    lead = Lead.get_by_id(lead.id)
    assert lead.erased_at is not None
    assert (lead.email_enc, lead.email_index, lead.phone_enc, lead.phone_index, lead.name_enc) == (None,) * 5
    assert [d.mac for d in Device.select()] == [other.mac] and Visit.select().count() == 0
    assert [a.device.mac for a in Authorization.select()] == [other.mac]
    assert set(gateway.grants) == {other.mac}
    assert consent.granted_purposes(lead) == set()
    assert Consent.select().where((Consent.lead == lead) & (Consent.device_mac.is_null(False) | Consent.ip.is_null(False))).count() == 0
    erased = OutboxEvent.get(OutboxEvent.topic == "lead.erased")
    assert json.loads(erased.payload) == {"lead": lead.uid, "verified": False}
    assert visitors.my_data(ALICE) is None
    assert visitors.sign_in(form(), ALICE).ok  # the same person may come back as a new lead
    assert Lead.select().count() == 3

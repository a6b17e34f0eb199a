"""Issue 11 through the app: knowing someone's email or phone is not being them.

Real parts: codes go by email through an aiosmtpd server, by SMS through a local server speaking
eSMS.vn's documented API and by Zalo through one speaking ZNS's; the visitor reads them there.
"""
from __future__ import annotations

import json
import re
import time

import pytest
from aiosmtpd.controller import Controller

from portal import consent, exports, segments
from portal.app import create_app
from portal.config import load_settings
from portal.db import database
from portal.gateway.null import NullGateway, synthetic_mac
from portal.models import Authorization, ContactClaim, ContactProof, Consent, Device, Lead, OutboxEvent, Segment
from portal.sync import to_wire
from tests.conftest import PORTAL_HOST, PortalClient
from tests.messages.providers import Inbox, Provider, free_port

ALICE_EMAIL, ALICE_PHONE = "alice@example.com", "0912345678"
ALICE_E164 = "+84912345678"


@pytest.fixture
def providers():
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    esms, zns = Provider("esms"), Provider("zns")
    yield {"smtp": smtp, "inbox": inbox, "esms": esms, "zns": zns}
    smtp.stop()
    esms.close()
    zns.close()


def make_app(tmp_path, providers, **overrides):
    values = dict(
        environ={}, data_dir=str(tmp_path / "data"), portal_url=f"http://{PORTAL_HOST}", store_name="Cà Phê Test",
        rate_limit_count=200, email_driver="smtp", smtp_host="127.0.0.1", smtp_port=providers["smtp"].port,
        smtp_security="none", smtp_from="wifi@shop.test", sms_driver="esms", esms_url=providers["esms"].url,
        esms_api_key="k", esms_secret_key="s", esms_brandname="CAPHE", zalo_driver="zns",
        zalo_url=providers["zns"].url, zalo_access_token="oa-token", zalo_template_id="t1")
    settings = load_settings(**{**values, **overrides})
    app = create_app(settings, gateway=NullGateway())
    app.config["TESTING"] = True
    return app


@pytest.fixture
def app(tmp_path, providers):
    app = make_app(tmp_path, providers)
    yield app
    database.close()


class Phone(PortalClient):
    """One device: its own cookies, its own address (so its own synthetic MAC)."""

    def __init__(self, app, ip: str, providers) -> None:
        super().__init__(app.test_client(), ip=ip)
        self.app, self.providers = app, providers
        self.mac = synthetic_mac(ip)

    def wait_code(self, channel: str, to: str, after: int = 0) -> str:
        """The newest code delivered to `to`, waiting (bounded) for the message layer to send it."""
        source = {"email": self.providers["inbox"], "sms": self.providers["esms"], "zalo": self.providers["zns"]}[channel]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            codes = source.codes(to)
            if len(codes) > after:
                return codes[-1]
            time.sleep(0.02)
        raise AssertionError(f"no {channel} code reached {to}")

    def claim_on_page(self, path: str = "/online", kind: str = r"\w+") -> str:
        page = self.get(path).get_data(as_text=True)
        match = re.search(rf'data-kind="{kind}">.*?name="claim" value="([0-9a-f]+)"', page, re.S)
        assert match, f"no code form on {path}"
        return match.group(1)

    def enter(self, code: str, claim: str | None = None, path: str = "/online", headers=None, **extra):
        claim = claim or self.claim_on_page(path)
        return self.post("/verify", data={"csrf_token": self.token("/my-data"), "claim": claim, "code": code, **extra},
                         headers=headers or {})


def age_codes(seconds: int = 61) -> None:
    """Move every code sent so far into the past (past the resend cooldown)."""
    database.execute_sql(f"UPDATE verification_code SET created_at = datetime(created_at, '-{seconds} seconds')")


def phone(app, providers, n: int) -> Phone:
    return Phone(app, f"10.0.0.{n}", providers)


def lead_of(mac: str) -> Lead | None:
    device = Device.get_or_none(Device.mac == mac)
    return device.lead if device and device.lead_id else None


def snapshot(lead: Lead) -> dict:
    lead = Lead.get_by_id(lead.id)
    return {"email": lead.email_index, "phone": lead.phone_index, "name": bytes(lead.name_enc or b""),
            "email_verified": lead.email_verified_at, "phone_verified": lead.phone_verified_at,
            "consents": Consent.select().where(Consent.lead == lead).count(),
            "devices": sorted(d.mac for d in Device.select().where(Device.lead == lead)), "erased": lead.erased_at}


def alice_signs_in_and_verifies(app, providers) -> tuple[Phone, Lead]:
    alice = phone(app, providers, 10)
    assert alice.sign_in(email=ALICE_EMAIL, phone=ALICE_PHONE, name="Alice", marketing=["marketing_email"]).status_code == 303
    code = alice.wait_code("sms", ALICE_E164)  # a phone first: what Vietnamese guests read
    assert alice.enter(code).status_code == 303
    lead = lead_of(alice.mac)
    assert lead.phone_verified_at is not None and lead.phone_verified_via == "sms"
    return alice, lead


# -- the attack of the issue, step by step -------------------------------------------------------

def test_a_typed_email_takes_over_nothing(app, providers):
    alice, alice_lead = alice_signs_in_and_verifies(app, providers)
    # Alice proves her email too (from "my data").
    assert alice.post("/verify/send", data={"csrf_token": alice.token("/my-data"), "claim": "x"}).status_code == 422
    before = snapshot(alice_lead)

    mallory = phone(app, providers, 66)
    answer = mallory.sign_in(email=ALICE_EMAIL, phone="0987654321", name="Mallory",
                             marketing=["marketing_email", "marketing_sms", "ad_audiences"])
    assert answer.status_code == 303  # online all the same: getting online never waits for a proof
    assert snapshot(alice_lead) == before  # name, phone, consents, devices of alice: untouched
    mallory_lead = lead_of(mallory.mac)
    assert mallory_lead.id != alice_lead.id  # her device is not linked to alice
    assert mallory_lead.email_index is None  # alice's email is not on mallory's record either
    assert not Consent.select().where((Consent.lead == alice_lead) & (Consent.device_mac == mallory.mac)).exists()

    # Her "my data" shows nothing of alice.
    page = mallory.get("/my-data").get_data(as_text=True)
    # What she typed is hers to see ("you gave", unconfirmed), whoever holds it; alice's record is not.
    assert "Alice" not in page and "A***" not in page
    assert re.findall(r"<tr><th>[^<]*</th><td>a\*\*\*@example.com", page) == ["<tr><th>Bạn đã nhập</th><td>a***@example.com"]
    assert "+849*****678" not in page  # (her own phone, masked, is hers to see)

    # A code for alice's email can only go to alice's inbox: mallory asks, cannot read it, guesses.
    claim = mallory.claim_on_page(kind="email")
    age_codes()
    asked = mallory.post("/verify/send", data={"csrf_token": mallory.token("/my-data"), "claim": claim, "channel": "email"})
    assert asked.status_code == 303
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        assert mallory.enter(guess, claim).status_code == 422
    wrong = mallory.enter("555555", claim, headers={"Accept-Language": "en"})
    assert wrong.status_code == 422 and "Too many wrong tries" in wrong.get_data(as_text=True)
    # Even alice's real code, taken by a sixth try, is refused now.
    real = mallory.wait_code("email", ALICE_EMAIL)
    assert mallory.enter(real, claim).status_code == 422
    assert snapshot(alice_lead) == before

    # Her "erase everything" erases her own submission, never alice.
    assert mallory.post("/my-data/erase", data={"csrf_token": mallory.token("/my-data"), "confirm": "yes"}).status_code == 303
    assert snapshot(alice_lead) == before
    # The chain learns nothing of alice from mallory's store: only proven contacts leave the box.
    for event in OutboxEvent.select().where(OutboxEvent.topic == "lead.upserted"):
        data = to_wire(event, app.extensions["footfall"].vault)["data"]
        if data.get("lead") == mallory_lead.uid:
            assert data.get("email") is None and data.get("email_index") is None


def test_marketing_for_a_stranger_counts_for_nobody(app, providers):
    """Subscribing a stranger: the consent is recorded as given, counts nowhere until proved."""
    stranger = phone(app, providers, 20)
    stranger.sign_in(email="bob@example.com", phone="0911111111", marketing=["marketing_email", "marketing_sms", "ad_audiences"],
                     analytics=["visit_analytics"])  # segments hold only people who agreed to it (issue 15)
    lead = lead_of(stranger.mac)
    assert consent.granted_purposes(lead) == {"wifi_terms", "marketing_email", "marketing_sms", "ad_audiences", "visit_analytics"}
    assert consent.effective_purposes(lead) == {"wifi_terms", "visit_analytics"}
    everyone = segments.save_custom("Everyone in Vietnamese", {"language": "vi"})
    segments.recompute()
    assert list(exports.export_rows(everyone.id, "csv", app.extensions["footfall"].vault))[1:] == []
    assert list(exports.export_rows(everyone.id, "meta", app.extensions["footfall"].vault))[1:] == []
    assert exports.left_out(everyone.id, "csv") == 1 and exports.left_out(everyone.id, "meta") == 1

    # Bob proves his phone (SMS): SMS offers and ads count, on the phone only; email still waits.
    assert stranger.enter(stranger.wait_code("sms", "+84911111111")).status_code == 303
    lead = Lead.get_by_id(lead.id)
    assert consent.effective_purposes(lead) == {"wifi_terms", "marketing_sms", "ad_audiences", "visit_analytics"}
    segments.recompute()
    rows = list(exports.export_rows(everyone.id, "csv", app.extensions["footfall"].vault))[1:]
    assert rows == [["", "+84911111111", "", "vi"]]
    meta = list(exports.export_rows(everyone.id, "meta", app.extensions["footfall"].vault))[1:]
    assert len(meta) == 1 and meta[0][0] == "" and meta[0][1] == exports.sha256("84911111111")
    assert exports.left_out(everyone.id, "csv") == 0
    # The proof is kept beside the consent log.
    proof = ContactProof.get(ContactProof.lead == lead)
    assert (proof.kind, proof.channel, proof.destination_masked) == ("phone", "sms", "+849*****111")


def test_a_returning_visitor_on_a_new_random_mac_joins_her_record(app, providers):
    alice, alice_lead = alice_signs_in_and_verifies(app, providers)
    age_codes()
    new_mac = phone(app, providers, 11)  # iOS rotated her private address
    new_mac.sign_in(email="", phone=ALICE_PHONE, marketing=["ad_audiences"])
    assert lead_of(new_mac.mac).id != alice_lead.id  # not before the code
    code = new_mac.wait_code("sms", ALICE_E164, after=1)
    assert new_mac.enter(code).status_code == 303
    joined = lead_of(new_mac.mac)
    assert joined.id == alice_lead.id
    assert sorted(snapshot(alice_lead)["devices"]) == sorted([alice.mac, new_mac.mac])
    assert "ad_audiences" in consent.effective_purposes(joined)  # her consent from the new phone, hers now
    # The claim record folded into hers and says so to the chain.
    folded = Lead.get(Lead.merged_into == alice_lead.id)
    assert folded.erased_at is not None and folded.email_index is None and folded.phone_index is None
    merged = [json.loads(e.payload) for e in OutboxEvent.select().where(OutboxEvent.topic == "lead.merged")]
    assert merged == [{"lead": folded.uid, "into": alice_lead.uid}]
    # Every consent event now names her record on the wire.
    vault = app.extensions["footfall"].vault
    for event in OutboxEvent.select().where(OutboxEvent.topic.in_(["consent.recorded", "device.linked"])):
        assert to_wire(event, vault)["data"]["lead"] == alice_lead.uid
    # In this session she proved it: her page shows her details.
    page = new_mac.get("/my-data").get_data(as_text=True)
    assert "+849*****678" in page and "A***" in page


def test_an_unproved_claim_loses_the_contact_to_the_one_who_proves_it(app, providers):
    mallory = phone(app, providers, 66)
    mallory.sign_in(email=ALICE_EMAIL, name="Mallory", marketing=["marketing_email"])
    squatter = lead_of(mallory.mac)
    assert squatter.email_index is not None and squatter.email_verified_at is None
    # The code Mallory's claim sent to Alice's mailbox is delivered first (sending runs beside the
    # answer: under load it could otherwise arrive after Alice's own and be taken for hers).
    mallory.wait_code("email", ALICE_EMAIL)
    age_codes()
    alice = phone(app, providers, 10)
    alice.sign_in(email=ALICE_EMAIL, name="Alice")
    assert lead_of(alice.mac).id != squatter.id
    code = alice.wait_code("email", ALICE_EMAIL, after=1)
    assert alice.enter(code).status_code == 303
    owner = lead_of(alice.mac)
    assert owner.id != squatter.id and owner.email_verified_at is not None
    assert Lead.get_by_id(squatter.id).email_index is None  # released, not merged with mallory's claim
    assert lead_of(mallory.mac).id == squatter.id


# -- "my data", welcome back, erase and download need proof ------------------------------------------

def test_my_data_and_welcome_back_show_nothing_without_proof_in_this_session(app, providers):
    alice, alice_lead = alice_signs_in_and_verifies(app, providers)
    later = Phone(app, alice.ip, providers)  # the same phone, a new sign-in sheet (no session cookie)
    Authorization.delete().execute()
    age_codes()
    welcome = later.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Welcome back" in welcome and "Alice" not in welcome
    page = later.get("/my-data", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "+849*****678" not in page and "a***@example.com" not in page and "A***" not in page
    assert later.get("/my-data/download").status_code == 303  # no proof: sent back to prove it
    # Erasing without proof erases the device only, never her record.
    # (Proved: a code to the record's phone, its address never shown.)
    answer = later.post("/my-data/prove", data={"csrf_token": later.token("/my-data"), "kind": "phone"})
    assert answer.status_code == 303 and "/verify" in answer.headers["Location"]
    code_page = later.get("/verify?back=my-data").get_data(as_text=True)
    assert "+849" not in code_page  # read off the record: never shown to an unproven session
    code = later.wait_code("sms", ALICE_E164, after=1)
    assert later.enter(code, later.claim_on_page("/verify?back=my-data"), path="/verify?back=my-data",
                       back="my-data").status_code == 303
    page = later.get("/my-data").get_data(as_text=True)
    assert "+849*****678" in page and "A***" in page
    download = later.get("/my-data/download")
    assert download.status_code == 200 and download.headers["Content-Disposition"].startswith("attachment")
    data = json.loads(download.get_data(as_text=True))
    assert data["person"]["phone"] == ALICE_E164 and data["person"]["phone_verified"] is True
    assert [p["channel"] for p in data["proofs"]] == ["sms", "sms"]


def test_erasing_without_proof_erases_only_this_device(app, providers):
    alice, alice_lead = alice_signs_in_and_verifies(app, providers)
    spoof = Phone(app, alice.ip, providers)  # same MAC (spoofed, or her own phone in a new sheet)
    answer = spoof.post("/my-data/erase", data={"csrf_token": spoof.token("/my-data"), "confirm": "yes"})
    assert answer.status_code == 303 and "erased_device" in answer.headers["Location"]
    lead = Lead.get_by_id(alice_lead.id)
    assert lead.erased_at is None and lead.phone_index is not None
    assert Device.get_or_none(Device.mac == alice.mac) is None


def test_withdrawing_needs_no_code(app, providers):
    alice, alice_lead = alice_signs_in_and_verifies(app, providers)
    fresh = Phone(app, alice.ip, providers)
    answer = fresh.post("/my-data/withdraw", data={"csrf_token": fresh.token("/my-data"), "purpose": "marketing_email"})
    assert answer.status_code == 303
    assert "marketing_email" not in consent.granted_purposes(Lead.get_by_id(alice_lead.id))


def test_an_own_unproved_record_is_seen_and_erased_whole(app, providers):
    """A visitor who never verified sees and erases what that device itself submitted."""
    visitor = phone(app, providers, 30)
    visitor.sign_in(email="own@example.com", name="Owen")
    page = visitor.get("/my-data").get_data(as_text=True)
    assert "o***@example.com" in page and "O***" in page
    lead = lead_of(visitor.mac)
    visitor.post("/my-data/erase", data={"csrf_token": visitor.token("/my-data"), "confirm": "yes"})
    assert Lead.get_by_id(lead.id).erased_at is not None and Lead.get_by_id(lead.id).email_enc is None
    assert not ContactClaim.select().where(ContactClaim.lead_uid == lead.uid).exists()


# -- codes: every wrong way in, nothing changed -----------------------------------------------------

@pytest.mark.parametrize("code, message", [
    ("12345", "The code has 6 digits."), ("１２３４５６", "The code has 6 digits."), ("abcdef", "The code has 6 digits."),
    ("", "The code has 6 digits."), ("1234567", "The code has 6 digits."),
])
def test_malformed_codes_are_refused_clearly(app, providers, code, message):
    visitor = phone(app, providers, 40)
    visitor.sign_in(email="m@example.com")
    claim = visitor.claim_on_page()
    lead = lead_of(visitor.mac)
    answer = visitor.enter(code, claim, headers={"Accept-Language": "en"})
    assert answer.status_code == 422 and message in answer.get_data(as_text=True)
    assert Lead.get_by_id(lead.id).email_verified_at is None


def test_a_code_works_once_and_only_for_its_own_claim_and_device(app, providers):
    a, b = phone(app, providers, 41), phone(app, providers, 42)
    a.sign_in(email="a@example.com")
    b.sign_in(email="b@example.com")
    a_claim, b_claim = a.claim_on_page(), b.claim_on_page()
    a_code = a.wait_code("email", "a@example.com")
    # B enters A's code on A's claim: the claim is not in B's session (and not B's device).
    assert b.enter(a_code, a_claim).status_code == 422
    # A's code on B's claim is just a wrong code for B.
    assert b.enter(a_code, b_claim).status_code == 422 or a_code == b.wait_code("email", "b@example.com")
    assert a.enter(a_code, a_claim).status_code == 303
    again = a.enter(a_code, a_claim)  # the claim is closed: a reused code changes nothing
    assert again.status_code == 422
    assert Lead.get_by_id(lead_of(b.mac).id).email_verified_at is None


def test_resend_cooldown_and_hourly_limit_are_said_and_translated(app, providers):
    visitor = phone(app, providers, 43)
    visitor.sign_in(phone="0922222222")
    claim = visitor.claim_on_page()
    resend = visitor.post("/verify/send", data={"csrf_token": visitor.token("/my-data"), "claim": claim, "channel": "sms"},
                          headers={"Accept-Language": "vi"})
    assert resend.status_code == 429 and "chưa đến một phút" in resend.get_data(as_text=True)
    # Past the cooldown, the destination's hourly limit (5) holds; counted in the database.
    from portal.models import VerificationCode
    for _ in range(4):
        age_codes()
        ok = visitor.post("/verify/send", data={"csrf_token": visitor.token("/my-data"), "claim": claim, "channel": "zalo"})
        assert ok.status_code == 303
    age_codes()
    limited = visitor.post("/verify/send", data={"csrf_token": visitor.token("/my-data"), "claim": claim, "channel": "sms"},
                           headers={"Accept-Language": "en"})
    assert limited.status_code == 429 and "in the last hour" in limited.get_data(as_text=True)
    assert VerificationCode.select().count() == 5
    # Zalo carried the latest codes, as its template parameter.
    assert visitor.wait_code("zalo", "+84922222222")


def test_a_provider_error_is_shown_with_the_other_option(app, providers):
    providers["esms"].mode = "101"  # eSMS: credentials refused (not worth a retry)
    visitor = phone(app, providers, 44)
    visitor.sign_in(phone="0933333333", headers={"Accept-Language": "en"})
    deadline = time.monotonic() + 10
    page = ""
    while time.monotonic() < deadline and "could not send" not in page:
        page = visitor.get("/online", headers={"Accept-Language": "en"}).get_data(as_text=True)
        time.sleep(0.05)
    assert "We could not send the code. Try the other option." in page
    assert "Send the code by Zalo" in page
    claim = visitor.claim_on_page()
    age_codes()
    assert visitor.post("/verify/send", data={"csrf_token": visitor.token("/my-data"), "claim": claim, "channel": "zalo"}).status_code == 303
    assert visitor.enter(visitor.wait_code("zalo", "+84933333333"), claim).status_code == 303
    assert lead_of(visitor.mac).phone_verified_via == "zalo"


@pytest.mark.parametrize("mode", ["garbage", "http500"])
def test_a_provider_answering_garbage_never_breaks_the_page(app, providers, mode):
    providers["esms"].mode = mode
    visitor = phone(app, providers, 45)
    assert visitor.sign_in(phone="0944444444").status_code == 303
    assert visitor.get("/online").status_code == 200


# -- verify before getting online ------------------------------------------------------------------

def test_verify_before_sms_keeps_the_device_offline_until_the_code(tmp_path, providers):
    app = make_app(tmp_path, providers, verify_when="before")
    try:
        visitor = phone(app, providers, 50)
        answer = visitor.sign_in(phone="0955555555")
        assert answer.status_code == 303 and answer.headers["Location"].endswith("/verify")
        assert not Authorization.select().exists()  # an SMS arrives without internet
        gateway = app.extensions["footfall"].gateway
        assert visitor.mac not in gateway.grants
        claim = visitor.claim_on_page("/verify")
        code = visitor.wait_code("sms", "+84955555555")
        done = visitor.enter(code, claim, path="/verify")
        assert done.status_code == 303 and "/online" in done.headers["Location"]
        auth = Authorization.get()
        assert auth.method == "verified" and visitor.mac in gateway.grants
        # Recognised next time: one tap, since her record is verified.
        assert app.extensions["footfall"].visitors.recognised(
            __import__("portal.visitors", fromlist=["Client"]).Client(visitor.ip, visitor.mac)) is not None
    finally:
        database.close()


def test_verify_before_email_opens_a_short_window_to_fetch_the_code(tmp_path, providers):
    app = make_app(tmp_path, providers, verify_when="before", preverify_seconds=120, sms_driver="none", zalo_driver="none")
    try:
        visitor = phone(app, providers, 51)
        visitor.sign_in(email="win@example.com")
        window = Authorization.get()
        assert window.method == "preverify"
        assert 119 <= (window.expires_at - window.started_at).total_seconds() <= 120
        claim = visitor.claim_on_page("/verify")
        assert visitor.enter(visitor.wait_code("email", "win@example.com"), claim, path="/verify").status_code == 303
        full = Authorization.select().order_by(Authorization.id.desc()).first()
        assert full.method == "verified"
        assert (full.expires_at - full.started_at).total_seconds() >= app.extensions["footfall"].settings.session_seconds - 1
    finally:
        database.close()


def test_the_demo_prints_codes_on_its_terminal(tmp_path, capsys):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "d"), portal_url=f"http://{PORTAL_HOST}",
                             email_driver="console", sms_driver="console")
    app = create_app(settings, gateway=NullGateway())
    try:
        visitor = PortalClient(app.test_client(), ip="10.0.0.60")
        visitor.sign_in(email="", phone="0966666666")
        deadline = time.monotonic() + 5
        out = ""
        while time.monotonic() < deadline and "+84966666666" not in out:
            out += capsys.readouterr().out
            time.sleep(0.02)
        assert re.search(r"\[message sms to \+84966666666\] .*\b\d{6}\b", out)
    finally:
        database.close()


def test_claims_never_proved_are_purged_a_day_later_with_their_codes(app, providers):
    from portal.jobs import run_job
    from portal.models import VerificationCode
    visitor = phone(app, providers, 70)
    visitor.sign_in(email="later@example.com", phone="0977777777")
    assert ContactClaim.select().count() == 2 and VerificationCode.select().count() == 1
    run_job("purge", app.extensions["footfall"].settings)
    assert ContactClaim.select().count() == 2  # young: kept for the code
    database.execute_sql("UPDATE contact_claim SET created_at = datetime(created_at, '-25 hours')")
    database.execute_sql("UPDATE verification_code SET created_at = datetime(created_at, '-25 hours')")
    result = run_job("purge", app.extensions["footfall"].settings)
    assert result["claims_and_codes"] == 3
    assert ContactClaim.select().count() == 0 and VerificationCode.select().count() == 0
    # The device's own record keeps what it submitted (unproved), as any sign-in.
    assert lead_of(visitor.mac).email_index is not None


def test_the_store_wide_cap_on_billed_codes_ends_sms_pumping(tmp_path, providers):
    """A guest rotating MACs, addresses and numbers passes the per-device limits, never the store's."""
    app = make_app(tmp_path, providers, paid_codes_per_hour=3, paid_codes_per_day=5)
    try:
        for n in range(3):
            phone(app, providers, 100 + n).sign_in(email="", phone=f"09700000{n:02d}")
        assert len(providers["esms"].received) + len(providers["zns"].received) <= 3
        pumper = phone(app, providers, 120)
        assert pumper.sign_in(email="", phone="0970000099").status_code == 303  # online all the same
        page = pumper.get("/online", headers={"Accept-Language": "en"}).get_data(as_text=True)
        assert "cannot send more codes by SMS or Zalo" in page
        from portal.models import VerificationCode
        assert VerificationCode.select().count() == 3
        # Email is not billed: it still goes.
        mail = phone(app, providers, 121)
        mail.sign_in(email="cap@example.com")
        assert mail.wait_code("email", "cap@example.com")
    finally:
        database.close()


def test_every_reason_a_code_is_refused_is_said_in_both_languages():
    import pathlib
    from portal.i18n_catalogs import languages, texts
    source = "".join(pathlib.Path(p).read_text() for p in ("portal/verification.py", "portal/contacts.py", "portal/visitors.py", "portal/visitor_rights.py"))
    codes = set(re.findall(r'VerificationError\("([a-z_]+)"\)', source)) | {"limit_hour", "limit_day"}
    assert {"cooldown", "limit_store", "wrong", "malformed", "not_found", "channel_off"} <= codes
    for code in codes:
        for language in languages():
            assert texts(language).get(f"err_v_{code}"), (language, code)

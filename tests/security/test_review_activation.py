"""Adversarial review of issues 16 and 17 (activation): outgoing webhooks, the forgotten password,
name search and export files, attacked as a hostile guest, a curious manager or analyst, a hostile
CRM endpoint and a careless newcomer.

The tests named test_f* were findings: they failed on main at the time of the review and pass
with the fix on this branch. The others guard the attacks that held. Real parts: loopback HTTP
receivers (one a raw socket speaking broken HTTP), an aiosmtpd server, a real SQLite file per test.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
import socket
import threading

import pytest

from portal import exports, password_reset
from portal.core.audience import to_csv
from portal.models import Lead, LeadNameWord, Manager, ManagerSession, VerificationCode, utcnow
from portal.visitors import Client, SignInForm
from portal.webhooks import queue, wire
from tests.activation.test_webhooks import person_signs_in
from tests.conftest import prove_claims
from tests.panel.conftest import PASSWORD, PanelClient, accounts_by_role, as_role, cheap_hashing  # noqa: F401
from tests.panel.test_forgot_password import NEW, ask, code_of, reset, ticket_of, wait_mail  # noqa: F401
from tests.panel.test_leads_search import found, people  # noqa: F401


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, panel_require_2fa=False, webhook_allow_loopback=True, email_driver="smtp",
                               smtp_host="127.0.0.1", smtp_port=smtp_server[0], smtp_security="none",
                               smtp_from="panel@shop.test")


@pytest.fixture
def rt(app):
    return app.extensions["footfall"]


def fixed(*addresses):
    """A resolver that answers these addresses for any name (a DNS server the attacker controls)."""
    return lambda host, port: list(addresses)


class RawReceiver:
    """A loopback server answering every connection with `answer` bytes, whatever was asked."""

    def __init__(self, answer: bytes):
        self.answer, self.hits = answer, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


# =================================================================================================
# Webhooks: SSRF
# =================================================================================================

EMBEDDED = [
    "2002:7f00:1::1",          # 6to4 of 127.0.0.1
    "2002:a00:1::1",           # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",       # 6to4 of 169.254.169.254 (cloud metadata)
    "2002:c0a8:101::1",        # 6to4 of 192.168.1.1
]


@pytest.mark.parametrize("address", EMBEDDED)
def test_f1_an_ipv6_address_carrying_a_private_ipv4_is_refused(address):
    """FINDING: 6to4 addresses (2002::/16) are "global" to Python's ipaddress, yet a 6to4 relay
    delivers them to the IPv4 address inside: a receiver resolving to 2002:7f00:1:: reached the
    appliance's own loopback through any 6to4 route. The embedded IPv4 must be public too."""
    assert not wire.allowed_address(address)
    assert not wire.allowed_address(address, allow_loopback=True)
    with pytest.raises(wire.TargetRefused) as refused:
        wire.check_target("https://crm.example.com/hook", resolver=fixed(address))
    assert refused.value.code == "err_webhook_private"
    with pytest.raises(wire.TargetRefused):
        wire.check_target(f"https://[{address}]/hook")


@pytest.mark.parametrize("address", ["2002:5db8:d822::1", "2606:4700:4700::1111", "93.184.216.34"])
def test_a_public_address_and_a_6to4_of_a_public_ipv4_stay_allowed(address):
    assert wire.allowed_address(address)


@pytest.mark.parametrize("address", [
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::ffff:0:7f00:1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo of 127.0.0.1 (obfuscated client)
    "fe80::1", "fc00::1", "fd00:ec2::254", "::", "::1", "0.0.0.0", "100.64.0.1", "169.254.169.254", "255.255.255.255",
    "224.0.0.1", "240.0.0.1", "198.18.0.1", "192.0.0.170", "not an address"])
def test_every_other_non_public_form_is_refused(address):
    assert not wire.allowed_address(address)


@pytest.mark.parametrize("url", [
    "https://2130706433/x", "https://0x7f000001/x", "https://017700000001/x", "https://127.1/x", "https://0/x",
    "https://[::ffff:127.0.0.1]/x", "https://[0:0:0:0:0:0:0:1]:8443/x", "https://localhost./x",
    "https://LOCALHOST/x", "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x", "https://crm.example.com@127.0.0.1/x",
    "https://127.0.0.1:443\\@crm.example.com/x", "https://127.0.0.1%2f@crm.example.com/x",
    "https://[fe80::1%25lo]/x", "https://127.0.0.1#@crm.example.com/x", "https://crm.example.com:99999/x",
    "http://crm.example.com/x", "ftp://crm.example.com/x", "https://crm.example.com/\r\nX-Injected: 1",
    "//127.0.0.1/x", "https:///x"])
def test_disguised_local_targets_are_refused_with_the_real_resolver(url):
    """Decimal, hex and octal IPv4, mapped IPv6, trailing dots, fullwidth letters (IDNA folds them
    to "localhost"), userinfo tricks, zone ids, ports out of range, CRLF: refused before any byte."""
    with pytest.raises(wire.TargetRefused):
        wire.check_target(url)


@pytest.mark.parametrize("url", ["https://crm.example.com/\u202egnp.kooh", "https://crm.example.com/a\u200bb",
                                 "https://crm.example.com/\u2066x\u2069", "https://crm.example.com/\u00a0x"])
def test_f5_a_url_that_would_display_other_than_it_is_refused(url):
    """FINDING (low): a bidi override or a zero-width character in the path passed the check (the
    host resolved), so the panel and `central webhook list` showed the owner an endpoint reading
    other than it is (and http.client can never send a non-ASCII path: it failed at every attempt)."""
    with pytest.raises(wire.TargetRefused) as refused:
        wire.check_target(url, resolver=fixed("93.184.216.34"))
    assert refused.value.code == "err_webhook_url"


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(monkeypatch):
    """DNS rebinding: the name answers a public address to the check, then 127.0.0.1. The one
    answer checked is the one connected to; the receiver on loopback never hears a byte."""
    receiver = RawReceiver(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    answers = iter([["192.0.2.1"], ["127.0.0.1"], ["127.0.0.1"]])
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return next(answers)
    connected = []
    monkeypatch.setattr(wire.socket, "create_connection", lambda addr, *a, **k: connected.append(addr) or
                        (_ for _ in ()).throw(OSError("unreachable in the test")))
    try:
        outcome = wire.post(f"https://rebind.example:{receiver.port}/x", {}, b"{}", 0.5,
                            resolver=rebinding)
        assert not outcome.ok  # 192.0.2.1 is not public: refused before connecting
        assert outcome.error.startswith("refused target: err_webhook_private")
        answers = iter([["8.8.8.8"], ["127.0.0.1"]])
        outcome = wire.post(f"https://rebind.example:{receiver.port}/x", {}, b"{}", 0.5, resolver=rebinding)
        assert not outcome.ok and connected == [("8.8.8.8", receiver.port)]
        assert len(calls) == 2 and receiver.hits == 0
    finally:
        receiver.close()


def test_f6_a_name_server_that_never_answers_cannot_hold_the_scheduler():
    """FINDING (low): the name look-up ran before the exchange's deadline, with the system
    resolver's own timeouts (tries x servers): a receiver's name server that never answers held
    the webhooks job at every run. Now it gets the per-operation timeout and the message fails."""
    receiver = RawReceiver(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    released = threading.Event()

    def stalling(host, port):
        released.wait(10)  # a name server that answers only after ten seconds
        return ["127.0.0.1"]
    try:
        outcome = wire.post(f"http://localhost:{receiver.port}/x", {}, b"{}", 0.2, allow_loopback=True,
                            resolver=stalling)
        assert not outcome.ok and outcome.error.startswith("refused target: err_webhook_dns")
        assert receiver.hits == 0
    finally:
        released.set()
        receiver.close()


# =================================================================================================
# Webhooks: a hostile receiver's words in the panel and the operator's terminal
# =================================================================================================

HOSTILE = "\x1b]0;owned\x07\x1b[2J<script>alert(1)</script>\u202egnp.exe\r\nSet-Cookie: x=1"


def test_f2_a_receivers_answer_keeps_no_control_characters():
    """FINDING: the start of a receiver's error page (and its status line, through BadStatusLine)
    was kept verbatim as the dead letter's last error, and `footfall central webhook list` prints
    it to the operator's terminal: escape sequences (retitle, clear, OSC 52 to the clipboard) ran
    there. Kept now with '?' for every control or bidi character."""
    body = HOSTILE.encode()
    for answer in (b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
                   HOSTILE.encode() + b"\r\n\r\n"):
        receiver = RawReceiver(answer)
        try:
            outcome = wire.post(f"http://127.0.0.1:{receiver.port}/x", {}, b"{}", 1.0, allow_loopback=True)
        finally:
            receiver.close()
        assert not outcome.ok and receiver.hits == 1
        assert outcome.error and all(ch.isprintable() for ch in outcome.error), repr(outcome.error)
        assert "\x1b" not in outcome.error and "\u202e" not in outcome.error and "\n" not in outcome.error


def test_the_dead_letter_page_shows_a_hostile_error_inert(app, rt, as_role):  # noqa: F811
    created = queue.add_endpoint("http://127.0.0.1:9/hook", ["lead.created"], rt.vault, "test", allow_loopback=True)
    delivery = queue.WebhookDelivery.create(endpoint=created.endpoint, msg_id="msg_x", type="lead.created",
                                            subject="{}", happened_at=utcnow(), state=queue.DEAD, attempts=3,
                                            last_error="HTTP 500: <script>alert(1)</script><img src=x onerror=alert(2)>")
    owner = as_role("owner")
    page = owner.get("/panel/webhooks").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert created.secret not in page and "whsec_" not in page  # the secret was shown once, at creation
    # Sending again: owners only, with the CSRF token.
    assert owner.post(f"/panel/webhooks/dead/{delivery.id}/send").status_code == 400
    for role in ("manager", "analyst"):
        client = as_role(role)
        assert client.get("/panel/webhooks").status_code == 403
        assert client.form(f"/panel/webhooks/dead/{delivery.id}/send", {}).status_code == 403
        assert client.form("/panel/webhooks", {"url": "https://crm.example.com/h", "events": ["lead.created"]}).status_code == 403
    assert queue.WebhookDelivery.get_by_id(delivery.id).state == queue.DEAD
    assert queue.WebhookEndpoint.select().count() == 1


def test_f2_the_central_cli_prints_a_stored_dead_letter_without_control_characters(central_settings, central_app):
    """The same at the central store (real PostgreSQL), for a dead letter stored before the fix:
    `footfall central webhook list` prints it inert, on one line."""
    from central.db import database
    from tests.central.test_webhooks import cli
    assert cli(central_settings, "add", "http://127.0.0.1:9/hook", "--event", "lead.created").exit_code == 0
    with database.connection_context():
        database.execute_sql(
            "INSERT INTO webhook_delivery (endpoint_id, msg_id, type, subject, happened_at, created_at, next_at, state, "
            "attempts, last_error) SELECT id, 'msg_hostile', 'lead.created', '{}', now(), now(), now(), 'dead', 10, %s "
            "FROM webhook_endpoint", (HOSTILE,))
    result = cli(central_settings, "list")
    assert result.exit_code == 0, result.output
    dead = [line for line in result.output.splitlines() if line.startswith("# dead msg_hostile")]
    assert len(dead) == 1 and "\x1b" not in result.output and "\u202e" not in result.output
    assert "Set-Cookie" in dead[0]  # on the same line: the receiver's CRLF did not start a new one


# =================================================================================================
# Webhooks: consent scoping and signatures
# =================================================================================================

def test_a_contact_rides_only_with_the_consent_of_its_own_channel(app, rt, visitors):
    """Agreed to SMS, proved only an email: the CRM gets neither the email (no email consent) nor
    a phone (none proved), only the opaque id. Agreed to email, not proved yet: the id only."""
    key = b"k" * 32
    client = Client("10.0.0.9", "02:00:00:00:0a:01")
    outcome = visitors.sign_in(SignInForm(email="sms@example.com", phone="0912345678", terms=True, adult=True,
                                          marketing=frozenset({"marketing_sms"})), client)
    assert outcome.ok, outcome.errors
    prove_claims(visitors, outcome, client)
    Lead.update(phone_verified_at=None).where(Lead.uid == outcome.lead).execute()  # the phone's proof not (yet) given
    sms_only = Lead.get(Lead.uid == outcome.lead)
    assert sms_only.email_verified_at is not None
    ref = queue.person(sms_only.uid, rt.vault, key)
    assert set(ref) == {"id"} and ref["id"].startswith("p_") and sms_only.uid not in ref["id"]
    waiting = person_signs_in(visitors, "wait@example.com", "02:00:00:00:0a:02", marketing=("marketing_email",),
                              prove=False)
    assert set(queue.person(waiting.uid, rt.vault, key)) == {"id"}
    proved = person_signs_in(visitors, "yes@example.com", "02:00:00:00:0a:03", marketing=("marketing_email",))
    assert queue.person(proved.uid, rt.vault, key)["email"] == "yes@example.com"
    # Restricted by the privacy desk (an objection upheld): back to the id alone.
    Lead.update(restricted_at=utcnow()).where(Lead.id == proved.id).execute()
    assert set(queue.person(proved.uid, rt.vault, key)) == {"id"}


def test_a_signature_covers_id_time_and_body_and_a_replay_with_a_new_time_fails():
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    import time
    secret, body = wire.new_secret(), wire.body("lead.created", "2026-11-25T10:00:00Z", {"person": {"id": "p_1"}})
    now = int(time.time())
    headers = wire.headers(secret, "msg_1", now, body)
    assert Webhook(secret).verify(body, headers)["type"] == "lead.created"
    for changed in ({**headers, "webhook-timestamp": str(now + 1)}, {**headers, "webhook-id": "msg_2"},
                    {**headers, "webhook-timestamp": str(now - 3600),
                     "webhook-signature": wire.webhook_signature(secret, "msg_1", now - 3600, body)}):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, changed)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"p_1", b"p_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(wire.new_secret()).verify(body, headers)


# =================================================================================================
# Forgotten password
# =================================================================================================

@pytest.fixture
def manager_with_email(as_role, accounts_by_role):  # noqa: F811
    client = as_role("manager")
    answer = client.form("/panel/account", {"email": "m1@example.org", "password": PASSWORD}, token_page="/panel/account")
    assert answer.status_code == 302
    return client


def test_f3_a_reset_voids_every_other_code_of_the_account(app, manager_with_email, smtp_server):
    """FINDING: two codes were out for the account (asked an hour apart, both within ten minutes'
    validity is enough); the first reset left the other code good, so whoever saw the other email
    (a shared or forwarded mailbox) could set the password again right after its owner did."""
    client1, first = ask(app, "manager1")
    ticket1 = ticket_of(first.get_data(as_text=True))
    code1 = code_of(wait_mail(smtp_server[1], "m1@example.org", 1)[0])
    # Past the one-minute cooldown between codes to an address.
    for row in VerificationCode.select():
        VerificationCode.update(created_at=row.created_at - datetime.timedelta(minutes=2)).where(
            VerificationCode.id == row.id).execute()
    client2, second = ask(app, "m1@example.org")
    ticket2 = ticket_of(second.get_data(as_text=True))
    code2 = code_of(wait_mail(smtp_server[1], "m1@example.org", 2)[1])
    assert ticket1 != ticket2
    assert reset(client2, ticket2, code2).status_code == 302
    hash_after = Manager.get(Manager.username == "manager1").password_hash
    answer = reset(client1, ticket1, code1, password="the attackers own passphrase 1")
    assert answer.status_code == 422
    assert Manager.get(Manager.username == "manager1").password_hash == hash_after
    assert PanelClient(app.test_client()).login("manager1", NEW).status_code == 302


def test_every_forgot_answer_has_the_same_headers_and_cookies(app, manager_with_email, accounts_by_role):  # noqa: F811
    """Not just the page: the status, the header names and the cookies set are the same for a
    real account with an address, one without, a disabled one, an unknown name and an address."""
    Manager.update(disabled=True).where(Manager.username == "analyst1").execute()
    shapes = set()
    for who in ("manager1", "m1@example.org", "owner1", "analyst1", "nobody", "nobody@example.org"):
        _, answer = ask(app, who)
        cookies = sorted(c.split("=", 1)[0] for c in answer.headers.getlist("Set-Cookie"))
        shapes.add((answer.status_code, tuple(sorted(k for k, _ in answer.headers if k != "Content-Length")),
                    tuple(cookies), answer.headers.get("Cache-Control")))
    assert len(shapes) == 1, shapes


INJECTED = ["m1@example.org\r\nBcc: all@evil.test", "m1@example.org\nSubject: x", "m1@example.org>, <evil@evil.test",
            "\"a\r\nb\"@example.org", "m1@example.org%0d%0aBcc:evil@evil.test"]


def test_an_address_with_header_injection_is_refused_and_nothing_changes(app, manager_with_email):
    before = bytes(Manager.get(Manager.username == "manager1").email_enc)
    for address in INJECTED:
        answer = manager_with_email.form("/panel/account", {"email": address, "password": PASSWORD},
                                         token_page="/panel/account")
        assert answer.status_code == 422, address
        assert bytes(Manager.get(Manager.username == "manager1").email_enc) == before
        assert "Bcc:" not in answer.get_data(as_text=True)


def test_guessing_reset_codes_never_locks_the_account_nor_ends_its_sessions(app, manager_with_email, smtp_server):
    """Lockout abuse: a stranger asking for codes and spending wrong ones on the victim's ticket
    neither locks the account (its owner still signs in) nor ends its open sessions, nor touches
    the second factor; after five wrong tries the right code no longer works either."""
    client, answer = ask(app, "manager1")
    ticket = ticket_of(answer.get_data(as_text=True))
    code = code_of(wait_mail(smtp_server[1], "m1@example.org", 1)[0])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert reset(client, ticket, wrong, password="the attackers own passphrase 1").status_code == 422
    assert reset(client, ticket, code, password="the attackers own passphrase 1").status_code == 422  # out of tries
    manager = Manager.get(Manager.username == "manager1")
    assert manager.failed_logins == 0 and not password_reset.accounts.is_locked(manager)
    assert manager.totp_secret_enc is None or manager.totp_secret_enc == Manager.get_by_id(manager.id).totp_secret_enc
    assert manager_with_email.get("/panel/account").status_code == 200  # the open session lives on
    assert PanelClient(app.test_client()).login("manager1").status_code == 302


def test_a_reset_ends_every_session_of_the_account(app, manager_with_email, smtp_server):
    other_device = PanelClient(app.test_client(), ip="127.0.0.2")
    assert other_device.login("manager1").status_code == 302
    client, answer = ask(app, "manager1")
    code = code_of(wait_mail(smtp_server[1], "m1@example.org", 1)[0])
    assert reset(client, ticket_of(answer.get_data(as_text=True)), code).status_code == 302
    manager = Manager.get(Manager.username == "manager1")
    assert ManagerSession.select().where(ManagerSession.manager == manager.id).count() == 0
    for device in (manager_with_email, other_device):
        assert device.get("/panel/account").status_code in (302, 401)


def test_the_forgot_form_needs_its_csrf_token(app, manager_with_email, smtp_server):
    """A page elsewhere cannot make a visiting browser ask for codes (spending the victim's limits)."""
    answer = PanelClient(app.test_client()).post("/panel/login/forgot", data={"who": "manager1"})
    assert answer.status_code == 400
    assert VerificationCode.select().count() == 0


def test_the_reset_form_needs_its_token_and_reflects_no_script(app, manager_with_email, smtp_server):
    client, answer = ask(app, "manager1")
    ticket = ticket_of(answer.get_data(as_text=True))
    code = code_of(wait_mail(smtp_server[1], "m1@example.org", 1)[0])
    before = Manager.get(Manager.username == "manager1").password_hash
    refused = client.post("/panel/login/reset", data={"ticket": ticket, "code": code, "password": NEW, "password2": NEW})
    assert refused.status_code == 400
    hostile = reset(client, '"><script>alert(1)</script>', "123456")
    assert hostile.status_code == 422 and "<script>alert(1)" not in hostile.get_data(as_text=True)
    assert Manager.get(Manager.username == "manager1").password_hash == before
    assert reset(client, ticket, code).status_code == 302  # the code was not spent by the refused post


# =================================================================================================
# Name search
# =================================================================================================

def test_an_analyst_cannot_search_or_open_people(as_role, people):  # noqa: F811
    analyst = as_role("analyst")
    for query in ("dao", "Nguyễn Thị Đào", "dao@example.com", "+84912345678", ""):
        answer = analyst.get("/panel/leads", query_string={"q": query})
        assert answer.status_code == 403
        assert "Đào" not in answer.get_data(as_text=True) and "dao@example.com" not in answer.get_data(as_text=True)
    assert analyst.get(f"/panel/leads/{people['dao'].uid}").status_code == 403


HOSTILE_QUERIES = ["' OR 1=1 --", "dao' OR '1'='1", "%", "_", "*", "\x00dao", "d\u0000ao", "dao" + " x" * 500,
                   "<script>alert(1)</script>", "🙂", "王", "dao\r\nX: y", "1 OR 1=1", "++", "@", "dao OR 1=1"]


def test_hostile_queries_find_nothing_and_answer_calmly(as_role, people):  # noqa: F811
    """No SQL, no LIKE wildcard, no reflected script: a control character is refused (400) by the
    panel's input guard, anything else finds no one (every word must match a whole indexed word)."""
    manager = as_role("manager")
    for query in HOSTILE_QUERIES:
        answer = manager.get("/panel/leads", query_string={"q": query})
        assert answer.status_code in (200, 400), query
        assert "<script>alert(1)" not in answer.get_data(as_text=True) and "Đào" not in answer.get_data(as_text=True)
        if answer.status_code == 200:
            assert found(manager, query) == set(), query
        else:
            assert any(ord(ch) < 32 for ch in query), query


def test_punctuation_is_a_word_break_not_a_wildcard(as_role, people):  # noqa: F811
    manager = as_role("manager")
    assert found(manager, "dao%") == found(manager, "dao") == {people["dao"].uid}
    assert found(manager, "da%") == found(manager, "d_o") == set()


def test_erasure_and_a_changed_name_leave_no_words_behind(app, rt, people):  # noqa: F811
    from portal import name_index
    dao = people["dao"]
    assert LeadNameWord.select().where(LeadNameWord.lead == dao.id).count() == 3
    assert all(w.word not in ("nguyen", "thi", "dao") for w in LeadNameWord.select())
    Lead.update(name_enc=rt.vault.encrypt("Lê Hoa", "lead.name")).where(Lead.id == dao.id).execute()
    assert LeadNameWord.select().where(LeadNameWord.lead == dao.id).count() == 0  # the trigger
    name_index.index(dao.id, "Lê Hoa", rt.vault)
    Lead.update(name_enc=None, erased_at=utcnow()).where(Lead.id == dao.id).execute()
    assert LeadNameWord.select().where(LeadNameWord.lead == dao.id).count() == 0
    assert name_index.backfill(rt.vault) == {"indexed": 0}  # an erased person is not indexed again


# =================================================================================================
# Export files
# =================================================================================================

@pytest.mark.parametrize("name", ['a"\r\nSet-Cookie: x=1', "x\"; filename*=UTF-8''evil.exe", "..\\..\\boot.ini",
                                  "\u202egnp.csv", "Khách\u0000quen", "=HYPERLINK(\"http://x\")"])
def test_a_segment_name_makes_a_plain_ascii_file_name(name):
    file_name = exports.file_name(name, "csv", datetime.date(2026, 11, 25))
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*-csv-2026-11-25\.csv", file_name), file_name


def test_formula_cells_are_neutralised_after_the_bom():
    cells = ["=1+1", "+SUM(A1)", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=cmd|' /C calc'!A0"]
    text = "".join(exports.csv_text([["email", "phone", "name", "language"]] + [[c, "+84912345678", c, "vi"] for c in cells],
                                    "csv"))
    assert text.startswith("\ufeffemail,") and text.count("\ufeff") == 1
    import csv
    import io
    rows = list(csv.reader(io.StringIO(text[1:], newline="")))[1:]
    assert len(rows) == len(cells)
    for cell, row in zip(cells, rows):
        assert row[0] == row[2] == ("'" + cell if cell[0] != "\r" else "\n=1") and row[1] == "+84912345678"
    assert "\r" not in text  # a bare carriage return would start a new row in a spreadsheet


def test_f4_a_carriage_return_inside_a_cell_cannot_start_a_row():
    """FINDING (defence in depth: names and contacts are cleaned before they are stored today): the
    CSV writer quotes a cell holding "\n" (its line end) but wrote "\r" bare and unquoted; Excel and
    LibreOffice end the row there, so "Lan\r=cmd|' /C calc'!A0" became a second row whose first cell
    is a live formula, past the leading-quote neutralisation."""
    text = "".join(to_csv([["lan@example.com", "", "Lan\r=cmd|' /C calc'!A0", "vi"]]))
    assert "\r" not in text
    import csv
    import io
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["lan@example.com", "", "Lan\n=cmd|' /C calc'!A0", "vi"]]
    assert "".join(to_csv([["日本", "Nguyễn"]])).strip() == "日本,Nguyễn"

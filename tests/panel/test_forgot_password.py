"""A manager's email and a forgotten password reset by a code sent to it (issue 16), through a real
SMTP server (aiosmtpd): the code flow, a wrong code, a used code, the limits, the second factor
kept, and the same answer whether or not an account or an address exists. The owner can also set
a manager's password from the users page."""
import dataclasses
import datetime
import re
import time

import pytest

from portal import accounts, password_reset
from portal.models import AuditEntry, Manager, VerificationCode
from tests.panel.conftest import PASSWORD, PanelClient, totp_now

NEW = "a new long passphrase 2026"


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, email_driver="smtp", smtp_host="127.0.0.1", smtp_port=smtp_server[0],
                               smtp_security="none", smtp_from="panel@shop.test")


def wait_mail(inbox, to, count):
    deadline = time.monotonic() + 10
    while len([m for r, m in inbox.messages if to in r]) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    mails = [m for r, m in inbox.messages if to in r]
    assert len(mails) >= count, f"no email reached {to}"
    return mails


def code_of(mail):
    return re.search(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content()).group(1)


def ticket_of(page):
    return re.search(r'name="ticket" value="([^"]*)"', page).group(1)


def ask(app, who, lang="en"):
    client = PanelClient(app.test_client())
    answer = client.post("/panel/login/forgot", data={"csrf_token": client.token("/panel/login/forgot"), "who": who},
                         headers={"Accept-Language": lang})
    return client, answer


def reset(client, ticket, code, password=NEW, again=None):
    return client.post("/panel/login/reset", data={"csrf_token": client.token("/panel/login/forgot"), "ticket": ticket,
                                                   "code": code, "password": password, "password2": again or password})


@pytest.fixture
def with_email(as_role, accounts_by_role):
    client = as_role("manager")
    answer = client.form("/panel/account", {"email": "Manager.One@Example.org", "password": PASSWORD}, token_page="/panel/account")
    assert answer.status_code == 302
    return client


def test_adding_an_email_needs_the_current_password(as_role, accounts_by_role, app):
    client = as_role("manager")
    answer = client.form("/panel/account", {"email": "m@example.org", "password": "wrong password here"},
                         token_page="/panel/account")
    assert answer.status_code == 422 and "The current password is wrong." in answer.get_data(as_text=True)
    assert Manager.get(Manager.username == "manager1").email_enc is None
    bad = client.form("/panel/account", {"email": "<script>@x", "password": PASSWORD}, token_page="/panel/account")
    assert bad.status_code == 422 and "<script>" not in bad.get_data(as_text=True)
    ok = client.form("/panel/account", {"email": "m@example.org", "password": PASSWORD}, token_page="/panel/account")
    assert ok.status_code == 302
    manager = Manager.get(Manager.username == "manager1")
    assert password_reset.email_of(manager, app.extensions["footfall"].vault) == "m@example.org"
    assert b"m@example.org" not in bytes(manager.email_enc)  # encrypted at rest
    taken = as_role("analyst").form("/panel/account", {"email": "M@example.org", "password": PASSWORD},
                                    token_page="/panel/account")
    assert taken.status_code == 422 and "Another account uses this address." in taken.get_data(as_text=True)


def test_guessing_the_password_on_the_account_page_locks_the_account(as_role, accounts_by_role, app, settings):
    client = as_role("manager")
    for _ in range(settings.login_max_failures):
        answer = client.form("/panel/account", {"email": "m@example.org", "password": "not the password"},
                             token_page="/panel/account")
        assert answer.status_code == 422
    locked = client.form("/panel/account", {"email": "m@example.org", "password": PASSWORD}, token_page="/panel/account")
    assert locked.status_code == 422 and "locked" in locked.get_data(as_text=True)
    assert Manager.get(Manager.username == "manager1").email_enc is None
    assert PanelClient(app.test_client()).login("manager1").status_code == 401  # locked for signing in too


def test_the_login_page_links_to_forgot_password(panel):
    assert 'href="/panel/login/forgot"' in panel.get("/panel/login").get_data(as_text=True)


def test_a_code_by_email_resets_the_password_once(app, with_email, smtp_server):
    client, answer = ask(app, "manager1")
    assert answer.status_code == 200
    mail = wait_mail(smtp_server[1], "manager.one@example.org", 1)[0]
    assert mail["Subject"] == "Cà Phê Test panel: password reset code" and "manager1" in mail.get_body(("plain",)).get_content()
    ticket, code = ticket_of(answer.get_data(as_text=True)), code_of(mail)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    refused = reset(client, ticket, wrong)
    assert refused.status_code == 422 and "This code is wrong, used or expired." in refused.get_data(as_text=True)
    differ = reset(client, ticket, code, NEW, NEW + "x")
    assert differ.status_code == 422 and "The two passwords differ." in differ.get_data(as_text=True)
    short = reset(client, ticket, code, "short")
    assert short.status_code == 422 and "at least 12" in short.get_data(as_text=True)
    # The right code with a password the rules refuse keeps the code good.
    named = reset(client, ticket, code, "manager1 forever and ever")
    assert named.status_code == 422 and "must not contain the username" in named.get_data(as_text=True)
    done = reset(client, ticket, code)
    assert done.status_code == 302 and done.headers["Location"].endswith("/panel/login?reset=1")
    assert "Your password was changed." in client.get("/panel/login?reset=1").get_data(as_text=True)
    assert with_email.get("/panel/").status_code == 302  # every session of the account ended
    assert PanelClient(app.test_client()).login("manager1").status_code == 401  # the old password is gone
    assert PanelClient(app.test_client()).login("manager1", NEW).status_code == 302
    again = reset(client, ticket, code, "yet another passphrase 1")
    assert again.status_code == 422  # used
    assert accounts.hasher().verify(Manager.get(Manager.username == "manager1").password_hash, NEW)
    assert AuditEntry.select().where(AuditEntry.action == "password_reset_by_email").count() == 1


def test_the_email_is_found_by_address_too_and_speaks_vietnamese(app, with_email, smtp_server):
    _, answer = ask(app, "MANAGER.ONE@example.org", lang="vi")
    assert answer.status_code == 200
    mail = wait_mail(smtp_server[1], "manager.one@example.org", 1)[0]
    assert mail["Subject"] == "Bảng quản lý Cà Phê Test: mã đặt lại mật khẩu"
    assert "Mã là" in mail.get_body(("plain",)).get_content()


def _shape(page):
    """The page without its random parts (CSRF token, ticket)."""
    page = re.sub(r'name="csrf_token" value="[^"]*"', "", page)
    return re.sub(r'name="ticket" value="[^"]*"', "", page)


def test_no_answer_tells_whether_an_account_or_address_exists(app, with_email, smtp_server, accounts_by_role):
    pages = {}
    for who in ("manager1", "nobody", "ghost@example.org", "owner1", "not an @ address", "<script>alert(1)</script>"):
        _, answer = ask(app, who)
        assert answer.status_code == 200
        pages[who] = answer.get_data(as_text=True)
        assert "<script>alert" not in pages[who]
    assert len({_shape(p) for p in pages.values()}) == 1
    tickets = {who: ticket_of(p) for who, p in pages.items()}
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tickets.values()) and len(set(tickets.values())) == len(tickets)
    wait_mail(smtp_server[1], "manager.one@example.org", 1)
    assert VerificationCode.select().count() == 1  # owner1 has no address: nothing sent, nothing said
    assert len(smtp_server[1].messages) == 1
    # A made-up ticket fails exactly as a wrong code does.
    client = PanelClient(app.test_client())
    fake, real = reset(client, tickets["nobody"], "123456"), reset(client, tickets["manager1"], "000000")
    assert fake.status_code == real.status_code == 422
    assert _shape(fake.get_data(as_text=True)) .replace(tickets["nobody"], "") == \
        _shape(real.get_data(as_text=True)).replace(tickets["manager1"], "")


def test_codes_are_limited_per_address_silently(app, with_email, smtp_server):
    resets = password_reset.Resets(app.extensions["footfall"].vault, None, "Shop")
    tickets = []
    for n in range(7):
        tickets.append(resets.request("manager1", f"192.0.2.{n}", "en"))
        # Past the minute's cooldown, still within the hour.
        for row in VerificationCode.select():
            VerificationCode.update(created_at=row.created_at - datetime.timedelta(minutes=2)).where(
                VerificationCode.id == row.id).execute()
    assert VerificationCode.select().count() == 5  # five an hour per address
    assert AuditEntry.select().where(AuditEntry.action == "password_reset_limited").count() == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tickets)
    _, first = ask(app, "manager1")
    _, second = ask(app, "manager1")  # within the cooldown: the same answer, no email
    assert _shape(first.get_data(as_text=True)) == _shape(second.get_data(as_text=True))


def test_the_login_throttle_covers_the_reset_pages(app, with_email, settings):
    limit = settings.rate_limit_count
    client = PanelClient(app.test_client(), ip="127.0.0.77")
    token = client.token("/panel/login/forgot")
    statuses = [client.post("/panel/login/reset", data={"csrf_token": token, "ticket": "x", "code": "111111",
                                                        "password": NEW, "password2": NEW}).status_code
                for _ in range(limit + 1)]
    assert statuses[:limit] == [422] * limit and statuses[-1] == 429


def test_the_second_factor_is_never_reset_by_email(app, with_email, smtp_server, next_step):
    vault = app.extensions["footfall"].vault
    manager = Manager.get(Manager.username == "manager1")
    accounts.start_totp(manager, vault)
    accounts.confirm_totp(Manager.get_by_id(manager.id), vault, totp_now(manager, vault))
    before = Manager.get_by_id(manager.id)
    client, answer = ask(app, "manager1")
    code = code_of(wait_mail(smtp_server[1], "manager.one@example.org", 1)[0])
    assert reset(client, ticket_of(answer.get_data(as_text=True)), code).status_code == 302
    after = Manager.get_by_id(manager.id)
    assert (after.totp_secret_enc, after.totp_confirmed, after.recovery_codes) == \
        (before.totp_secret_enc, True, before.recovery_codes)
    signing_in = PanelClient(app.test_client())
    first = signing_in.login("manager1", NEW)
    assert first.status_code == 302 and first.headers["Location"].endswith("/panel/login/code")
    assert signing_in.get("/panel/leads").status_code == 302  # not in without the second factor


def test_the_owner_sets_a_managers_password(app, as_role, accounts_by_role):
    owner, manager = as_role("owner"), as_role("manager")
    target = accounts_by_role["manager"]
    assert as_role("analyst").form(f"/panel/users/{target.id}/password", {"password": NEW, "password2": NEW},
                                   token_page="/panel/account").status_code == 403
    bad = owner.form(f"/panel/users/{target.id}/password", {"password": "short", "password2": "short"},
                     token_page="/panel/users")
    assert bad.status_code == 422 and "at least 12" in bad.get_data(as_text=True)
    assert owner.form(f"/panel/users/{accounts_by_role['owner'].id}/password", {"password": NEW, "password2": NEW},
                      token_page="/panel/users").status_code == 400
    assert owner.form("/panel/users/999/password", {"password": NEW, "password2": NEW},
                      token_page="/panel/users").status_code == 404
    done = owner.form(f"/panel/users/{target.id}/password", {"password": NEW, "password2": NEW}, token_page="/panel/users")
    assert done.status_code == 302
    assert "New password set for manager1." in owner.get(done.headers["Location"]).get_data(as_text=True)
    assert manager.get("/panel/").status_code == 302  # the manager's sessions ended
    assert PanelClient(app.test_client()).login("manager1", NEW).status_code == 302


def test_wrong_codes_are_capped_per_account_per_day_even_across_codes(app, with_email, smtp_server):
    """Each code allows 5 tries and a few codes go out a day: without a cap per account, about 50
    guesses a day. After WRONG_TRIES_PER_DAY wrong tries in 24 hours, even the right code is refused
    (the same answer as a wrong one) until the day has passed."""
    manager = Manager.get(Manager.username == "manager1")
    client, answer = ask(app, "manager1")
    ticket, code = ticket_of(answer.get_data(as_text=True)), code_of(wait_mail(smtp_server[1], "manager.one@example.org", 1)[0])
    # Earlier today: two other codes of this account guessed to the end of their tries.
    for _ in range(password_reset.WRONG_TRIES_PER_DAY // 5):
        VerificationCode.create(channel="email", destination_index=manager.email_index, code_hash="x" * 64,
                                expires_at=datetime.datetime.utcnow(), tries=5, claim_uid=f"{password_reset.CODE_PREFIX}{manager.id}")
    refused = reset(client, ticket, code)
    assert refused.status_code == 422 and "This code is wrong, used or expired." in refused.get_data(as_text=True)
    [why] = [e.detail for e in AuditEntry.select().where(AuditEntry.action == "password_reset_code_refused")]
    assert '"daily_tries"' in why
    assert PanelClient(app.test_client()).login("manager1").status_code == 302  # the password is unchanged
    # A day later those tries no longer count: the same code (still unused, within its own tries) works.
    VerificationCode.update(created_at=datetime.datetime.utcnow() - datetime.timedelta(hours=25)).where(
        VerificationCode.uid != ticket).execute()
    assert reset(client, ticket, code).status_code == 302
    assert PanelClient(app.test_client()).login("manager1", NEW).status_code == 302

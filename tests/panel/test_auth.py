"""Signing in: passwords, lockout, CSRF, TOTP and recovery codes, idle timeout, cookies."""
import dataclasses
import datetime
import hashlib
import re

import pyotp
import pytest

from portal import accounts, create_app
from portal.db import database
from portal.models import AuditEntry, Manager, ManagerSession, utcnow
from tests.panel.conftest import PASSWORD, PanelClient, totp_now


def test_passwords_are_hashed_never_stored(app, accounts_by_role):
    stored = Manager.get(Manager.username == "owner1").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize("username,password,code", [
    ("ab", "long enough password", "username_invalid"), ("Bad Name", "long enough password", "username_invalid"),
    ("newuser", "short", "password_short"), ("newuser", "newuser-is-my-password", "password_has_username")])
def test_account_rules(app, username, password, code):
    with pytest.raises(accounts.AccountError) as exc:
        accounts.create_manager(username, password, "manager")
    assert exc.value.code == code


def test_login_success_and_failure_are_audited(panel, accounts_by_role):
    assert panel.login("owner1", "wrong password!").status_code == 401
    assert panel.login("nobody", "wrong password!").status_code == 401
    response = panel.login("owner1")
    assert response.status_code == 302 and response.headers["Location"].endswith("/panel/")
    actions = [e.action for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions.count("login_failed") == 2 and "login" in actions


def test_lockout_after_repeated_failures(panel, accounts_by_role):
    for _ in range(5):
        assert panel.login("manager1", "not the password").status_code == 401
    response = panel.login("manager1")  # the right password, but locked
    assert response.status_code == 401 and "locked" in response.get_data(as_text=True)
    assert AuditEntry.select().where(AuditEntry.action == "account_locked").exists()
    manager = Manager.get(Manager.username == "manager1")
    manager.locked_until = None
    manager.save()
    assert panel.login("manager1").status_code == 302


def test_login_throttled_per_address(app, accounts_by_role):
    app.extensions["footfall"].limiter.bucket("panel-login").limit = 3
    client = PanelClient(app.test_client())
    codes = [client.login("analyst1", "nope nope nope").status_code for _ in range(5)]
    assert codes[-1] == 429


def test_csrf_is_required_on_every_form(panel, as_role):
    assert panel.post("/panel/login", data={"username": "owner1", "password": PASSWORD}).status_code == 400
    owner = as_role("owner")
    for path in ("/panel/logout", "/panel/segments/recompute", "/panel/settings", "/panel/privacy/requests"):
        assert owner.post(path, data={"store_name": "x", "kind": "access"}).status_code == 400, path
    assert owner.get("/panel/").status_code == 200  # still signed in: the forged logout did nothing


def test_two_factor_enrolment_and_login(app, accounts_by_role, monkeypatch):
    rt = app.extensions["footfall"]
    app.extensions["footfall"] = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, panel_require_2fa=True))
    client = PanelClient(app.test_client())
    response = client.login("owner1")
    assert client.get("/panel/").headers["Location"].endswith("/panel/2fa")  # forced to enrol first
    page = client.get("/panel/2fa").get_data(as_text=True)
    assert "data:image/svg+xml" in page
    owner = Manager.get(Manager.username == "owner1")
    assert client.post("/panel/2fa", data={"csrf_token": client.token("/panel/2fa"), "code": "000000"}).status_code == 422
    response = client.post("/panel/2fa", data={"csrf_token": client.token("/panel/2fa"), "code": totp_now(owner, rt.vault)})
    codes = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", response.get_data(as_text=True))
    assert len(codes) == accounts.RECOVERY_CODES
    assert "data:image/svg" not in client.get("/panel/2fa").get_data(as_text=True)  # the secret is not shown again
    client.form("/panel/logout", {})
    import time as real_time
    monkeypatch.setattr(accounts, "time", type("Later", (), {"time": staticmethod(lambda: real_time.time() + 30)}))

    fresh = PanelClient(app.test_client())
    response = fresh.login("owner1")
    assert response.headers["Location"].endswith("/panel/login/code")
    assert fresh.get("/panel/").status_code == 302  # not signed in before the second factor
    assert fresh.post("/panel/login/code", data={"csrf_token": fresh.token("/panel/login/code"), "code": "123456"}).status_code == 401
    assert fresh.post("/panel/login/code", data={"csrf_token": fresh.token("/panel/login/code"),
                                                 "code": totp_now(owner, rt.vault, shift=30)}).status_code == 302
    assert fresh.get("/panel/").status_code == 200

    spare = PanelClient(app.test_client())
    spare.login("owner1")
    ok = spare.post("/panel/login/code", data={"csrf_token": spare.token("/panel/login/code"), "code": codes[0]})
    assert ok.status_code == 302
    again = PanelClient(app.test_client())
    again.login("owner1")
    reused = again.post("/panel/login/code", data={"csrf_token": again.token("/panel/login/code"), "code": codes[0]})
    assert reused.status_code == 401  # a recovery code works once


def test_second_factor_failures_lock_the_account(app, accounts_by_role):
    rt = app.extensions["footfall"]
    manager = Manager.get(Manager.username == "manager1")
    accounts.start_totp(manager, rt.vault)
    accounts.confirm_totp(manager, rt.vault, totp_now(manager, rt.vault))
    client = PanelClient(app.test_client())
    client.login("manager1")
    for _ in range(5):
        client.post("/panel/login/code", data={"csrf_token": client.token("/panel/login/code"), "code": "000000"})
    right = client.post("/panel/login/code", data={"csrf_token": client.token("/panel/login/code"),
                                                   "code": totp_now(manager, rt.vault)})
    assert right.status_code == 401 and "locked" in right.get_data(as_text=True)


def test_idle_timeout(app, as_role):
    client = as_role("manager")
    ManagerSession.update(last_seen_at=utcnow() - datetime.timedelta(minutes=31)).execute()
    response = client.get("/panel/")
    assert response.status_code == 302 and "expired=1" in response.headers["Location"]
    assert client.get("/panel/").status_code == 302  # signed out
    assert ManagerSession.select().count() == 0
    assert AuditEntry.select().where(AuditEntry.action == "session_expired").exists()


def test_a_session_in_use_stays_open(app, as_role):
    client = as_role("manager")
    ManagerSession.update(last_seen_at=utcnow() - datetime.timedelta(minutes=29)).execute()
    assert client.get("/panel/").status_code == 200
    seen = ManagerSession.get().last_seen_at
    assert utcnow() - seen < datetime.timedelta(seconds=5)  # noted: the idle clock starts again


def test_session_cookie_flags(panel, accounts_by_role):
    response = panel.login("owner1")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("ff_panel="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/panel" in cookie
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    row = ManagerSession.get()
    assert token not in row.token_hash and row.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_secure_cookie_under_tls(tmp_path):
    from portal.config import load_settings
    app = create_app(load_settings(environ={}, data_dir=str(tmp_path / "d"), portal_url="https://portal.example"))
    try:
        assert app.config["SESSION_COOKIE_SECURE"] is True
    finally:
        database.close()


def test_totp_codes_are_standard(app, accounts_by_role):
    """An authenticator app (RFC 6238, 30 s, 6 digits, SHA-1) computes the same codes."""
    rt = app.extensions["footfall"]
    manager = Manager.get(Manager.username == "analyst1")
    secret = accounts.start_totp(manager, rt.vault)
    uri = accounts.totp_uri(manager, rt.vault, "Shop")
    assert uri.startswith("otpauth://totp/Shop:analyst1?secret=") and secret in uri
    assert pyotp.TOTP(secret).now() == pyotp.parse_uri(uri).now()


def test_cli_manager_commands(tmp_path):
    from click.testing import CliRunner

    from portal.cli import main
    env = {"FOOTFALL_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["manager", "add", "boss", "--role", "owner", "--password-stdin"],
                                input="a long enough secret\n", env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["manager", "add", "boss", "--role", "owner", "--password-stdin"],
                                input="another long secret\n", env=env)
    assert result.exit_code != 0 and "taken" in result.output
    result = CliRunner().invoke(main, ["manager", "reset-password", "boss", "--reset-2fa", "--password-stdin"],
                                input="short\n", env=env)
    assert result.exit_code != 0 and "12 characters" in result.output
    result = CliRunner().invoke(main, ["manager", "reset-password", "boss", "--reset-2fa", "--password-stdin"],
                                input="a brand new long secret\n", env=env)
    assert result.exit_code == 0 and "two-factor removed" in result.output
    database.close()


def test_a_totp_code_works_only_once(app, accounts_by_role, next_step):
    rt = app.extensions["footfall"]
    manager = Manager.get(Manager.username == "owner1")
    accounts.start_totp(manager, rt.vault)
    accounts.confirm_totp(manager, rt.vault, totp_now(manager, rt.vault, shift=30))
    spent = totp_now(manager, rt.vault, shift=30)
    manager = Manager.get_by_id(manager.id)
    assert not accounts.verify_second_factor(manager, rt.vault, spent)  # spent at enrolment
    code = totp_now(manager, rt.vault, shift=60)
    client = PanelClient(app.test_client())
    client.login("owner1")
    assert client.post("/panel/login/code", data={"csrf_token": client.token("/panel/login/code"), "code": code}).status_code == 302
    replay = PanelClient(app.test_client())
    replay.login("owner1")
    assert replay.post("/panel/login/code", data={"csrf_token": replay.token("/panel/login/code"), "code": code}).status_code == 401


def test_a_clock_behind_the_last_good_time_is_named_not_a_wrong_code(app, accounts_by_role, settings):
    """A Pi booted without NTP lives in the past: its owner's right codes fail. Say why (issue 10)."""
    import datetime
    import json
    from pathlib import Path

    from portal.i18n import translate
    rt = app.extensions["footfall"]
    manager = Manager.get(Manager.username == "owner1")
    accounts.start_totp(manager, rt.vault)
    accounts.confirm_totp(manager, rt.vault, totp_now(manager, rt.vault))
    client = PanelClient(app.test_client())
    client.login("owner1")
    wrong = client.post("/panel/login/code", data={"csrf_token": client.token("/panel/login/code"), "code": "000000"})
    assert wrong.status_code == 401 and translate("err_code_invalid", "en") in wrong.get_data(as_text=True)
    tomorrow = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(days=1)
    (Path(settings.data_dir) / "clock.json").write_text(json.dumps({"last_good": tomorrow.isoformat()}))
    again = client.post("/panel/login/code", data={"csrf_token": client.token("/panel/login/code"), "code": "000001"})
    assert again.status_code == 401
    assert "clock is not set yet" in again.get_data(as_text=True)

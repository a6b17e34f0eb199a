"""Issue 12, item 4: a panel cookie saved earlier opens nothing once its sessions have ended.

Each test signs in through a real server, saves the cookies a browser holds, ends the sessions
the way a manager or the owner would, then replays the saved cookies at /panel/audit.
"""
from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from portal import accounts
from portal.cli import main
from portal.models import AuditEntry, Manager, ManagerSession
from tests.panel.live import Browser, serve

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, panel_require_2fa=False)


@pytest.fixture
def owner(app):
    return accounts.create_manager("owner1", PASSWORD, "owner")


def _signed_in(port: int, username: str = "owner1") -> Browser:
    browser = Browser(port)
    status, headers, _ = browser.login(username, PASSWORD)
    assert status == 302 and headers["Location"].endswith("/panel/")
    assert browser.request("GET", "/panel/audit")[0] == 200
    return browser


def _opens_audit(port: int, saved: dict[str, str]) -> bool:
    status, headers, _ = Browser(port, saved).request("GET", "/panel/audit")
    assert status in (200, 302), status
    return status == 200


def test_a_cookie_saved_before_sign_out_no_longer_opens_the_audit_log(app, owner):
    with serve(app) as port:
        browser = _signed_in(port)
        saved = dict(browser.cookies)
        other_device = _signed_in(port)
        status, headers, _ = browser.post("/panel/logout", {}, token_page="/panel/")
        assert status == 302 and headers["Location"].endswith("/panel/login")
        assert not _opens_audit(port, saved)
        assert not _opens_audit(port, other_device.cookies)  # sign-out ends every session of the account
    assert ManagerSession.select().count() == 0


@pytest.mark.parametrize("reset_2fa", [False, True], ids=["password change", "2FA reset"])
def test_a_password_change_or_2fa_reset_ends_every_session(app, owner, settings, reset_2fa):
    with serve(app) as port:
        saved = [dict(_signed_in(port).cookies) for _ in range(2)]
        # The way an owner does it: `footfall manager reset-password`, in another process's shoes.
        args = ["manager", "reset-password", "owner1", "--password-stdin"] + (["--reset-2fa"] if reset_2fa else [])
        result = CliRunner().invoke(main, args, input="a brand new long secret\n",
                                    env={"FOOTFALL_DATA_DIR": settings.data_dir})
        assert result.exit_code == 0, result.output
        assert not any(_opens_audit(port, cookies) for cookies in saved)
        fresh = Browser(port)
        assert fresh.login("owner1", "a brand new long secret")[0] == 302
        assert fresh.request("GET", "/panel/audit")[0] == 200


def test_disabling_an_account_ends_its_sessions(app, owner):
    accounts.create_manager("staff1", PASSWORD, "manager")
    with serve(app) as port:
        staff = _signed_in_as_manager(port)
        saved = dict(staff.cookies)
        boss = _signed_in(port)
        staff_id = Manager.get(Manager.username == "staff1").id
        status, _, _ = boss.post(f"/panel/users/{staff_id}/access", {"disabled": "yes"}, token_page="/panel/users")
        assert status == 302
        assert Browser(port, saved).request("GET", "/panel/")[0] == 302
        boss.post(f"/panel/users/{staff_id}/access", {"disabled": "no"}, token_page="/panel/users")
        assert Browser(port, saved).request("GET", "/panel/")[0] == 302  # enabling again revives nothing
    assert AuditEntry.get(AuditEntry.action == "account_disabled").detail == '{"sessions_ended": 1}'


def _signed_in_as_manager(port: int) -> Browser:
    browser = Browser(port)
    assert browser.login("staff1", PASSWORD)[0] == 302
    assert browser.request("GET", "/panel/")[0] == 200
    return browser


def test_the_cookies_carry_no_identity(app, owner):
    """The panel cookie is a bare random token; Flask's signed cookie holds no manager id."""
    with serve(app) as port:
        browser = _signed_in(port)
    token = browser.cookies["ff_panel"]
    assert len(token) == 43 and owner.username not in token
    flask_session = app.session_interface.get_signing_serializer(app).loads(browser.cookies["ff_session"])
    assert set(flask_session) <= {"csrf_token"}, flask_session


def test_an_old_style_signed_cookie_naming_a_manager_opens_nothing(app, owner):
    """Before, Flask's signed cookie named the manager (_user_id): such a cookie, saved from the old
    version or made with the key, must not open a session now."""
    client = app.test_client()
    env = {"REMOTE_ADDR": "127.0.0.1"}
    with client.session_transaction(headers={"Host": "portal.test:8080"}, environ_base=env) as session:
        session.update({"_user_id": str(owner.id), "_fresh": True, "panel_seen": 9e9})
    response = client.get("/panel/audit", headers={"Host": "portal.test:8080"}, environ_base=env)
    assert response.status_code == 302 and "/panel/login" in response.headers["Location"]


@pytest.mark.parametrize("token", ["", "x" * 43, "a" * 500, "../../etc", "é" * 43])
def test_made_up_panel_cookies_open_nothing(app, owner, token):
    client = app.test_client()
    client.set_cookie("ff_panel", token, domain="portal.test", path="/panel")
    response = client.get("/panel/audit", headers={"Host": "portal.test:8080"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 302 and "/panel/login" in response.headers["Location"]

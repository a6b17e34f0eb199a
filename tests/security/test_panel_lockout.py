"""Issue 12, item 3: failure counters and one-time codes hold against parallel requests.

Real threads against the app behind a real HTTP server, on the app's real SQLite file.
"""
from __future__ import annotations

import json
import time

import pyotp
import pytest

from portal import accounts
from portal.models import AuditEntry, Manager, ManagerSession, utcnow
from tests.panel.live import Browser, in_parallel, serve

PASSWORD = "correct horse battery staple"
WRONG = "not the password at all"
BURST = 8


def _enrol(username: str, vault) -> str:
    """An account with TOTP active (and no step used yet); returns its secret."""
    manager = accounts.create_manager(username, PASSWORD, "owner")
    secret = accounts.start_totp(manager, vault)
    Manager.update(totp_confirmed=True).where(Manager.id == manager.id).execute()
    return secret


def _outcome(username: str, answers: list[tuple[int, dict, str]]) -> dict:
    """What a burst left behind: the answers (by kind) and the account's state and audit trail."""
    manager = Manager.get(Manager.username == username)
    audit = [e.action for e in AuditEntry.select().where(AuditEntry.subject == username)]
    return {"answers": sorted((status, "locked" if "locked" in page else "invalid") for status, _, page in answers),
            "locked": manager.locked_until is not None and manager.locked_until > utcnow(),
            "failed_logins": manager.failed_logins,
            "audit": {action: audit.count(action) for action in sorted(set(audit)) if action != "manager_created"}}


def test_a_parallel_burst_of_wrong_passwords_locks_exactly_as_the_same_in_a_row(app):
    accounts.create_manager("serial", PASSWORD, "owner")
    accounts.create_manager("burst", PASSWORD, "owner")
    with serve(app) as port:
        in_a_row = [Browser(port).login("serial", WRONG) for _ in range(BURST)]
        browsers = [Browser(port) for _ in range(BURST)]
        burst = in_parallel([b.ready("/panel/login", {"username": "burst", "password": WRONG}) for b in browsers])
        expected = _outcome("serial", in_a_row)
        assert expected["locked"] and expected["answers"].count((401, "locked")) == BURST - 5
        assert _outcome("burst", burst) == expected
        right = Browser(port).login("burst", PASSWORD)
    assert right[0] == 401 and "locked" in right[2]  # the right password, on a locked account


def test_password_then_four_wrong_codes_repeated_locks(app):
    """A right password never resets the second-factor failures: this used to guess codes forever."""
    vault = app.extensions["footfall"].vault
    secret = _enrol("owner2", vault)
    with serve(app) as port:
        answers = []
        for _ in range(2):
            browser = Browser(port)
            assert browser.login("owner2", PASSWORD)[0] == 302
            for _ in range(4):
                answers.append(browser.post("/panel/login/code", {"code": "000000"}))
                if Manager.get(Manager.username == "owner2").locked_until:
                    break
        manager = Manager.get(Manager.username == "owner2")
        assert manager.locked_until is not None and manager.locked_until > utcnow()
        assert len(answers) == 5  # locked at the fifth wrong code, in the second round
        assert AuditEntry.select().where(AuditEntry.action == "account_locked").count() == 1
        right_code = browser.post("/panel/login/code", {"code": pyotp.TOTP(secret).now()})
        assert right_code[0] == 401 and "locked" in right_code[2]
        again = Browser(port).login("owner2", PASSWORD)
        assert again[0] == 401 and "locked" in again[2]
    assert ManagerSession.select().where(ManagerSession.stage == "full").count() == 0


def _six_at_the_code_page(port: int, username: str) -> list[Browser]:
    browsers = [Browser(port) for _ in range(6)]
    for browser in browsers:
        status, headers, _ = browser.login(username, PASSWORD)
        assert status == 302 and headers["Location"].endswith("/panel/login/code")
    return browsers


def _signed_in(answers: list[tuple[int, dict, str]]) -> int:
    return sum(1 for status, headers, _ in answers if status == 302 and headers["Location"].endswith("/panel/"))


def test_one_totp_code_sent_by_six_sessions_signs_in_exactly_one(app):
    secret = _enrol("owner3", app.extensions["footfall"].vault)
    with serve(app) as port:
        browsers = _six_at_the_code_page(port, "owner3")
        code = pyotp.TOTP(secret).now()
        answers = in_parallel([b.ready("/panel/login/code", {"code": code}) for b in browsers])
        assert _signed_in(answers) == 1
        assert sorted(status for status, _, _ in answers) == [302] + [401] * 5
        opened = [b for b in browsers if b.request("GET", "/panel/audit")[0] == 200]
    assert len(opened) == 1
    assert ManagerSession.select().where(ManagerSession.stage == "full").count() == 1


def test_one_recovery_code_sent_by_six_sessions_signs_in_exactly_one(app):
    vault = app.extensions["footfall"].vault
    manager = accounts.create_manager("owner4", PASSWORD, "owner")
    accounts.start_totp(manager, vault)
    step = int(time.time()) // 30
    codes = accounts.confirm_totp(Manager.get_by_id(manager.id), vault, pyotp.TOTP(
        vault.decrypt(Manager.get_by_id(manager.id).totp_secret_enc, "manager.totp")).at(step * 30))
    with serve(app) as port:
        browsers = _six_at_the_code_page(port, "owner4")
        answers = in_parallel([b.ready("/panel/login/code", {"code": codes[0]}) for b in browsers])
    assert _signed_in(answers) == 1
    left = json.loads(Manager.get_by_id(manager.id).recovery_codes)
    assert len(left) == len(codes) - 1
    assert AuditEntry.select().where(AuditEntry.action == "recovery_code_used").count() == 1


def test_two_recovery_codes_spent_at_once_both_count_once(app):
    """The compare-and-set retries when another code was spent meanwhile: neither is lost or kept."""
    vault = app.extensions["footfall"].vault
    manager = accounts.create_manager("owner5", PASSWORD, "owner")
    secret = accounts.start_totp(manager, vault)
    codes = accounts.confirm_totp(Manager.get_by_id(manager.id), vault, pyotp.TOTP(secret).now())
    fresh = Manager.get_by_id(manager.id)
    results = in_parallel([lambda c=c: accounts.verify_second_factor(fresh, vault, c) for c in codes[:2]])
    assert results == [True, True]
    assert len(json.loads(Manager.get_by_id(manager.id).recovery_codes)) == len(codes) - 2
    assert not accounts.verify_second_factor(Manager.get_by_id(manager.id), vault, codes[0])


@pytest.mark.parametrize("code", ["²²²²²²", "１２３４５６", " 000000 x", "0" * 32])
def test_codes_that_are_not_ascii_digits_are_plain_failures(app, code):
    vault = app.extensions["footfall"].vault
    _enrol("owner6", vault)
    with serve(app) as port:
        browser = Browser(port)
        browser.login("owner6", PASSWORD)
        status, _, page = browser.post("/panel/login/code", {"code": code})
    assert status == 401 and "Traceback" not in page
    assert Manager.get(Manager.username == "owner6").second_factor_failures == 1

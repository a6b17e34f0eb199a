"""Panel fixtures: accounts of each role, and a client that signs in as one of them."""
import re

import pyotp
import pytest

from portal import accounts, passwords
from portal.models import Manager

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """The same algorithm (argon2id) with small costs, so that a hundred logins take seconds;
    test_auth checks the production parameters separately."""
    from argon2 import PasswordHasher
    monkeypatch.setattr(passwords, "HASHER", passwords.BoundedHasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))


@pytest.fixture
def settings(settings):
    """The shared settings, with two-factor optional (the tests that need it turn it on)."""
    import dataclasses
    return dataclasses.replace(settings, panel_require_2fa=False)


@pytest.fixture
def accounts_by_role(app):
    return {role: accounts.create_manager(f"{role}1", PASSWORD, role) for role in accounts.ROLES}


class PanelClient:
    def __init__(self, client, ip="127.0.0.1"):
        self.client, self.ip = client, ip

    def _kw(self, kw):
        return {"headers": {"Host": "portal.test:8080", "Accept-Language": "en", **kw.pop("headers", {})},
                "environ_base": {"REMOTE_ADDR": self.ip}, **kw}

    def get(self, path, **kw):
        return self.client.get(path, **self._kw(kw))

    def post(self, path, **kw):
        return self.client.post(path, **self._kw(kw))

    def token(self, path="/panel/login"):
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path).get_data(as_text=True))
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, username, password=PASSWORD, code=None):
        response = self.post("/panel/login", data={"csrf_token": self.token(), "username": username, "password": password})
        if code is not None and response.status_code == 302 and response.headers["Location"].endswith("/panel/login/code"):
            response = self.post("/panel/login/code", data={"csrf_token": self.token("/panel/login/code"), "code": code})
        return response

    def form(self, path, data, token_page="/panel/"):
        return self.post(path, data={"csrf_token": self.token(token_page), **data})


@pytest.fixture
def panel(app):
    return PanelClient(app.test_client())


@pytest.fixture
def as_role(app, accounts_by_role):
    def make(role):
        client = PanelClient(app.test_client())
        assert client.login(f"{role}1").status_code == 302
        return client
    return make


def totp_now(manager: Manager, vault, shift: int = 0) -> str:
    """The code an authenticator shows `shift` seconds from now."""
    import time
    return pyotp.TOTP(vault.decrypt(Manager.get_by_id(manager.id).totp_secret_enc, "manager.totp")).at(time.time() + shift)


@pytest.fixture
def next_step(monkeypatch):
    """Move the server's clock one TOTP step (30 s) ahead: a new code, without waiting for it."""
    import time as real_time

    class Later:
        @staticmethod
        def time():
            return real_time.time() + 30
    monkeypatch.setattr(accounts, "time", Later)

"""Issue 13, item 9: password hashing sized for a Raspberry Pi Zero 2 W (512 MB for everything).

These check the app's own hasher object, the hashes it stores, the rehash of old hashes at login,
and that parallel logins never run more than AT_ONCE hashes together. Figures (time, memory) are
in tests/perf/bench_login.py, never here.
"""
from __future__ import annotations

import dataclasses
import threading

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from portal import accounts, passwords
from portal.models import Manager
from tests.panel.live import Browser, in_parallel, serve

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, panel_require_2fa=False)


def test_the_apps_hasher_is_argon2id_at_19_mib_two_passes_one_lane():
    hasher = accounts.hasher()
    assert hasher is passwords.HASHER and isinstance(hasher, passwords.BoundedHasher)
    inner = hasher.hasher
    assert (inner.type, inner.memory_cost, inner.time_cost, inner.parallelism) == (Type.ID, 19 * 1024, 2, 1)
    assert hasher.at_once == 2


def test_stored_hashes_carry_those_parameters(app):
    manager = accounts.create_manager("owner1", PASSWORD, "owner")
    stored = Manager.get_by_id(manager.id).password_hash
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and PASSWORD not in stored
    assert extract_parameters(stored) == extract_parameters(passwords.HASHER.dummy)


def test_an_old_hash_still_verifies_and_is_rehashed_at_login(app):
    old = PasswordHasher()  # argon2-cffi's defaults, what earlier versions stored: 64 MiB, t=3, p=4
    manager = accounts.create_manager("owner1", PASSWORD, "owner")
    Manager.update(password_hash=old.hash(PASSWORD)).where(Manager.id == manager.id).execute()
    assert Manager.get_by_id(manager.id).password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    with serve(app) as port:
        assert Browser(port).login("owner1", "a wrong password!")[0] == 401
        assert Manager.get_by_id(manager.id).password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert Browser(port).login("owner1", PASSWORD)[0] == 302
        rehashed = Manager.get_by_id(manager.id).password_hash
        assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert Browser(port).login("owner1", PASSWORD)[0] == 302  # and the new hash verifies


class CountingHasher(PasswordHasher):
    """The production parameters, counting how many hashes run at the same moment."""

    def __init__(self) -> None:
        inner = passwords.HASHER.hasher
        super().__init__(time_cost=inner.time_cost, memory_cost=inner.memory_cost, parallelism=inner.parallelism,
                         hash_len=inner.hash_len, salt_len=inner.salt_len, type=inner.type)
        self.lock = threading.Lock()
        self.running = self.peak = 0

    def _track(self, call, *args):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return call(*args)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password, *, salt=None):
        return self._track(super().hash, password)

    def verify(self, hashed, password):
        return self._track(super().verify, hashed, password)


def test_many_logins_at_once_run_at_most_two_hashes_together(app, monkeypatch):
    for i in range(8):
        accounts.create_manager(f"staff{i}", PASSWORD, "manager")
    counting = CountingHasher()
    # Unbounded, eight threads do run eight hashes together: the count below can see a missing bound.
    in_parallel([lambda: counting.hash(PASSWORD) for _ in range(8)])
    assert counting.peak > 2
    counting.peak = 0
    monkeypatch.setattr(passwords.HASHER, "hasher", counting)  # inside the app's own bounded hasher
    with serve(app) as port:
        browsers = [Browser(port) for _ in range(8)]
        logins = [b.ready("/panel/login", {"username": f"staff{i}", "password": PASSWORD}) for i, b in enumerate(browsers)]
        answers = in_parallel(logins)
    assert [status for status, _, _ in answers] == [302] * 8
    assert counting.peak == 2

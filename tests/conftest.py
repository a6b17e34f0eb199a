"""Shared fixtures: a fresh data directory (real SQLite file, real key file) per test."""
from __future__ import annotations

import os
import re
from pathlib import Path
import shutil

import pytest

from portal import create_app
from portal.config import load_settings
from portal.db import database, init_db
from portal.gateway.null import NullGateway

PORTAL_HOST = "portal.test:8080"
# The central store's PostgreSQL fixtures (a server for the session, a schema per test).
pytest_plugins = ("tests.central.fixtures",)


def require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail under CI, which installs it."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)


def have(executable: str) -> bool:
    return shutil.which(executable) is not None


# The files that take longest (each over 10 s, most of it waiting on namespaces, subprocesses and
# a browser), run first: on `make test`'s two workers (`--dist loadfile`) they then overlap with
# the many short files instead of leaving one worker alone at the end.
LONGEST_FIRST = ("tests/e2e/test_field_day.py", "tests/soak/test_soak.py", "tests/e2e/test_dhcp_burst.py",
                 "tests/e2e/test_collector_live.py", "tests/e2e/test_nftables_gateway.py",
                 "tests/security/test_guest_isolation.py", "tests/e2e/test_opennds_gateway.py",
                 "tests/central/test_sync_e2e.py", "tests/e2e/test_panel_pages_browser.py",
                 "tests/faults/test_watchdog.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    root = Path(str(config.rootpath))
    items.sort(key=lambda item: rank.get(Path(str(item.path)).relative_to(root).as_posix(), len(rank)))  # stable


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, data_dir=str(tmp_path / "data"), portal_url=f"http://{PORTAL_HOST}",
                         store_name="Cà Phê Test", rate_limit_count=50)


@pytest.fixture
def gateway():
    return NullGateway()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on loopback, for the message layer's email: (port, inbox)."""
    from aiosmtpd.controller import Controller
    from tests.messages.providers import Inbox, free_port
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """A database file with every migration applied, made once per run: each test's app starts
    from a copy instead of running the migrations again (a third of a second per test).
    tests/portal/test_db.py still migrates fresh and old files itself."""
    from portal.db import init_db
    path = tmp_path_factory.mktemp("template") / "footfall.db"
    init_db(path)
    database.close()
    return path


@pytest.fixture
def machine_zone():
    """Set the machine's time zone for this test: TZ, libc's (tzset) and tzlocal's cached zone (which
    APScheduler's cron triggers read), all put back after. Without tzlocal's, a zone set here stayed
    cached for every later test of the process (an order-dependent failure under `make test`'s workers)."""
    import time

    import tzlocal
    with pytest.MonkeyPatch.context() as patch:
        def set_zone(name: str) -> None:
            patch.setenv("TZ", name)
            time.tzset()
            tzlocal.reload_localzone()
        yield set_zone
    time.tzset()
    tzlocal.reload_localzone()


@pytest.fixture
def domain_db(migrated_template, tmp_path):
    """A migrated SQLite file of the test's own, open, with no app: for domain functions."""
    target = tmp_path / "footfall.db"
    shutil.copyfile(migrated_template, target)
    init_db(target, migrate=False)
    with database.connection_context():
        yield target
    database.close()


@pytest.fixture
def app(settings, gateway, migrated_template):
    import shutil
    from portal.config import database_path
    target = Path(database_path(settings))
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(migrated_template, target)
    app = create_app(settings, gateway=gateway)
    app.config["TESTING"] = True
    yield app
    database.close()


class PortalClient:
    """The test client, speaking to the portal's own host unless told otherwise."""

    def __init__(self, client, ip: str = "10.0.0.10"):
        self.raw = client
        self.ip = ip

    def _kw(self, kw):
        headers = {"Host": PORTAL_HOST, "User-Agent": "pytest", **kw.pop("headers", {})}
        environ = {"REMOTE_ADDR": self.ip, **kw.pop("environ_base", {})}
        return {"headers": headers, "environ_base": environ, **kw}

    def get(self, path, **kw):
        return self.raw.get(path, **self._kw(kw))

    def post(self, path, **kw):
        return self.raw.post(path, **self._kw(kw))

    def token(self, path: str = "/?form=1") -> str:
        page = self.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        assert match, "page carries no CSRF token"
        return match.group(1)

    def sign_in(self, email="visitor@example.com", phone="", name="", terms=True, marketing=(), analytics=(),
                age=True, **extra):
        """The splash form; `age`: the "I am min_age or older" box (needed for any optional purpose)."""
        data = {"csrf_token": self.token(), "email": email, "phone": phone, "name": name,
                "marketing": list(marketing), "analytics": list(analytics), **extra}
        if age:
            data["age"] = "yes"
        if terms:
            data["terms"] = "yes"
        return self.post("/connect", data=data)


@pytest.fixture
def client(app):
    return PortalClient(app.test_client())


@pytest.fixture
def make_client(app):
    return lambda ip: PortalClient(app.test_client(), ip=ip)


@pytest.fixture
def visitors(app):
    return app.extensions["footfall"].visitors


def prove_claims(visitors, outcome, client) -> None:
    """Apply the proof of every contact a sign-in named, as a right code would (portal/contacts.py);
    for tests about what follows a proof (exports, segments), not about the code itself."""
    from portal.models import ContactClaim
    for uid in outcome.claims:
        row = ContactClaim.get(ContactClaim.uid == uid)
        visitors.contacts._prove(row, "email" if row.kind == "email" else "sms", client.mac, client.ip)


def row_counts() -> dict[str, int]:
    from portal.models import MODELS
    return {m._meta.table_name: m.select().count() for m in MODELS}

"""Issue 12, item 5: from outside `panel_networks`, every /panel path and method answers exactly
as an unknown path does (status, body and headers), so the panel's routes cannot be mapped."""
from __future__ import annotations

import re
import tempfile

import pytest
from werkzeug.exceptions import NotFound

from portal import accounts, create_app
from portal.config import load_settings
from portal.db import database
from portal.panel.fence import UNKNOWN_PATH

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
GUESTS = ["10.77.0.10", "192.168.1.5", "fd00::5", "::ffff:10.77.0.10"]
UNKNOWN = "/no-such-page"
HOST = "portal.test:8080"


def _panel_paths() -> list[str]:
    """Every panel rule of a freshly built app's url_map, with sample values in its variables."""
    with tempfile.TemporaryDirectory() as data:
        app = create_app(load_settings(environ={}, data_dir=data, portal_url=f"http://{HOST}"))
        try:
            rules = sorted({rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/panel")})
        finally:
            database.close()
    assert len(rules) > 20, rules
    return [re.sub(r"<(?:int:)?[^>]+>", lambda m: "1" if m.group(0).startswith("<int:") else "x", r) for r in rules]


def pytest_generate_tests(metafunc):
    if "panel_path" in metafunc.fixturenames:
        metafunc.parametrize("panel_path", _panel_paths())


@pytest.fixture(scope="module")
def guest_app(tmp_path_factory):
    """One app for the whole matrix (building one per case would take most of its time)."""
    app = create_app(load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("fence")),
                                   portal_url=f"http://{HOST}", rate_limit_count=10**6))
    app.config["TESTING"] = True
    accounts.create_manager("owner1", "correct horse battery staple", "owner")
    yield app
    database.close()


def _answer(client, method: str, path: str, ip: str, body: dict | None):
    response = client.open(path, method=method, data=body, headers={"Host": HOST, "Accept-Language": "en"},
                           environ_base={"REMOTE_ADDR": ip})
    return response.status_code, response.get_data(), sorted(response.headers.items())


@pytest.mark.parametrize("method", METHODS)
def test_every_panel_route_answers_a_guest_as_an_unknown_path(guest_app, panel_path, method):
    client = guest_app.test_client()
    body = {"username": "owner1", "password": "correct horse battery staple", "code": "123456"} \
        if method in ("POST", "PUT", "PATCH", "DELETE") else None
    unknown = _answer(client, method, UNKNOWN, GUESTS[0], body)
    assert unknown[0] == 404
    for ip in GUESTS:
        assert _answer(client, method, panel_path, ip, body) == unknown, (ip, method, panel_path)


@pytest.mark.parametrize("path", ["/panel", "//panel/login", "/panel//login", "/panel/login/", "/panel/?lang=en",
                                  "/panel/login?next=%0d%0a", "/panel/leads?after=%C2%B2"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_spellings_of_panel_paths_answer_a_guest_as_an_unknown_path(guest_app, path, method):
    client = guest_app.test_client()
    query = path.partition("?")[2]
    assert _answer(client, method, path, GUESTS[0], {"password": "x" * 3000}) == \
        _answer(client, method, UNKNOWN + ("?" + query if query else ""), GUESTS[0], {"password": "x" * 3000})


def test_the_same_routes_answer_on_the_management_network(guest_app):
    """The check above can fail: from 127.0.0.1 these answer as the panel, not as an unknown path."""
    client = guest_app.test_client()
    assert _answer(client, "GET", "/panel/login", "127.0.0.1", None)[0] == 200
    assert _answer(client, "POST", "/panel/login", "127.0.0.1", {})[0] == 400  # CSRF
    assert _answer(client, "GET", "/panel/settings/logo", "127.0.0.1", None)[0] == 405
    assert _answer(client, "GET", "/panel", "127.0.0.1", None)[0] == 308


def test_the_rewritten_path_matches_no_route(guest_app):
    adapter = guest_app.url_map.bind(HOST)
    for method in METHODS:
        with pytest.raises(NotFound) as exc:
            adapter.match(UNKNOWN_PATH, method=method)
        assert type(exc.value).__name__ == "NotFound", (method, exc.value)

"""Numbers from requests: "²", "１２", "-1" or forty digits are a 400 (or a 404 in a URL path),
never int()'s 500, never a fullwidth id quietly read as another (issue 12, item 6)."""
from __future__ import annotations

import dataclasses
import datetime
import gzip
import json

import pytest

from portal import accounts
from portal.core.numbers import INT64_MAX, NumberError, is_ascii_digits, parse_int
from tests.central.fixtures import event, post_batch
from tests.panel.conftest import PASSWORD, PanelClient

HOSTILE = ["²", "１２", "-1", "+1", " 12", "1_2", "1e3", "0x1f", "9" * 40, "", "٣"]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_parser_refuses_anything_but_ascii_digits_in_range(text):
    with pytest.raises(NumberError):
        parse_int(text, 0, INT64_MAX)
    assert not is_ascii_digits(text)


def test_the_parser_reads_plain_numbers_and_bounds_them():
    assert parse_int("0") == 0 and parse_int("0042", 0, 1000) == 42 and parse_int(str(INT64_MAX)) == INT64_MAX
    with pytest.raises(NumberError):
        parse_int("501", 1, 500)
    with pytest.raises(NumberError):
        parse_int("0", 1, 500)


# -- the central store ------------------------------------------------------------------------------

@pytest.mark.parametrize("stamp", ["²", "１２", "-1", "9" * 40, "17e8"])
def test_a_malformed_batch_timestamp_is_a_400(central_app, stores, stamp):
    body = gzip.compress(json.dumps({"events": []}).encode())
    response = central_app.test_client().post("/v1/ingest", data=body, headers={
        "Content-Encoding": "gzip", "X-Footfall-Store": "hcm-01", "X-Footfall-Timestamp": stamp,
        "X-Footfall-Signature": "0" * 64})
    assert response.status_code == 400 and "X-Footfall-Timestamp" in response.json["error"]


@pytest.fixture
def reader(central_app):
    from central import add_token
    from central.db import database
    with database.connection_context():
        return {"Authorization": f"Bearer {add_token('crm', ['people:read'])}"}


@pytest.mark.parametrize("query", ["after=²", "after=１２", "after=-1", "after=" + "9" * 40, "limit=²", "limit=０",
                                   "limit=501", "limit=1_0"])
def test_paging_numbers_are_a_400(central_app, stores, reader, query):
    response = central_app.test_client().get(f"/v1/people?{query}", headers=reader)
    assert response.status_code == 400 and "whole number" in response.json["error"]


@pytest.mark.parametrize("person", ["１", "9" * 40, "-1", "²"])
def test_hostile_person_ids_are_a_404(central_app, stores, reader, person):
    assert central_app.test_client().get(f"/v1/people/{person}", headers=reader).status_code == 404


@pytest.mark.parametrize("where", ["at", "start", "end"])
def test_an_event_time_that_overflows_refuses_its_batch(central_app, stores, where):
    times = {"at": "2026-11-20T10:00:00", "start": "2026-11-20 09:00:00", "end": "2026-11-20 09:30:00"}
    times[where] = "0001-01-01T00:00:00+14:00"  # before year 1 once in UTC: astimezone() overflows
    with pytest.raises(OverflowError):
        datetime.datetime.fromisoformat(times[where]).astimezone(datetime.timezone.utc)
    visit = event("visit.closed", at=times["at"], device="3c:22:fb:00:00:01", start=times["start"], end=times["end"],
                  passerby=False)
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], [visit])
    assert response.status_code == 400 and response.json["error"] == "event 0: invalid time"


# -- the appliance's panel -----------------------------------------------------------------------

@pytest.fixture
def settings(settings):
    """Two-factor optional, as in the panel's own tests."""
    return dataclasses.replace(settings, panel_require_2fa=False)


@pytest.fixture
def owner(app, monkeypatch):
    from argon2 import PasswordHasher

    from portal import passwords
    monkeypatch.setattr(passwords, "HASHER", passwords.BoundedHasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))
    manager = accounts.create_manager("owner1", PASSWORD, "owner")
    client = PanelClient(app.test_client())
    assert client.login("owner1").status_code == 302
    return client, manager


@pytest.mark.parametrize("path", ["/panel/leads?after=", "/panel/audit?before="])
@pytest.mark.parametrize("value", ["²", "１２", "-1", "9" * 40])
def test_panel_paging_numbers_are_a_400(owner, path, value):
    assert owner[0].get(path + value).status_code == 400


def test_panel_paging_still_pages(owner):
    assert owner[0].get("/panel/audit?before=12").status_code == 200
    assert owner[0].get("/panel/leads?after=12").status_code == 200


@pytest.mark.parametrize("width", ["fullwidth", "huge"])
def test_a_fullwidth_or_huge_id_in_a_panel_path_is_a_404(owner, width):
    client, _ = owner
    staff = accounts.create_manager("staff1", PASSWORD, accounts.ROLES[-1])
    fullwidth = "".join(chr(ord("０") + int(d)) for d in str(staff.id))  # werkzeug's <int:> read it as staff.id
    value = fullwidth if width == "fullwidth" else "9" * 40
    response = client.form(f"/panel/users/{value}/access", {"disabled": "yes"})
    assert response.status_code == 404
    assert type(staff).get_by_id(staff.id).disabled is False


@pytest.mark.parametrize("minutes", ["²", "６０", "9" * 40])
def test_settings_numbers_are_refused_and_change_nothing(owner, minutes):
    from portal import store_settings
    client, _ = owner
    before = store_settings.overrides()
    response = client.form("/panel/settings", {"session_minutes": minutes}, token_page="/panel/settings")
    assert response.status_code == 422
    assert store_settings.overrides() == before


@pytest.mark.parametrize("value", ["１２", "²", "1_0", "+7"])
def test_store_settings_and_segment_rules_take_ascii_digits_only(app, value):
    from portal import segments, store_settings
    with pytest.raises(store_settings.SettingError):
        store_settings.clean("retention_days", value)
    with pytest.raises(segments.RuleError):
        segments.clean_rule({"visits_min": value})


def test_superscript_totp_digits_are_a_wrong_code_not_an_error(app):
    import hmac
    rt = app.extensions["footfall"]
    manager = accounts.create_manager("owner2", PASSWORD, "owner")
    accounts.start_totp(manager, rt.vault)
    with pytest.raises(TypeError):  # what "²²²²²²".isdigit() used to let through to the comparison
        hmac.compare_digest("123456", "²²²²²²")
    assert accounts.verify_second_factor(manager, rt.vault, "²²²²²²") is False
    assert accounts.verify_second_factor(manager, rt.vault, "１２３４５６") is False

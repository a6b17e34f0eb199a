"""Bad input gets a clear message and changes nothing: never a 500, never a reflected script."""
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.conftest import row_counts

SCRIPT = "<script>alert(1)</script>"


def assert_clean(response, counts_before, expected_status=None):
    page = response.get_data(as_text=True)
    assert response.status_code < 500, page[:500]
    if expected_status is not None:
        assert response.status_code == expected_status
    assert SCRIPT not in page and "<script" not in page.lower()
    assert "Traceback" not in page
    assert row_counts() == counts_before


@pytest.mark.parametrize("field,value", [
    ("email", SCRIPT), ("phone", SCRIPT), ("name", SCRIPT),
    ("email", '"><img src=x onerror=alert(1)>@example.com'),
    ("name", "Robert'); DROP TABLE lead;--"),
    ("phone", "+84 912 345 678 ext. <b>1</b>"),
])
def test_script_payloads_are_refused_and_escaped(client, field, value):
    before = row_counts()
    data = {"email": "", "phone": "", "name": "", field: value}
    response = client.sign_in(**data)
    assert_clean(response, before, 422)


@pytest.mark.parametrize("payload", ["a\r\nSet-Cookie: x=1", "a\nb", "a\x00b", "a\x1bb", "a\x7fb"])
@pytest.mark.parametrize("where", ["email", "name", "continue", "lang"])
def test_control_characters_and_crlf_in_any_parameter(client, payload, where):
    before = row_counts()
    if where in ("continue", "lang"):
        response = client.get("/", query_string={where: payload})
    else:
        response = client.sign_in(**{where: payload})
    assert_clean(response, before, 400)
    assert "Set-Cookie: x=1" not in str(response.headers)


def test_broken_utf8_in_form_and_query(client):
    before = row_counts()
    token = client.token()
    body = b"csrf_token=" + token.encode() + b"&terms=yes&email=ab%FF%FEc%40example.com"
    response = client.post("/connect", data=body, content_type="application/x-www-form-urlencoded")
    assert_clean(response, before, 400)
    response = client.get("/?continue=%C3%28")
    assert_clean(response, before, 400)


def test_oversized_body_is_refused(client):
    before = row_counts()
    response = client.sign_in(name="a" * 20000)
    assert_clean(response, before, 413)


def test_overlong_parameter_is_refused(client):
    before = row_counts()
    assert_clean(client.get("/", query_string={"continue": "http://x.com/" + "a" * 3000}), before, 400)


def test_too_many_form_parts_are_refused(client):
    before = row_counts()
    data = {"csrf_token": client.token(), "email": "a@example.com", "terms": "yes",
            "marketing": ["marketing_email"] * 200}
    response = client.post("/connect", data=data, content_type="multipart/form-data")
    assert_clean(response, before)
    assert response.status_code in (400, 413)


def test_missing_user_agent_is_fine(client):
    response = client.raw.get("/", headers={"Host": "portal.test:8080"}, environ_base={"REMOTE_ADDR": "10.0.0.10"})
    assert response.status_code == 200
    probe = client.raw.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"},
                           environ_base={"REMOTE_ADDR": "10.0.0.10"})
    assert probe.status_code == 302


def test_missing_or_wrong_csrf_token(client):
    before = row_counts()
    response = client.post("/connect", data={"email": "a@example.com", "terms": "yes"}, headers={"Accept-Language": "en"})
    assert_clean(response, before, 400)
    assert "This page has expired" in response.get_data(as_text=True)
    response = client.post("/connect", data={"email": "a@example.com", "terms": "yes", "csrf_token": "forged"})
    assert_clean(response, before, 400)


def test_unknown_paths_and_methods(client):
    before = row_counts()
    assert_clean(client.get("/wp-admin/"), before, 404)
    assert_clean(client.get("/connect"), before, 405)
    assert_clean(client.post("/my-data/withdraw", data={"csrf_token": client.token(), "purpose": SCRIPT}), before, 400)


def test_rate_limit_per_device_and_ip(client, app):
    app.extensions["footfall"].limiter.limit = 3
    codes = [client.sign_in(email="not-an-email").status_code for _ in range(5)]
    assert codes == [422, 422, 422, 429, 429]
    before = row_counts()
    response = client.sign_in()
    assert_clean(response, before, 429)


def test_broken_accept_language_and_cookies(client):
    response = client.get("/", headers={"Accept-Language": ";;;q=abc,,\x01", "Cookie": "ff_lang=<x>; ff_session=garbage"})
    assert response.status_code == 200


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=st.text(max_size=60), phone=st.text(max_size=40), name=st.text(max_size=90),
       marketing=st.lists(st.text(max_size=20), max_size=4))
def test_fuzzed_forms_never_fail_the_server(client, email, phone, name, marketing):
    response = client.sign_in(email=email, phone=phone, name=name, marketing=marketing)
    assert response.status_code in (303, 400, 413, 422, 429), response.status_code
    assert "<script" not in response.get_data(as_text=True).lower()

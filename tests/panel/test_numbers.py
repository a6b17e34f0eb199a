"""Numbers in panel parameters are ASCII digits: "²" passes str.isdigit() but int() refuses it."""
import pytest


@pytest.mark.parametrize("path", ["/panel/audit?before=%C2%B2", "/panel/leads?after=%C2%B2", "/panel/audit?before=-1",
                                  "/panel/leads?after=1e3", "/panel/leads?after=" + "9" * 30])
def test_bad_page_numbers_are_refused_with_400(as_role, path):
    response = as_role("owner").get(path)
    assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/panel/audit?before=5", "/panel/leads?after=5"])
def test_good_page_numbers_still_work(as_role, path):
    assert as_role("owner").get(path).status_code == 200


def test_a_superscript_session_length_is_a_form_error(as_role, app):
    before = app.extensions["footfall"].settings.session_seconds
    response = as_role("owner").form("/panel/settings", {"session_minutes": "²"}, token_page="/panel/settings")
    assert response.status_code == 422
    assert app.extensions["footfall"].settings.session_seconds == before

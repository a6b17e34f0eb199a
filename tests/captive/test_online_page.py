"""The "online" page (issue 16): until when, in words and the store's clock; where to go next (the
owner's page, the page the visitor asked for, or Close), never the OS probe's raw URL."""
from __future__ import annotations

import dataclasses
import datetime
import re

import pytest

from portal.captive.probes import is_probe

PROBE = "http://connectivitycheck.gstatic.com/generate_204"


@pytest.fixture
def settings(settings):
    """Codes by email printed (so a claim is pending), as in the demo."""
    return dataclasses.replace(settings, email_driver="console")


def visible(html: str) -> str:
    """The page's text as a visitor reads it: tags and attributes gone."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def online_page(client, nxt: str | None = None, lang: str = "en") -> str:
    answer = client.sign_in(**({"continue": nxt} if nxt else {}))
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"] + ("&" if "?" in answer.headers["Location"] else "?") + f"lang={lang}")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def expected_until(visitors, ip: str) -> datetime.datetime:
    from portal.captive.look import store_zone
    return visitors.online_until(ip).replace(tzinfo=datetime.timezone.utc).astimezone(store_zone(visitors.settings))


def test_until_when_in_words_in_both_languages(client, visitors):
    page = online_page(client)
    local = expected_until(visitors, client.ip)
    assert f"You are online until {local:%H:%M}, {local:%d/%m/%Y}." in visible(page)
    assert "After that, open any web page to sign in again." in visible(page)
    vi = client.get("/online?lang=vi").get_data(as_text=True)
    assert f"Bạn được truy cập Internet đến {local:%H:%M} ngày {local:%d/%m/%Y}." in visible(vi)
    assert "Sau thời gian đó, hãy mở một trang web bất kỳ để đăng nhập lại." in visible(vi)
    assert 'id="close"' not in vi and 'id="browse"' not in vi  # nothing was asked for: no button to it


def test_the_probe_url_is_never_shown_only_a_close_button(client):
    page = online_page(client, PROBE)
    assert "gstatic" not in visible(page) and "Continue to" not in visible(page)
    assert re.search(r'<a class="button" id="close" href="' + re.escape(PROBE) + r'" rel="noreferrer">Close</a>', page)
    assert 'id="browse"' not in page and 'id="store-link"' not in page


def test_a_page_the_visitor_asked_for_is_offered_by_name_not_by_url(client):
    target = "http://vnexpress.net/the-gioi/bai-viet-123.html?utm=x"
    page = online_page(client, target)
    assert "vnexpress" not in visible(page)
    assert re.search(r'<a class="button" id="browse" href="' + re.escape(target.replace("&", "&amp;")) + r'"', page)
    assert ">Continue browsing</a>" in page and 'id="close"' not in page


def test_the_owners_page_comes_first_with_its_label(app, client):
    rt = app.extensions["footfall"]
    app.extensions["footfall"] = dataclasses.replace(rt, settings=dataclasses.replace(
        rt.settings, splash_link="https://caphe-moc.vn/menu?a=1&b=2", splash_link_label_vi="Xem thực đơn"))
    page = online_page(client, PROBE, lang="vi")
    link = re.search(r'<a class="button" id="store-link" href="https://caphe-moc.vn/menu\?a=1&amp;b=2" rel="noreferrer">'
                     r'Xem thực đơn</a>', page)
    close = re.search(r'<a class="button secondary" id="close"', page)
    assert link and close and link.start() < close.start()
    assert "gstatic" not in visible(page) and "caphe-moc" not in visible(page)
    english = client.get("/online?lang=en").get_data(as_text=True)
    assert ">See our page</a>" in english  # no English label set: the standard one


def test_a_pending_code_shows_its_field_on_the_online_page(client):
    page = online_page(client)
    assert re.search(r'<input id="code-1" type="text" name="code" inputmode="numeric" autocomplete="one-time-code"', page)
    assert "Enter the code we sent to confirm your email or phone." in visible(page)


@pytest.mark.parametrize("url,probe", [
    (PROBE, True), ("http://captive.apple.com/hotspot-detect.html", True), ("http://www.msftconnecttest.com/connecttest.txt", True),
    ("http://detectportal.firefox.com/canonical.html", True), ("http://example.com/generate_204", True),
    ("http://example.com/", False), ("http://vnexpress.net/the-gioi/a.html", False),
])
def test_probe_urls_are_told_from_pages(url, probe):
    assert is_probe(url) is probe


def test_the_privacy_sentence_links_to_the_notice(client):
    for lang, phrase in (("en", "privacy notice"), ("vi", "thông báo về quyền riêng tư")):
        page = client.get(f"/?lang={lang}").get_data(as_text=True)
        terms = re.search(r'id="terms" required><span>(.*?)</span></label>', page).group(1)
        assert f'<a href="/privacy">{phrase}</a>' in terms


def test_a_notice_link_even_when_the_owners_terms_do_not_mention_it(app, client):
    from portal import consent
    consent.publish("wifi_terms", "en", "Use this WiFi <b>lawfully</b>.")
    page = client.get("/?lang=en").get_data(as_text=True)
    terms = re.search(r'id="terms" required><span>(.*?)</span></label>', page).group(1)
    assert terms == 'Use this WiFi &lt;b&gt;lawfully&lt;/b&gt;. <a href="/privacy">Privacy notice</a>'


def test_the_language_link_of_a_page_answering_a_form_leads_to_a_page(client):
    """A refused form's page is the answer to a POST: its language link must not GET /connect (405)."""
    answer = client.sign_in(email="not-an-email", terms=False)
    assert answer.status_code == 422
    link = re.search(r'<a href="([^"]*)" hreflang="en"', answer.get_data(as_text=True))
    assert link and link.group(1).startswith("/?lang=en")
    assert client.get(link.group(1).replace("&amp;", "&")).status_code == 200


def test_until_is_told_on_the_stores_clock():
    """With `store_time_zone` (Asia/Ho_Chi_Minh by default; empty: the machine's zone)."""
    from types import SimpleNamespace

    from portal.captive.look import until_words
    store = SimpleNamespace(store_time_zone="Asia/Ho_Chi_Minh")
    until = datetime.datetime(2026, 11, 24, 23, 18)  # naive UTC, as the database keeps it
    assert until_words(until, "en", store) == "You are online until 06:18, 25/11/2026."
    assert until_words(until, "vi", store) == "Bạn được truy cập Internet đến 06:18 ngày 25/11/2026."
    assert until_words(until, "en", SimpleNamespace(store_time_zone="Europe/Paris")) == "You are online until 00:18, 25/11/2026."

"""The sign-in page editor (portal/panel/splash.py): what the owner sets reaches the visitors'
page escaped, and every bad field or picture is refused with its message while nothing changes."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from portal import store_settings
from portal.models import AuditEntry, StoreSetting
from tests.conftest import PortalClient

def png(width: int, height: int) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big")
            + b"\x08\x02\x00\x00\x00" + b"\x00" * 4 + b"\x00" * 64)


# Headers as each format's specification lays them out (the e2e test uploads a JPEG Chromium drew).
PNG = png(640, 200)
JPEG = (b"\xff\xd8" + b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + b"\x00" * 9
        + b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + (200).to_bytes(2, "big") + (640).to_bytes(2, "big") + b"\x00" * 64)
WEBP = (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x18\x00\x00\x00" + b"\x30\x01\x00" + b"\x9d\x01\x2a"
        + (640).to_bytes(2, "little") + (200).to_bytes(2, "little") + b"\x00" * 64)
WEBP_LOSSLESS = (b"RIFF\x24\x00\x00\x00WEBPVP8L" + b"\x18\x00\x00\x00" + b"\x2f"
                 + ((640 - 1) | ((200 - 1) << 14)).to_bytes(4, "little") + b"\x00" * 64)
GOOD = {"splash_headline_vi": "Chào mừng tới Cà Phê Mộc", "splash_headline_en": "Welcome to Moc Coffee",
        "splash_subtitle_vi": "Để lại số điện thoại để nhận WiFi", "splash_subtitle_en": "Leave your phone for WiFi",
        "splash_offer_vi": "Giảm 10% ly thứ hai", "splash_offer_en": "10% off the second cup",
        "splash_link": "https://example.com/menu?from=wifi", "splash_link_label_vi": "Xem thực đơn",
        "splash_link_label_en": "See the menu", "splash_contact_first": "email"}


@pytest.fixture
def owner(as_role):
    return as_role("owner")


def visitor_page(app, path="/?lang=en") -> str:
    return PortalClient(app.test_client()).get(path).get_data(as_text=True)


def save(owner, data):
    return owner.form("/panel/splash", data, token_page="/panel/splash")


def stored() -> dict:
    return {row.key: row.value for row in StoreSetting.select()}


def upload(owner, data: bytes, name="p.png"):
    return owner.post("/panel/splash/picture", data={"csrf_token": owner.token("/panel/splash"),
                                                     "picture": (io.BytesIO(data), name)},
                      content_type="multipart/form-data")


def test_what_the_owner_sets_is_what_visitors_see(owner, app):
    assert save(owner, GOOD).status_code == 303
    page = visitor_page(app)
    assert "<h1>Welcome to Moc Coffee</h1>" in page
    assert "Leave your phone for WiFi" in page and '<p class="offer">10% off the second cup</p>' in page
    assert page.index('id="email"') < page.index('id="phone"'), "email first, as chosen"
    vi = visitor_page(app, "/?lang=vi")
    assert "<h1>Chào mừng tới Cà Phê Mộc</h1>" in vi and "Giảm 10% ly thứ hai" in vi
    assert "settings_changed" in [a.action for a in AuditEntry.select()]


def test_defaults_put_the_phone_first_and_keep_the_standard_texts(app):
    page = visitor_page(app)
    assert "<h1>Free WiFi</h1>" in page and "Leave a phone number or an email to get online." in page
    assert page.index('id="phone"') < page.index('id="email"')
    assert 'class="offer"' not in page and 'class="picture"' not in page


def test_a_script_in_the_headline_is_shown_as_text(owner, app):
    script = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    assert save(owner, {"splash_headline_en": script, "splash_offer_en": script}).status_code == 303
    page = visitor_page(app)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;</h1>" in page
    editor = owner.get("/panel/splash").get_data(as_text=True)
    assert "<script>alert(1)" not in editor  # nor in the owner's own form


BAD_LINKS = ["javascript:alert(1)", "ftp://example.com/menu", "//example.com/menu", "https://exa mple.com/",
             'https://example.com/"onmouseover=alert(1)', "https://user:pw@example.com/", "menu.html",
             "https://example.com/" + "a" * 600]


def test_a_bad_page_address_changes_nothing(owner, app):
    save(owner, GOOD)
    before = stored()
    for bad in BAD_LINKS:  # one app for all (each test's app and login cost more than the checks)
        answer = save(owner, {**GOOD, "splash_headline_en": "Changed", "splash_link": bad})
        assert answer.status_code == 422, bad
        assert "must be an address starting with https://" in answer.get_data(as_text=True)
        assert stored() == before, f"{bad}: no field of the refused form may be stored"
    assert app.extensions["footfall"].settings.splash_link == GOOD["splash_link"]
    assert "<h1>Welcome to Moc Coffee</h1>" in visitor_page(app)


def test_a_bad_field_is_named_and_changes_nothing(owner):
    before = stored()
    for field, value, message in [("splash_headline_en", "x" * 81, "The English headline is too long"),
                                  ("splash_offer_vi", "x" * 121, "The Vietnamese offer is too long"),
                                  ("splash_link_label_en", "x" * 41, "The English button label is too long"),
                                  ("splash_headline_vi", "Giảm giá \u202egnol", "The Vietnamese headline is too long"),
                                  ("splash_contact_first", "fax", "Choose phone or email.")]:
        answer = save(owner, {**GOOD, field: value})
        assert answer.status_code == 422 and message in answer.get_data(as_text=True), field
        assert stored() == before, field


def test_a_picture_is_checked_by_its_bytes_replaced_whole_and_removable(owner, app, settings):
    for data, mimetype in ((PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (WEBP_LOSSLESS, "image/webp")):
        assert upload(owner, data).status_code == 303
        served = PortalClient(app.test_client()).get("/picture")
        assert served.status_code == 200 and served.mimetype == mimetype and served.data == data
        assert re.search(r'<img class="picture" src="/picture\?v=\d+" alt="">', visitor_page(app))
    assert not list(Path(settings.data_dir).glob("*.tmp")), "no half-written file left behind"
    assert owner.form("/panel/splash/picture/remove", {}, token_page="/panel/splash").status_code == 303
    assert PortalClient(app.test_client()).get("/picture").status_code == 404
    assert 'class="picture"' not in visitor_page(app)
    assert [a.action for a in AuditEntry.select() if "picture" in a.action][-1] == "splash_picture_removed"


def test_picture_sizes_are_read_from_each_formats_header():
    assert [store_settings.picture_size(d) for d in (PNG, JPEG, WEBP, WEBP_LOSSLESS)] == [(640, 200)] * 4
    vp8x = b"RIFF\x24\x00\x00\x00WEBPVP8X" + b"\x0a\x00\x00\x00" + b"\x00" * 4 + (639).to_bytes(3, "little") + (199).to_bytes(3, "little")
    assert store_settings.picture_size(vp8x) == (640, 200)


def test_a_bad_picture_keeps_the_old_one(owner, settings):
    assert upload(owner, JPEG).status_code == 303
    for data, name, message in [
        (b"<svg onload=alert(1)>", "x.png", "not a PNG, JPEG or WebP picture"),
        (b"<html><script>alert(1)</script>", "x.webp", "not a PNG, JPEG or WebP picture"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "x.webp", "not a PNG, JPEG or WebP picture"),
        (PNG + b"\x00" * store_settings.PICTURE_MAX, "big.png", "too big (300 KB at most)"),
        (b"", "empty.png", "Choose a picture to upload."),
        (png(5000, 10), "wide.png", "too large in pixels (4096 at most on each side)"),
        (png(0, 10), "none.png", "too large in pixels"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "headless.png", "its size cannot be read"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "headless.jpg", "its size cannot be read"),
        (b"RIFF\x24\x00\x00\x00WEBPXXXX" + b"\x00" * 64, "odd.webp", "its size cannot be read"),
    ]:
        answer = upload(owner, data, name)
        assert answer.status_code == 422 and message in answer.get_data(as_text=True), name
        assert (Path(settings.data_dir) / store_settings.PICTURE_FILE).read_bytes() == JPEG, name
    # Past the upload's body limit: refused before it is read (413), the old picture still there.
    assert upload(owner, PNG + b"\x00" * 400 * 1024).status_code == 413
    assert (Path(settings.data_dir) / store_settings.PICTURE_FILE).read_bytes() == JPEG


def test_the_preview_is_the_real_page_framed_only_by_the_editor(owner, app):
    save(owner, GOOD)
    editor = owner.get("/panel/splash")
    assert "frame-src 'self'" in editor.headers["Content-Security-Policy"]
    assert '<iframe id="preview-vi"' in editor.get_data(as_text=True) and 'sandbox=""' in editor.get_data(as_text=True)
    funnel = app.extensions["footfall"].funnel
    funnel_before = dict(funnel._counts)
    preview = owner.get("/panel/splash/preview/vi")
    assert preview.status_code == 200
    assert "frame-ancestors 'self'" in preview.headers["Content-Security-Policy"]
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "<h1>Chào mừng tới Cà Phê Mộc</h1>" in preview.get_data(as_text=True)
    assert funnel._counts == funnel_before, "an owner's preview is no visitor's view"
    assert owner.get("/panel/splash/preview/fr").status_code == 404
    # Visitor pages stay unframeable.
    assert "frame-ancestors 'none'" in PortalClient(app.test_client()).get("/").headers["Content-Security-Policy"]


def test_only_the_owner_edits_the_sign_in_page(as_role):
    for role in ("manager", "analyst"):
        client = as_role(role)
        assert client.get("/panel/splash").status_code == 403, role
        assert client.get("/panel/splash/preview/vi").status_code == 403, role
        assert client.form("/panel/splash", GOOD).status_code == 403, role


def test_a_settings_file_is_held_to_the_same_rules():
    from portal.config import ConfigError, load_settings
    for name, value in (("splash_headline_vi", "x" * 81), ("splash_offer_en", "a\nb"), ("splash_subtitle_en", "a\u2066b"),
                        ("splash_link", "javascript:alert(1)"), ("splash_contact_first", "fax")):
        with pytest.raises(ConfigError, match=name):
            load_settings(environ={}, **{name: value})
    assert load_settings(environ={}, splash_link="https://caphe-moc.vn/menu").splash_link == "https://caphe-moc.vn/menu"

"""The panel says things in words: audit actions and details, settings with unit and range, errors
with the allowed range, built-in segments, the 403 page naming the role a page needs."""
from __future__ import annotations

import html
import json
import re

import pytest

from portal.models import AuditLog

VI = {"headers": {"Accept-Language": "vi"}}


def text_of(response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def test_an_analyst_gets_the_panels_403_page_naming_the_roles(as_role):
    analyst = as_role("analyst")
    response = analyst.get("/panel/leads", **VI)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert 'id="forbidden"' in body and "<nav>" in body  # inside the panel
    words = text_of(response)
    assert "Trang này chỉ dành cho: chủ cửa hàng hoặc quản lý." in words
    assert "người phân tích" in words
    assert "Không hiểu được yêu cầu" not in words and "Dữ liệu của tôi" not in words  # not the guests' page
    english = text_of(analyst.get("/panel/audit"))
    assert "This page is open to: owner." in english


def test_refused_requests_inside_the_panel_get_the_panels_page_signed_out_the_guests(as_role, panel, app):
    from portal.store_settings import overrides
    manager = as_role("manager")
    missing = manager.get("/panel/leads/no-such-person", **VI)
    assert missing.status_code == 404
    body = missing.get_data(as_text=True)
    assert 'id="refused"' in body and "<nav>" in body and "Trang này không tồn tại." in text_of(missing)
    assert "Về trang tổng quan" in text_of(missing) and "Dữ liệu của tôi" not in text_of(missing)
    owner = as_role("owner")
    before = overrides()
    stale = owner.post("/panel/settings", data={"csrf_token": "expired", "visit_gap_minutes": "31"})
    assert stale.status_code == 400 and 'id="refused"' in stale.get_data(as_text=True)
    assert "Trang này đã hết hạn. Vui lòng thử lại." in text_of(stale)  # the store's language
    assert overrides() == before and "visit_gap_minutes" not in before  # nothing changed
    signed_out = panel.get("/panel/leads/no-such-person")  # not signed in: sent to sign in, no panel page
    assert signed_out.status_code in (302, 404) and 'id="refused"' not in signed_out.get_data(as_text=True)


def test_a_setting_out_of_range_says_the_range_and_changes_nothing(as_role, app):
    owner = as_role("owner")
    response = owner.form("/panel/settings", {"visit_gap_minutes": "999"}, token_page="/panel/settings")
    assert response.status_code == 422
    assert "Absence that ends a visit (minutes): enter a whole number from 1 to 240." in text_of(response)
    response = owner.form("/panel/settings?lang=vi", {"session_minutes": "1"}, token_page="/panel/settings")
    assert "Thời lượng phiên WiFi (phút): hãy nhập số nguyên từ 5 đến 10.080." in text_of(response)
    assert app.extensions["footfall"].settings.visit_gap_minutes == 15


def test_settings_are_labelled_in_words_with_their_range(as_role):
    page = text_of(as_role("owner").get("/panel/settings", **VI))
    assert "Thời gian vắng mặt kết thúc một lượt ghé (phút) từ 1 đến 240" in page
    assert "Điều khoản WiFi, bằng Tiếng Anh" in page
    assert not re.search(r"\b(visit_gap_minutes|min_dwell_minutes|wifi_terms)\b", page)


def test_the_audit_log_reads_as_words(as_role):
    owner = as_role("owner")
    AuditLog.record("manager:owner1", "settings_changed", None, "127.0.0.1", visit_gap_minutes=20, retention_days=400)
    AuditLog.record("manager:owner1", "policy_published", "wifi_terms/vi", "127.0.0.1", sha256="ab" * 32)
    AuditLog.record("visitor", "consent_withdrawn", "lead-1", None, purpose="marketing_sms")
    page = text_of(owner.get("/panel/audit", **VI))
    assert "thay đổi cài đặt" in page
    assert "Thời gian vắng mặt kết thúc một lượt ghé (phút): 20" in page
    assert "Điều khoản WiFi (Tiếng Việt)" in page
    assert "mục đích: Ưu đãi qua SMS / Zalo" in page
    assert "đăng nhập" in page  # owner1's own sign-in
    assert not re.search(r"\b(settings_changed|policy_published|consent_withdrawn|login|marketing_sms)\b", page)
    assert "{" not in page.split("Nhật ký", 1)[1]  # no raw JSON


@pytest.mark.parametrize("detail,expected", [
    ({"purposes": ["marketing_email", "ad_audiences"]}, [("purposes", "Offers by email, Online ads")]),
    ({"role": "analyst", "late": True}, [("role", "analyst"), ("late", "yes")]),
    ({"leads": 1234567}, [("people", "1,234,567")]),
    ({"rule": json.dumps({"visits_min": 5})}, [("rule", "At least N visits: 5")]),
    ({"something_new": "x"}, [("something new", "x")]),
    ({"q": None, "segment": "", "consent": "marketing_sms"}, [("Has agreed to", "Offers by SMS / Zalo")]),
])
def test_audit_details_in_words(app, detail, expected):
    from flask import g

    from portal.panel.wording import audit_details
    with app.test_request_context():
        g.lang = "en"
        assert audit_details(json.dumps(detail)) == expected


def test_builtin_segments_are_named_in_the_pages_language(as_role):
    page = text_of(as_role("owner").get("/panel/segments", **VI))
    for name in ("Mới", "Quay lại", "Trung thành", "Lâu chưa quay lại", "Đã rời bỏ"):
        assert name in page
    assert not re.search(r"\b(Loyal|Lapsed|Returning)\b", page)


def test_report_times_read_in_the_pages_language(app):
    import datetime

    from flask import g

    from portal.panel.wording import when
    utc = datetime.datetime(2026, 3, 5, 14, 7, tzinfo=datetime.timezone.utc).astimezone()
    local = datetime.datetime(2026, 3, 5, 14, 7).astimezone()
    with app.test_request_context():
        g.lang = "vi"
        assert when("2026-03-05T14:07:00") == utc.strftime("%H:%M %d/%m/%Y")
        assert when("2026-03-05 14:07:00.123456") == utc.strftime("%H:%M %d/%m/%Y")
        assert when(datetime.datetime(2026, 3, 5, 14, 7), local=True) == local.strftime("%H:%M %d/%m/%Y")
        assert when(None) == "-" and when("not a time") == "not a time"


def test_the_whole_settings_form_is_accepted_and_a_larger_body_refused(as_role, app):
    """A browser sends every policy text with the settings: more than max_body_bytes, less than the form's limit."""
    from portal.guards import SETTINGS_FORM_MAX
    owner = as_role("owner")
    page = owner.get("/panel/settings").get_data(as_text=True)
    form = dict(re.findall(r'<textarea id="[^"]+" name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S))
    form = {name: html.unescape(text) for name, text in form.items()}
    from urllib.parse import urlencode
    assert len(form) >= 10 and len(urlencode(form)) > app.config["MAX_CONTENT_LENGTH"]  # as a browser encodes it
    response = owner.form("/panel/settings", {**form, "visit_gap_minutes": "20"}, token_page="/panel/settings")
    assert response.status_code in (200, 302) and app.extensions["footfall"].settings.visit_gap_minutes == 20
    too_big = owner.form("/panel/settings", {"visit_gap_minutes": "21", "pad": "x" * SETTINGS_FORM_MAX},
                         token_page="/panel/settings")
    assert too_big.status_code == 413 and app.extensions["footfall"].settings.visit_gap_minutes == 20

"""Export files (issue 16): named by segment, kind and day in ASCII; the CRM file behind a UTF-8
byte-order mark so that Excel shows Vietnamese names; formula cells still neutralised."""
import datetime
import re

import pytest

from portal import compliance, exports, segments
from tests.portal.test_segments_exports import NOW, person

DAY = datetime.date(2026, 11, 25)


@pytest.mark.parametrize("name, kind, expected", [
    ("Loyal", "meta", "loyal-meta-2026-11-25.csv"),
    ("Khách thân thiết", "csv", "khach-than-thiet-csv-2026-11-25.csv"),
    ("Đã lâu không ghé!", "google", "da-lau-khong-ghe-google-2026-11-25.csv"),
    ('"; rm -rf / <b>', "csv", "rm-rf-b-csv-2026-11-25.csv"),
    ("日本の客", "meta", "segment-meta-2026-11-25.csv"),
    ("x" * 200, "csv", "x" * 48 + "-csv-2026-11-25.csv"),
])
def test_file_names_are_ascii_slugs(name, kind, expected):
    assert exports.file_name(name, kind, DAY) == expected


@pytest.fixture
def segment(app, visitors):
    person(visitors, 1, "=cmd@example.com", "0912345678", ["marketing_email", "marketing_sms", "ad_audiences"],
           visits=[(1, 30)])
    lan = person(visitors, 2, "lan@example.com", None, ["marketing_email", "ad_audiences"], visits=[(2, 30)])
    vault = app.extensions["footfall"].vault
    from portal import privacy
    privacy.correct(lan, vault, "VN", "owner1", name="Nguyễn Thị Lan")
    key = segments.save_custom("Khách thân thiết", {"visits_min": 1, "window_days": 3650}).key
    segments.recompute(NOW)
    return key


def test_the_crm_file_is_named_and_starts_with_a_bom(as_role, segment):
    answer = as_role("manager").get(f"/panel/segments/{segment}/export/csv")
    assert answer.status_code == 200
    today = datetime.datetime.now().astimezone().date()
    assert answer.headers["Content-Disposition"] == f'attachment; filename="khach-than-thiet-csv-{today:%Y-%m-%d}.csv"'
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    body = answer.get_data()
    assert body.startswith(b"\xef\xbb\xbfemail,phone,name,language\n")
    assert body.count(b"\xef\xbb\xbf") == 1
    text = body.decode("utf-8-sig")
    assert "lan@example.com,,Nguyễn Thị Lan,en" in text.splitlines()
    # A cell a spreadsheet would run as a formula is still neutralised, BOM or not.
    assert "'=cmd@example.com,+84912345678,,en" in text.splitlines()
    assert not re.search(r"^=", text, re.M)


def test_ad_platform_files_are_named_and_carry_no_bom(as_role, segment):
    compliance.record_transfer("meta", "", "", "2026-01-05", "", "manager:owner1")
    answer = as_role("manager").get(f"/panel/segments/{segment}/export/meta")
    assert answer.status_code == 200
    assert re.fullmatch(r'attachment; filename="khach-than-thiet-meta-\d{4}-\d{2}-\d{2}\.csv"',
                        answer.headers["Content-Disposition"])
    assert answer.get_data().startswith(b"email,phone\n")

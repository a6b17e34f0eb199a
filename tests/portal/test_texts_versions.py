"""Policy texts as templates, editorial and material versions, and the notice the law asks for."""
import dataclasses
import os

import pytest
from click.testing import CliRunner

from portal import consent, exports, segments
from portal.cli import main
from portal.models import PolicyVersion, Segment
from portal.policy_texts import (DEFAULTS, NOTICE, NOTICE_SECTIONS, TextError, is_example_contact, missing_sections,
                                 placeholders, render)
from tests.portal.test_segments_exports import NOW, person


def counting(lead) -> set[str]:
    return consent.effective_purposes(lead)


def exported(app, key="loyal") -> list[list[str]]:
    segments.recompute(NOW)
    segment = Segment.get(Segment.key == key)
    return list(exports.export_rows(segment.id, "csv", app.extensions["footfall"].vault))[1:]


@pytest.fixture
def regular(visitors):
    """A loyal guest who agreed to email offers in English, proved her email."""
    return person(visitors, 7, "reg@example.com", marketing=["marketing_email"],
                  visits=[(1, 30), (5, 40), (9, 25), (15, 50), (20, 35)])


def test_a_rename_publishes_editorial_versions_with_the_new_name_and_consents_stay_valid(app, settings, regular, visitors):
    before = {(v.document, v.language): v for v in PolicyVersion.select()}
    assert exported(app) == [["reg@example.com", "", "", "en"]]
    renamed = dataclasses.replace(settings, store_name="Cà Phê Mới")
    changes = consent.rerenders(renamed)
    assert {(c.document, c.language) for c in changes} >= {("marketing_email", "en"), ("marketing_email", "vi"), (NOTICE, "en")}
    assert all("Cà Phê Mới" in c.after and "Cà Phê Mới" not in c.before for c in changes)
    published = consent.rerender(renamed)
    assert len(published) == len(changes) and not any(v.material for v in published)
    email = consent.current("marketing_email", "en")
    assert "Cà Phê Mới" in email.text and email.id != before[("marketing_email", "en")].id
    assert email.template == DEFAULTS["marketing_email"]["en"]  # the template stays; only its rendering changed
    assert email.sha256 == consent.text_sha256(email.text)
    # Editorial: her consent on the old wording still counts everywhere, and she is welcomed back.
    assert "marketing_email" in counting(regular) and not consent.stale_purposes(regular)
    assert consent.has_current_terms(regular)
    assert exported(app) == [["reg@example.com", "", "", "en"]]
    assert consent.rerenders(renamed) == []  # done: nothing left to publish


def test_a_material_change_asks_again_and_stops_counting(app, regular, visitors):
    assert consent.asked_again("marketing_email", "en") == 1
    assert consent.asked_again("marketing_email", "vi") == 0  # she agreed to the English text
    consent.publish("marketing_email", "en", "Send me Cà Phê Test's offers by email, daily.", material=False)
    assert "marketing_email" in counting(regular)  # editorial first: still counts
    consent.publish("marketing_email", "en", "Send me offers by email and share my address with partners.",
                    material=True)
    assert "marketing_email" not in counting(regular)
    assert consent.stale_purposes(regular) == {"marketing_email"}
    assert consent.asked_again("marketing_email", "en") == 0
    assert exported(app) == []                                           # exports rest on the current text only
    assert exports.left_out(Segment.get(Segment.key == "loyal").id, "csv") == 0
    assert {"wifi_terms", "visit_analytics"} <= counting(regular)         # the other texts did not change


def test_a_material_notice_change_lapses_consents_given_before_it_only(app, visitors, regular):
    notice = consent.current(NOTICE, "en")
    consent.publish(NOTICE, "en", notice.text + "\n\nWe now also keep your birthday.", material=True)
    assert consent.stale_purposes(regular) == {"wifi_terms", "marketing_email", "visit_analytics"}
    assert not consent.has_current_terms(regular)
    assert visitors.recognised(visitors_client(7)) is None
    later = person(visitors, 8, "later@example.com", marketing=["marketing_email"])  # agreed after the change
    assert "marketing_email" in counting(later) and not consent.stale_purposes(later)


def visitors_client(n):
    from portal.visitors import Client
    return Client(f"10.0.{n // 256}.{n % 256}", f"02:00:00:00:{n // 256:02x}:{n % 256:02x}")


def test_a_notice_lacking_a_section_is_refused_and_nothing_is_published(app):
    notice = consent.current(NOTICE, "vi")
    count = PolicyVersion.select().count()
    without = notice.text.replace("## Chuyển dữ liệu ra nước ngoài", "## Khác").replace("## Cách thức xử lý", "## Cách làm")
    with pytest.raises(TextError) as refused:
        consent.publish(NOTICE, "vi", without)
    assert refused.value.code == "sections"
    assert refused.value.detail == "Cách thức xử lý; Chuyển dữ liệu ra nước ngoài"
    assert PolicyVersion.select().count() == count and consent.current(NOTICE, "vi").id == notice.id


def test_placeholders_are_filled_without_format_and_unknown_ones_refused(app, settings):
    values = placeholders(settings, "en")
    assert render("{store} · {store.__class__} · {0} · {}", values) == "Cà Phê Test · {store.__class__} · {0} · {}"
    with pytest.raises(TextError) as refused:
        consent.publish("marketing_sms", "en", "Offers from {shop}", template="Offers from {shop}")
    assert (refused.value.code, refused.value.detail) == ("placeholder", "{shop}")


def test_the_notice_carries_what_the_law_lists_from_the_settings(settings):
    rich = dataclasses.replace(settings, controller_name="Công ty Cà Phê", dpo_contact="Bà Lan, dpo@caphe.vn",
                               privacy_contact="privacy@caphe.vn", central_url="https://central.caphe.vn",
                               email_driver="smtp", smtp_host="mail.caphe.vn", sms_driver="esms", zalo_driver="zns",
                               retention_days=90, marketing_max_per_month=2, min_age=18, just_connect=True)
    for language in ("en", "vi"):
        text = render(DEFAULTS[NOTICE][language], placeholders(rich, language))
        assert missing_sections(text, language) == []
        assert "{" not in text
        for name in ("Công ty Cà Phê", "Cà Phê Test", "central.caphe.vn", "mail.caphe.vn", "eSMS.vn", "Zalo, VNG",
                     "Meta Platforms, Inc.", "Google LLC", "Bà Lan, dpo@caphe.vn", "privacy@caphe.vn", " 90 ", "18"):
            assert name in text, (language, name)
    en = render(DEFAULTS[NOTICE]["en"], placeholders(rich, "en"))
    assert "at most 2 a month" in en and "just connect" in en and "United States" in en
    plain = render(DEFAULTS[NOTICE]["en"], placeholders(settings, "en"))
    assert "eSMS.vn" not in plain and "just connect" not in plain and "head office" not in plain
    assert set(NOTICE_SECTIONS) >= {"purposes", "data", "method", "organisations", "consequences", "period",
                                    "transfers", "dpo"}


def test_a_changed_settings_file_rerenders_at_start_as_editorial(app, settings, regular):
    moved = dataclasses.replace(settings, dpo_contact="dpo@caphe.vn")
    published = consent.ensure_policies(moved)
    assert {(v.document, v.language) for v in published} == {(NOTICE, "en"), (NOTICE, "vi")}
    assert all("dpo@caphe.vn" in v.text and not v.material for v in published)
    assert not consent.stale_purposes(regular) and consent.ensure_policies(moved) == []


@pytest.mark.parametrize("value, example", [
    ("privacy@example.com", True), ("dpo@EXAMPLE.org", True), ("shop@store.test", True), ("privacy@your-store.vn", True),
    ("privacy@caphe.vn", False), ("Bà Lan, 0901 234 567", False), ("examples@caphe.vn", False), ("", False),
])
def test_example_contacts(value, example):
    assert is_example_contact(value) is example


def test_production_refuses_an_example_contact(tmp_path):
    env = {**os.environ, "FOOTFALL_DATA_DIR": str(tmp_path / "data"), "FOOTFALL_GATEWAY": "nftables",
           "FOOTFALL_CONFIG": "", "FOOTFALL_LISTEN_PORT": "1"}
    refused = CliRunner().invoke(main, ["portal"], env=env)
    assert refused.exit_code == 1
    assert "privacy_contact = 'privacy@example.com' is an example address" in refused.output
    assert "Traceback" not in refused.output


def test_migration_keeps_what_each_earlier_edit_meant(tmp_path):
    # Before 0015 an edit of the WiFi terms asked people again and any other edit did not: kept so.
    from portal.db import database, init_db, migration_runner
    init_db(tmp_path / "old.db", migrate=False)
    try:
        with database.connection_context():
            runner = migration_runner()
            runner.up("0014_export_log")
            for document, text in (("wifi_terms", "Terms 1"), ("wifi_terms", "Terms 2"), ("marketing_email", "Mail 1"),
                                   ("marketing_email", "Mail 2"), ("wifi_terms", "Điều khoản")):
                language = "vi" if text == "Điều khoản" else "en"
                database.execute_sql("INSERT INTO policy_version (document, language, text, sha256, created_at) "
                                     "VALUES (?, ?, ?, ?, '2026-01-01 00:00:00')", (document, language, text, consent.text_sha256(text)))
            assert runner.up("0015_policy_templates") == ["0015_policy_templates"]
            rows = database.execute_sql("SELECT text, material, template FROM policy_version ORDER BY id").fetchall()
            assert rows == [("Terms 1", 0, None), ("Terms 2", 1, None), ("Mail 1", 0, None), ("Mail 2", 0, None),
                            ("Điều khoản", 0, None)]
    finally:
        database.close()


def test_agreeing_again_after_a_material_change_counts_again(app, visitors, regular):
    consent.publish("marketing_email", "en", "Send me offers by email, and partners' offers too.", material=True)
    assert "marketing_email" not in counting(regular)
    again = person(visitors, 7, "reg@example.com", marketing=["marketing_email"])  # the same device, the form again
    assert "marketing_email" in counting(again) and not consent.stale_purposes(again)
    assert visitors.recognised(visitors_client(7)) is not None  # welcomed back from now on
    assert exported(app) == [["reg@example.com", "", "", "en"]]


def test_a_template_the_checks_now_refuse_is_left_as_it_is(app, settings, caplog):
    # An owner's notice from before the sections were required, with a placeholder: a rename
    # cannot publish it again (it lacks sections), so it stays, and the log says why.
    old = PolicyVersion.create(document=NOTICE, language="en", text="## Who we are\nCà Phê Test.",
                               sha256=consent.text_sha256("## Who we are\nCà Phê Test."),
                               template="## Who we are\n{store}.", material=False)
    renamed = dataclasses.replace(settings, store_name="Cà Phê Mới")
    assert (NOTICE, "en") not in {(c.document, c.language) for c in consent.rerenders(renamed)}
    consent.ensure_policies(renamed)  # the start does not fail
    assert consent.current(NOTICE, "en").id == old.id
    assert "privacy_notice/en not re-rendered" in caplog.text

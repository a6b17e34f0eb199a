"""The record of processing says what the code does with the settings in force: each claim that
depends on a setting follows it, and none claims what the collector no longer does (raw MACs of
devices whose person did not agree)."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from portal import consent, privacy_record_sources
from portal.cli import main
from portal.config import SETTINGS, load_settings
from portal.core.purposes import PURPOSES, VISIT_ANALYTICS
from portal.db import database
from portal.models import MODELS
from portal.privacy_record import render
from portal.privacy_record_sources import Endpoint
from portal.visits import FOLLOWED_PEOPLE_SQL


def record(**overrides) -> str:
    return render(load_settings(environ={}, **overrides))


def section(text: str, title: str) -> str:
    """The body of one `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"the record has no section {title!r}"
    return match.group(1)


def collected_rows(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in section(text, "What is collected").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] != "data":
            rows.append(tuple(cells))
    assert len(rows) >= 10
    return rows


def test_processing_without_consent_comes_first_with_its_basis():
    text = record()
    assert text.index("## Processing without consent, and its basis") < text.index("## What is collected")
    body = section(text, "Processing without consent, and its basis")
    wifi = next(line for line in body.splitlines() if "WiFi terms" in line and line.startswith("| Getting a device online"))
    assert "contract" in wifi.split(" | ")[-1]
    counting = next(line for line in body.splitlines() if line.startswith("| Counting the guest network's devices"))
    assert "no consent is asked" in counting and "30 days (`anonymous_retention_days`)" in counting
    assert "only in the dashboard's totals" in counting


@pytest.mark.parametrize("air", ["", "mon0"])
def test_probe_capture_on_or_off_changes_the_text(air):
    text = record(probe_interface=air)
    presence = section(text, "Presence: anonymous by default")
    if air:
        assert "802.11 probe requests are captured on `mon0` (`probe_interface`), aggregate only" in presence
        assert "`anon-air-<date>`" in presence and "probe capture is off" not in presence
        assert "probe requests heard over the air on `mon0`" in section(text, "Processing without consent, and its basis")
    else:
        assert "Over-the-air probe capture is off (`probe_interface` is empty)" in presence
        assert "captured on" not in text and "over the air on `" not in text


def test_anonymous_retention_and_rotation_follow_the_settings():
    text = record(anonymous_retention_days=12, pseudonym_rotation_hours=6, retention_days=90)
    assert "kept 12 days (`anonymous_retention_days`)" in section(text, "Processing without consent, and its basis")
    retention = section(text, "Retention")
    assert "their visits 12 days (`anonymous_retention_days`)" in retention
    assert "deleted 90 days (`retention_days`)" in retention and "30 days" not in retention
    assert "a key that lasts 6 hours of local time (`pseudonym_rotation_hours` = 6)" in text
    assert "a local day" not in text
    assert "a key that lasts a local day (`pseudonym_rotation_hours` = 24)" in record()


def test_no_claim_that_raw_macs_of_devices_without_consent_are_stored():
    text = record(probe_interface="mon0")
    for claim in ("every device's MAC", "device record (MAC, vendor, host name, fingerprint) is not deleted"):
        assert claim not in text
    for data, whom, where in collected_rows(text):
        if "every device" in whom:
            # What is kept of every device on the network: a pseudonym, never its MAC.
            assert "MAC" not in data.replace("HMAC-SHA256(key of the period, MAC)", "").replace("never its MAC", ""), data
            assert "in clear" not in where
        if "in clear" in where:
            assert whom == "followed people's devices" and "`visit_analytics`" in data
    # The rule the record names is the one the collector applies.
    assert "restricted_at IS NULL" in FOLLOWED_PEOPLE_SQL and "erased_at IS NULL" in FOLLOWED_PEOPLE_SQL
    assert f"'{VISIT_ANALYTICS}'" in consent.FOLLOWED_LEADS_SQL


def test_webhook_endpoints_are_named_as_recipients():
    s = load_settings(environ={})
    live = Endpoint("https://crm.example.vn/hooks/Zq9secretpath", ("lead.created", "consent.changed"), True)
    off = Endpoint("https://old-crm.example.com/x", ("visit.closed",), False)
    recipients = section(render(s, endpoints=[live, off]), "Recipients")
    assert "Signed webhooks (Standard Webhooks) to: `crm.example.vn` (`lead.created`, `consent.changed`)" in recipients
    assert "Zq9secretpath" not in recipients and "old-crm.example.com" not in recipients
    assert "opaque id" in recipients
    assert "No webhook endpoint is enabled" in section(render(s, endpoints=[off]), "Recipients")
    assert "listed in the record it generates" in section(render(s), "Recipients")  # docs/privacy.md: not known


def test_message_providers_and_central_follow_the_settings():
    none = section(record(), "Recipients")
    assert "No message provider is configured" in none and "No central store" in none
    text = record(email_driver="smtp", smtp_host="mail.caphe.vn", sms_driver="esms", zalo_driver="zns",
                  central_url="https://central.caphe.vn/", central_retention_days=200)
    recipients = section(text, "Recipients")
    assert "SMTP server `mail.caphe.vn`" in recipients and "eSMS.vn at `rest.esms.vn`" in recipients
    assert "Zalo ZNS at `business.openapi.zalo.me`" in recipients
    assert "central store at `central.caphe.vn`" in recipients and "visits of followed people only" in recipients
    assert "200 days (`central_retention_days`)" in section(text, "Retention")


def test_consent_choices_and_activation_follow_the_settings():
    text = record(just_connect=True, min_age=18, activation_quiet_start=22, activation_quiet_end=7,
                  activation_max_per_week=3, activation_holdout_percent=20, marketing_max_per_month=6)
    assert "A \"just connect\" button (`just_connect`)" in text and "\"I am 18 or older\"" in text
    messages = section(text, "Messages (activation)")
    assert "Quiet hours 22:00 to 07:00" in messages and "at most 3 a week" in messages
    assert "6 a month per consent" in messages and "20% of each audience" in messages
    assert "receipt amount" in messages and "monetary" in messages
    plain = record(min_age=0)
    assert "no age is asked (`min_age` is 0)" in plain and "There is no \"just connect\" button" in plain


def test_the_desk_clocks_follow_the_settings():
    rights = section(record(dsr_deadline_days=10, dsr_processor_days=25, dsr_extension_days=5), "Rights and the privacy desk")
    assert "done within 10 days (`dsr_deadline_days`" in rights and "25 when a processor" in rights
    assert "once by 5 days (`dsr_extension_days`)" in rights
    for kind in ("access", "correction", "erasure", "withdrawal", "objection", "restriction", "provision"):
        assert kind in rights


def test_every_name_in_backticks_is_a_setting_a_purpose_a_table_or_a_column():
    from portal.db import PRAGMAS

    assert PRAGMAS["secure_delete"] == 1  # the record says deleted rows are zeroed
    from portal.jobs import JOBS

    known = {s.name for s in SETTINGS} | set(PURPOSES) | set(JOBS) | {"privacy_notice", "unsubscribe_link", "secure_delete"}
    for model in MODELS:
        known.add(model._meta.table_name)
        known |= {f.column_name for f in model._meta.fields.values()}
    from portal.activation.models import MODELS as ACTIVATION
    from portal.webhooks.queue import WebhookDelivery, WebhookEndpoint
    for model in (*ACTIVATION, WebhookEndpoint, WebhookDelivery):
        known.add(model._meta.table_name)
    text = record(probe_interface="mon0", central_url="https://c.example/", just_connect=True,
                  email_driver="smtp", sms_driver="esms", zalo_driver="zns")
    body = text.split("The consent statements in force")[0]
    names = set(re.findall(r"`([a-z][a-z0-9_]*)`", body)) - {"mon0", "smtp", "esms", "zns"}
    assert names - known == set(), "the record names what the code does not have"


def test_the_cli_and_the_pack_name_the_endpoints_in_the_database(app, settings):
    from portal.webhooks.queue import WebhookEndpoint

    with database.connection_context(), database.atomic():
        WebhookEndpoint.create(url="https://hooks.getfly.example/in", secret_enc=b"x", events="lead.created",
                               enabled=True, created_by="owner1")
        WebhookEndpoint.create(url="https://paused.example/in", secret_enc=b"x", events="visit.closed",
                               enabled=False, created_by="owner1")
        assert "`hooks.getfly.example` (`lead.created`)" in render(settings, None, privacy_record_sources.endpoints_in_force())
    env = {"FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_STORE_NAME": settings.store_name}
    shown = CliRunner().invoke(main, ["privacy-record"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "`hooks.getfly.example` (`lead.created`)" in shown.output and "paused.example" not in shown.output
    defaults = CliRunner().invoke(main, ["privacy-record", "--defaults"], env=env)
    assert defaults.exit_code == 0 and "hooks.getfly.example" not in defaults.output


def test_the_dossier_says_devices_are_pseudonymous_by_default(app, settings):
    import dataclasses

    from portal import compliance

    s = dataclasses.replace(settings, anonymous_retention_days=12, pseudonym_rotation_hours=6)
    with database.connection_context():
        text = compliance.dossier(s, {})
    assert "device MAC addresses, vendor, host name, visits;" not in text
    assert "every other device under a pseudonym whose key is destroyed after 6 hours" in text
    assert "visits under a pseudonym 12 days (`anonymous_retention_days`)" in text


def test_the_central_store_is_listed_as_processing_without_consent_only_when_configured():
    assert "Sync to the chain's central store" not in record()
    body = section(record(central_url="https://central.caphe.vn/"), "Processing without consent, and its basis")
    assert "Sync to the chain's central store (`central.caphe.vn`)" in body
    assert "only with a consent that counts" in body


def test_export_log_just_connect_and_the_desk_zone_follow_the_settings():
    text = record(export_log_retention_days=400, just_connect=True, store_time_zone="Asia/Ho_Chi_Minh")
    retention = section(text, "Retention")
    assert "deleted 400 days (`export_log_retention_days`)" in retention
    assert "within 10 minutes of the session's end (the `forget` job)" in retention and "there are none" not in retention
    assert "on the calendar of `Asia/Ho_Chi_Minh`, `store_time_zone`" in section(text, "Rights and the privacy desk")
    plain = record()
    assert "`just_connect` is off: there are none" in section(plain, "Retention")
    assert "on the machine's calendar: `store_time_zone` is empty" in plain


def test_sign_in_visits_restriction_and_objection_are_described():
    text = record(visit_gap_minutes=20)
    presence = section(text, "Presence: anonymous by default")
    assert "Visits from sign-ins (the `signin_visits` job" in presence and "once silent for 20 minutes" in presence
    assert "new random pseudonym, one per visit, with no MAC" in presence
    rights = section(text, "Rights and the privacy desk")
    assert "(`lead.restricted`)" in rights and "objects to marketing and the profiling behind it" in rights


def test_the_cli_record_states_the_settings_the_owner_changed_in_the_panel(app, settings):
    from portal import store_settings

    with database.connection_context(), database.atomic():
        store_settings.save({"min_age": "18", "export_log_retention_days": "500"}, "owner1")
    env = {"FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_STORE_NAME": settings.store_name}
    shown = CliRunner().invoke(main, ["privacy-record"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "\"I am 18 or older\"" in shown.output and "\"I am 16 or older\"" not in shown.output
    assert "deleted 500 days (`export_log_retention_days`)" in shown.output


def test_webhooks_are_processing_without_consent_only_while_an_endpoint_is_on():
    s = load_settings(environ={})
    title = "Processing without consent, and its basis"
    assert "| Webhooks: an opaque id" in section(render(s), title)  # not known here: said
    assert "| Webhooks: an opaque id" not in section(render(s, endpoints=[]), title)
    on = [Endpoint("https://crm.example.vn/in", ("lead.created",), True)]
    assert "| Webhooks: an opaque id" in section(render(s, endpoints=on), title)

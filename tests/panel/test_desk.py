"""The panel's pages doing their jobs, through HTTP."""
import datetime
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal import consent
from portal.models import AuditEntry, Consent, DataRequest, Device, Lead, OutboxEvent, Segment, StoreSetting, Visit, utcnow
from portal.visitors import Client, SignInForm
from tests.conftest import prove_claims

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def people(app):
    visitors = app.extensions["footfall"].visitors
    for i in range(60):
        mac = f"02:00:00:00:01:{i:02x}"
        client = Client(f"10.0.1.{i}", mac)
        outcome = visitors.sign_in(SignInForm(email=f"p{i}@example.com", phone=f"09123450{i:02d}", terms=True,
                                              adult=True, marketing=frozenset({"marketing_email"} if i % 2 else set()),
                                              analytics=frozenset({"visit_analytics"})), client)  # segments need it
        assert outcome.ok
        prove_claims(visitors, outcome, client)
        start = utcnow() - datetime.timedelta(days=i % 40)
        Visit.create(device=Device.get(Device.mac == mac), start=start, end=start + datetime.timedelta(minutes=25))
    return visitors


def audit_actions():
    return [e.action for e in AuditEntry.select()]


def test_search_by_email_or_phone_uses_the_blind_index(as_role, people):
    owner = as_role("manager")
    page = owner.get("/panel/leads", query_string={"q": "  P7@Example.com "}).get_data(as_text=True)
    assert "p7@example.com" in page and "p8@example.com" not in page
    page = owner.get("/panel/leads", query_string={"q": "+84 912 345 007"}).get_data(as_text=True)
    assert "p7@example.com" in page
    assert "Nobody matches" in owner.get("/panel/leads", query_string={"q": "nobody@example.com"}).get_data(as_text=True)
    assert "Nobody matches" in owner.get("/panel/leads", query_string={"q": "<script>"}).get_data(as_text=True)


def test_pagination_and_filters(as_role, people):
    client = as_role("owner")
    first = client.get("/panel/leads").get_data(as_text=True)
    assert first.count("@example.com</a>") == 50 and "after=" in first
    after = first.split("after=")[1].split('"')[0]
    second = client.get(f"/panel/leads?after={after}").get_data(as_text=True)
    assert second.count("@example.com</a>") == 10
    emailable = client.get("/panel/leads?consent=marketing_email").get_data(as_text=True)
    assert emailable.count("@example.com</a>") == 30
    assert "leads_viewed" in audit_actions()


def test_lead_page_export_correct_withdraw_erase(as_role, people, gateway):
    client = as_role("manager")
    lead = Lead.get(Lead.email_index == people.vault.blind_index("email", "p3@example.com"))
    page = client.get(f"/panel/leads/{lead.uid}").get_data(as_text=True)
    assert "p3@example.com" in page and "02:00:00:00:01:03" in page
    exported = json.loads(client.get(f"/panel/leads/{lead.uid}/export.json").get_data())
    assert exported["person"]["email"] == "p3@example.com" and exported["consents"][0]["policy_text"]
    assert {"lead_viewed", "person_exported"} <= set(audit_actions())

    taken = client.form(f"/panel/leads/{lead.uid}/correct", {"email": "p4@example.com"})
    assert "error=email_taken" in taken.headers["Location"]
    client.form(f"/panel/leads/{lead.uid}/correct", {"email": "new.p3@example.com", "name": "Ba"})
    assert people.vault.decrypt(Lead.get_by_id(lead.id).email_enc, "lead.email") == "new.p3@example.com"

    client.form(f"/panel/leads/{lead.uid}/withdraw", {"purpose": "marketing_email"})
    assert "marketing_email" not in consent.granted_purposes(lead)
    assert client.form(f"/panel/leads/{lead.uid}/withdraw", {"purpose": "wifi_terms"}).status_code == 400

    assert client.form(f"/panel/leads/{lead.uid}/erase", {}).status_code == 400  # not confirmed
    assert client.form(f"/panel/leads/{lead.uid}/erase", {"confirm": "yes"}).status_code == 302
    erased = Lead.get_by_id(lead.id)
    assert erased.erased_at is not None and erased.email_enc is None
    assert not Device.select().where(Device.mac == "02:00:00:00:01:03").exists()
    assert "02:00:00:00:01:03" not in gateway.grants
    assert OutboxEvent.select().where(OutboxEvent.topic == "lead.erased").exists()
    assert client.get(f"/panel/leads/{lead.uid}").status_code == 404


def test_segment_exports_through_the_panel(as_role, people):
    client = as_role("owner")
    client.form("/panel/segments/recompute", {})
    client.form("/panel/segments/new", {"name": "Everyone", "visits_min": "1", "window_days": "365"})
    segment = Segment.get(Segment.name == "Everyone")
    assert segment.members == 0  # created, not computed yet
    client.form("/panel/segments/recompute", {})
    assert Segment.get_by_id(segment.id).members == 60
    csv_text = client.get(f"/panel/segments/{segment.key}/export/csv").get_data(as_text=True)
    lines = csv_text.strip().splitlines()
    assert lines[0] == "\ufeffemail,phone,name,language" and len(lines) == 31  # the 30 who agreed to emails
    assert all(",+84" not in line for line in lines[1:])  # no SMS consent: no phone exported
    refused = client.get(f"/panel/segments/{segment.key}/export/meta")  # a transfer abroad, not assessed yet
    assert refused.status_code == 409 and "transfer impact assessment" in refused.get_data(as_text=True)
    client.form("/panel/compliance/transfers", {"platform": "meta", "assessed_on": "2026-01-05"})
    meta = client.get(f"/panel/segments/{segment.key}/export/meta").get_data(as_text=True)
    assert meta.strip() == "email,phone"  # nobody agreed to ad audiences
    assert client.get(f"/panel/segments/{segment.key}/export/tiktok").status_code == 404
    assert audit_actions().count("export") == 2


def test_segment_rules_through_forms(as_role, people):
    client = as_role("owner")
    bad = client.form("/panel/segments/loyal/thresholds", {"visits_min": "-3"})
    assert "error=visits_min" in bad.headers["Location"]
    client.form("/panel/segments/loyal/thresholds", {"visits_min": "1", "window_days": "30", "recency_max_days": "30"})
    assert json.loads(Segment.get(Segment.key == "loyal").rule) == {"recency_max_days": 30, "visits_min": 1, "window_days": 30}
    assert "error=empty" in client.form("/panel/segments/new", {"name": "Nothing"}).headers["Location"]


def test_privacy_desk_register(as_role, people):
    client = as_role("manager")
    page = client.get("/panel/privacy").get_data(as_text=True)
    assert "Next purge" in page and "03:30" in page
    client.form("/panel/privacy/requests", {"kind": "deletion", "requester": "Chị Lan, 0912 345 678"})
    request = DataRequest.get()
    assert datetime.timedelta(days=15) <= request.due_at - request.received_at < datetime.timedelta(days=16)
    assert b"0912 345 678" not in bytes(request.requester_enc)  # stored encrypted
    assert "Chị Lan, 0912 345 678" in client.get("/panel/privacy").get_data(as_text=True)
    assert "error=kind_unknown" in client.form("/panel/privacy/requests", {"kind": "gossip"}).headers["Location"]
    client.form(f"/panel/privacy/requests/{request.id}/verify", {"method": "in_person"})
    client.form(f"/panel/privacy/requests/{request.id}", {"status": "done"})
    closed = DataRequest.get_by_id(request.id)
    assert closed.status == "done" and closed.handled_by == "manager:manager1"


def test_settings_save_and_refuse(as_role, app):
    client = as_role("owner")
    # A new name re-renders the texts that carry it: confirmed after the diff (tests/panel/test_texts_panel.py).
    response = client.form("/panel/settings", {"store_name": "Cà Phê Sữa", "brand_color": "#aa3300", "session_minutes": "90",
                                               "confirm": "1"}, token_page="/panel/settings")
    assert response.status_code == 200 and "Saved." in response.get_data(as_text=True)
    settings = app.extensions["footfall"].settings
    assert (settings.store_name, settings.brand_color, settings.session_seconds) == ("Cà Phê Sữa", "#aa3300", 5400)
    splash = app.test_client().get("/", headers={"Host": "portal.test:8080"}, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert "Cà Phê Sữa" in splash.get_data(as_text=True) and "#aa3300" in splash.get_data(as_text=True)
    before = {s.key: s.value for s in StoreSetting.select()}
    bad = client.form("/panel/settings", {"store_name": "Fine name", "brand_color": "red; }"}, token_page="/panel/settings")
    assert bad.status_code == 422
    assert {s.key: s.value for s in StoreSetting.select()} == before  # a bad field changes nothing
    assert "settings_changed" in audit_actions()


def test_editing_a_policy_text_publishes_a_version(as_role):
    client = as_role("owner")
    old = consent.current("marketing_sms", "en")
    text = "Send me offers by SMS or Zalo.\nOptional; withdraw any time."
    client.form("/panel/settings", {"text-marketing_sms-en": text, "kind-marketing_sms-en": "editorial"},
                token_page="/panel/settings")
    new = consent.current("marketing_sms", "en")
    assert new.id != old.id and new.text == text
    assert "policy_published" in audit_actions()


def test_logo_upload_checks_type_and_size(as_role, app, settings):
    client = as_role("owner")
    bad = client.post("/panel/settings/logo", data={"csrf_token": client.token("/panel/settings"),
                                                    "logo": (__import__("io").BytesIO(b"<svg onload=alert(1)>"), "x.png")},
                      content_type="multipart/form-data")
    assert bad.status_code == 422
    big = client.post("/panel/settings/logo", data={"csrf_token": client.token("/panel/settings"),
                                                    "logo": (__import__("io").BytesIO(PNG + b"\x00" * 300_000), "big.png")},
                      content_type="multipart/form-data")
    assert big.status_code in (413, 422)
    ok = client.post("/panel/settings/logo", data={"csrf_token": client.token("/panel/settings"),
                                                   "logo": (__import__("io").BytesIO(PNG), "logo.png")},
                     content_type="multipart/form-data")
    assert ok.status_code == 302
    served = app.test_client().get("/logo", headers={"Host": "portal.test:8080"})
    try:
        assert served.status_code == 200 and served.mimetype == "image/png" and served.data == PNG
    finally:
        served.close()


def test_users_page_creates_accounts(as_role):
    client = as_role("owner")
    assert client.form("/panel/users", {"username": "cashier", "password": "short", "role": "analyst"},
                       token_page="/panel/users").status_code == 422
    assert client.form("/panel/users", {"username": "cashier", "password": "a long enough password", "role": "analyst"},
                       token_page="/panel/users").status_code == 302


def test_jobs_run_from_the_cli(app, settings, people):
    from portal.cli import main
    from portal.db import database
    Consent.update(created_at=utcnow() - datetime.timedelta(days=999)).execute()
    Lead.update(updated_at=utcnow() - datetime.timedelta(days=999)).where(Lead.id <= 5).execute()
    Visit.update(start=utcnow() - datetime.timedelta(days=999), end=utcnow() - datetime.timedelta(days=999)).where(
        Visit.id <= 5).execute()
    from portal.models import OutboxEvent
    OutboxEvent.update(delivered_at=utcnow() - datetime.timedelta(days=8)).where(OutboxEvent.id <= 10).execute()
    OutboxEvent.update(delivered_at=utcnow()).where(OutboxEvent.id.between(11, 20)).execute()
    database.close()
    env = {"FOOTFALL_DATA_DIR": settings.data_dir}
    # Delivered events go once the webhooks' fan-out has read them too, as the scheduler's webhooks job does.
    assert CliRunner().invoke(main, ["jobs", "run", "webhooks"], env=env).exit_code == 0
    result = CliRunner().invoke(main, ["jobs", "run", "purge"], env=env)
    assert result.exit_code == 0, result.output
    # Old visits went with their people; today's claims and codes stay (they go after a day).
    assert json.loads(result.output) == {"leads": 5, "visits": 0, "outbox_delivered": 10, "claims_and_codes": 0,
                                         "webhooks_delivered": 0, "anonymous_visits": 0, "anonymous_devices": 0,
                                         "activation": {"sends": 0, "attempts_past_retention": 0},
                                         "exports_logged": 0, "erasure_ledger_lines": 0}
    # Each person purged is in the erasure ledger, so a restore from an older backup purges them again.
    ledger = (Path(settings.data_dir) / "erasures.jsonl").read_text().splitlines()
    assert sum('"kind":"erase"' in line for line in ledger) == 5
    result = CliRunner().invoke(main, ["jobs", "run", "segments"], env=env)
    assert result.exit_code == 0 and "loyal" in result.output
    assert CliRunner().invoke(main, ["jobs", "run", "nope"], env=env).exit_code != 0


def test_backup_job_makes_a_consistent_private_copy(app, settings, people):
    import sqlite3
    from pathlib import Path

    from portal.cli import main
    from portal.db import database
    database.close()
    result = CliRunner().invoke(main, ["jobs", "run", "backup"], env={"FOOTFALL_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    name = json.loads(result.output)["backup"]
    copy = Path(settings.data_dir) / "backups" / name
    assert copy.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM lead").fetchone()[0] == 60


def test_owner_disables_and_enables_an_account(as_role, app, accounts_by_role):
    from portal.models import Manager
    from tests.panel.conftest import PanelClient
    manager = as_role("manager")
    assert manager.get("/panel/").status_code == 200
    owner = as_role("owner")
    target = Manager.get(Manager.username == "manager1")
    owner.form(f"/panel/users/{target.id}/access", {"disabled": "yes"}, token_page="/panel/users")
    assert manager.get("/panel/").status_code == 302  # the live session ends
    assert PanelClient(app.test_client()).login("manager1").status_code == 401
    me = Manager.get(Manager.username == "owner1")
    assert owner.form(f"/panel/users/{me.id}/access", {"disabled": "yes"}, token_page="/panel/users").status_code == 400
    owner.form(f"/panel/users/{target.id}/access", {"disabled": "no"}, token_page="/panel/users")
    assert PanelClient(app.test_client()).login("manager1").status_code == 302
    assert {"account_disabled", "account_enabled"} <= set(audit_actions())

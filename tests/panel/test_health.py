"""The owner's health page and the red banner (issue 10)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from portal import create_app
from portal.db import database
from portal.gateway.null import NullGateway
from portal.i18n import translate
from tests.panel.conftest import PanelClient, PASSWORD


def test_the_health_page_shows_the_report_to_the_owner_only(as_role):
    owner = as_role("owner")
    page = owner.get("/panel/health")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Free storage" in text and "Newest backup" in text and "no backup yet" in text
    assert as_role("manager").get("/panel/health").status_code == 403
    assert as_role("analyst").get("/panel/health").status_code == 403


def test_a_disk_below_the_floor_and_a_restored_database_raise_the_banner(settings):
    from portal import accounts
    database.close()
    app = create_app(dataclasses.replace(settings, disk_floor_mb=10**9), gateway=NullGateway())  # a floor no disk has
    app.config["TESTING"] = True
    with database.connection_context():
        accounts.create_manager("boss1", PASSWORD, "owner")
    (Path(settings.data_dir) / "recovery.json").write_text(json.dumps(
        {"at": "2026-11-25T08:00:00", "damaged": "footfall.db.damaged-x", "restored_from": "footfall-20261124.db",
         "lost_since": "2026-11-24T02:45:00", "reason": "database disk image is malformed"}))
    client = PanelClient(app.test_client())
    assert client.login("boss1").status_code == 302
    text = client.get("/panel/").get_data(as_text=True)
    assert translate("alert_disk_full", "en").split(":")[0] in text
    assert "records after 2026-11-24T02:45:00 were lost" in text
    health = client.get("/panel/health").get_data(as_text=True)
    assert "disk almost full" in health and "the database was damaged and restored" in health
    database.close()

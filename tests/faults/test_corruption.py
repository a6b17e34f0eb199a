"""A database with damaged pages (issue 10): the portal comes back serving the newest sound backup,
the damaged file is kept aside, and the owner learns which period was lost."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3

from portal import create_app, jobs
from portal.config import backups_dir, database_path
from portal.db import database
from portal.gateway.null import NullGateway
from portal.models import Lead
from portal.recovery import check, last_recovery
from portal.visitors import Client, SignInForm
from tests.conftest import PortalClient
from tests.faults.test_disk_full import fill, small_disk


def sign_in(visitors, i):
    assert visitors.sign_in(SignInForm(email=f"c{i}@example.com", terms=True),
                            Client(f"10.4.0.{i + 1}", f"02:00:00:04:00:{i:02x}")).ok


def damage(path, pages=range(2, 12)) -> None:
    """Overwrite whole pages in the middle of the file, as a worn SD card returns them."""
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as fh:
        for n in pages:
            fh.seek(n * page)
            fh.write(os.urandom(page))


def test_a_damaged_database_is_replaced_by_the_newest_sound_backup(settings):
    app = create_app(settings, gateway=NullGateway())
    visitors = app.extensions["footfall"].visitors
    for i in range(5):
        sign_in(visitors, i)
    first = jobs.run_job("backup", settings)["backup"]
    for i in range(5, 9):
        sign_in(visitors, i)
    database.close()
    db = database_path(settings)
    damage(db)
    assert check(db) != "ok"

    again = create_app(settings, gateway=NullGateway())
    client = PortalClient(again.test_client(), ip="10.4.1.1")
    assert client.get("/").status_code == 200
    assert client.sign_in(email="after@example.com").status_code == 303
    with database.connection_context():
        emails = {again.extensions["footfall"].vault.decrypt(l.email_enc, "lead.email") for l in Lead.select()}
    assert emails == {f"c{i}@example.com" for i in range(5)} | {"after@example.com"}
    recovery = last_recovery(db)
    assert recovery.restored_from == first and recovery.lost_since is not None
    assert (db.parent / recovery.damaged).exists() and check(db) == "ok"
    database.close()


def test_a_damaged_backup_is_passed_over_and_without_any_the_store_starts_empty(settings):
    app = create_app(settings, gateway=NullGateway())
    sign_in(app.extensions["footfall"].visitors, 0)
    name = jobs.run_job("backup", settings)["backup"]
    database.close()
    damage(backups_dir(settings) / name)
    damage(database_path(settings))
    again = create_app(settings, gateway=NullGateway())
    with database.connection_context():
        assert Lead.select().count() == 0
    assert last_recovery(database_path(settings)).restored_from is None
    assert again.test_client().get("/", headers={"Host": "portal.test:8080"}).status_code == 200
    database.close()


def test_backups_keep_the_free_space_floor(settings, tmp_path):
    with small_disk(tmp_path / "card", size="3m") as card:
        settings = dataclasses.replace(settings, data_dir=str(card / "data"), disk_floor_mb=1)
        app = create_app(settings, gateway=NullGateway())
        for i in range(3):
            sign_in(app.extensions["footfall"].visitors, i)
        made = [jobs.run_job("backup", settings) for _ in range(3)]
        assert all("backup" in m or "skipped" in m for m in made)
        free = shutil.disk_usage(card).free
        assert free >= 1024 * 1024, f"the floor was crossed: {free} bytes free"
        fill(card)  # something else ate the card: the next backup must not be written
        skipped = jobs.run_job("backup", settings)
        assert skipped["skipped"] == "free-space floor"
        assert not list(backups_dir(settings).glob("*.partial"))
        database.close()

"""A restore from backup does not bring back the people erased, or the consents withdrawn, since the
backup (portal/erasure_ledger.py): real SQLite files, the scheduler's own backup job, the app's own
views, the app built again over the restored file as a restart does."""
from __future__ import annotations

import datetime
import json
import shutil
import threading

import pytest

from portal import create_app, erasure_ledger
from portal.config import backups_dir, database_path
from portal.db import database
from portal.jobs import JOBS
from portal.models import Consent, Device, Lead, OutboxEvent
from tests.conftest import PortalClient


def backup(settings):
    with database.connection_context():
        JOBS["backup"].run(settings)
    [copy] = sorted(backups_dir(settings).glob("footfall-*.db"))[-1:]
    return copy


def put_back(settings, copy):
    """`cp` the backup over the database with the services stopped; here, in a process whose other
    threads may still hold the old file open, a copy renamed over it (a new file, as cp onto a
    stopped appliance's is to SQLite)."""
    database.close()
    target = database_path(settings)
    shutil.copyfile(copy, target.with_name("restoring.db"))
    target.with_name("restoring.db").replace(target)
    for side in ("-wal", "-shm"):
        target.with_name(target.name + side).unlink(missing_ok=True)


def restore(settings, copy, gateway):
    """docs/operations.md: the copy over the database, the old WAL and shared memory gone, start again."""
    put_back(settings, copy)
    app = create_app(settings, gateway=gateway)
    app.config["TESTING"] = True
    return app


def erase_from_my_data(client):
    answer = client.post("/my-data/erase", data={"csrf_token": client.token("/my-data"), "confirm": "yes"})
    assert answer.status_code == 303, answer.status_code


def withdraw_from_my_data(client, purpose):
    answer = client.post("/my-data/withdraw", data={"csrf_token": client.token("/my-data"), "purpose": purpose})
    assert answer.status_code == 303, answer.status_code


def people():
    with database.connection_context():
        return {lead.uid: lead.erased_at for lead in Lead.select()}


def test_a_restored_backup_redoes_the_erasures_and_withdrawals_made_since(app, settings, gateway, make_client):
    lan, minh, hoa = make_client("10.0.0.21"), make_client("10.0.0.22"), make_client("10.0.0.23")
    lan.sign_in(email="lan@example.com", analytics=["visit_analytics"])
    minh.sign_in(email="minh@example.com", marketing=["marketing_email"])
    hoa.sign_in(email="hoa@example.com")
    copy = backup(settings)
    erase_from_my_data(lan)
    withdraw_from_my_data(minh, "marketing_email")
    lines = [json.loads(line) for line in erasure_ledger.path().read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["erase", "withdraw"]
    assert "lan@example.com" not in erasure_ledger.path().read_text()  # uids and row ids only
    assert oct(erasure_ledger.path().stat().st_mode & 0o777) == "0o600"

    again = restore(settings, copy, gateway)
    with database.connection_context():
        lan_lead = Lead.get(Lead.uid == lines[0]["lead"])
        assert lan_lead.erased_at is not None and lan_lead.email_enc is None  # erased again
        assert not Device.select().where(Device.id.in_(lines[0]["devices"])).exists()
        minh_lead = Lead.get(Lead.uid == lines[1]["lead"])
        latest = Consent.select().where((Consent.lead == minh_lead) & (Consent.purpose == "marketing_email")).order_by(Consent.id.desc()).first()
        assert latest.granted is False and latest.method == "restore"
        assert Lead.select().where(Lead.erased_at.is_null()).count() == 2  # Minh and Hoa
        # The central store hears the erasure and the withdrawal again (it applies each once).
        topics = [e.topic for e in OutboxEvent.select().where(OutboxEvent.seq > 0).order_by(OutboxEvent.seq.desc()).limit(6)]
        assert "lead.erased" in topics and "consent.recorded" in topics
        assert erasure_ledger.pending() == []

    # Started again: nothing more is redone; and a new sign-in on Lan's phone is a new person kept.
    database.close()
    assert erasure_ledger.replay() == {"erased": 0, "devices": 0, "withdrawn": 0}
    PortalClient(again.test_client(), ip="10.0.0.21").sign_in(email="lan@example.com")
    before = people()
    database.close()
    restart = create_app(settings, gateway=gateway)
    assert restart is not None and people() == before
    database.close()


def test_a_database_that_was_not_restored_has_nothing_to_redo(app, make_client):
    lan = make_client("10.0.0.31")
    lan.sign_in(email="lan@example.com", marketing=["marketing_email"])
    withdraw_from_my_data(lan, "marketing_email")
    erase_from_my_data(lan)
    database.close()
    assert erasure_ledger.replay() == {"erased": 0, "devices": 0, "withdrawn": 0}


def test_lines_keep_growing_when_the_clock_goes_back(app, monkeypatch):
    with database.connection_context():
        first = erasure_ledger.note("withdraw", "s1", lead="x", purpose="marketing_email")
        monkeypatch.setattr(erasure_ledger.clock, "seq_now", lambda: 1)  # a clock set back to 1970
        second = erasure_ledger.note("withdraw", "s1", lead="y", purpose="marketing_email")
    assert second == first + 1


def test_an_unreadable_line_is_skipped_and_the_rest_applies(app, settings, gateway, make_client):
    lan, minh = make_client("10.0.0.41"), make_client("10.0.0.42")
    lan.sign_in(email="lan@example.com")
    minh.sign_in(email="minh@example.com")
    copy = backup(settings)
    erase_from_my_data(lan)
    with erasure_ledger.path().open("a") as ledger:
        ledger.write('{"seq": 99999999999999999, "kind": "erase", "lead"\n')  # cut short by a power loss
    erase_from_my_data(minh)
    restore(settings, copy, gateway)
    assert sum(1 for erased in people().values() if erased is not None) == 2
    database.close()


def test_a_full_card_does_not_stop_the_erasure(app, make_client, monkeypatch):
    lan = make_client("10.0.0.51")
    lan.sign_in(email="lan@example.com")

    def full(*_args, **_kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(erasure_ledger.os, "write", full)
    erase_from_my_data(lan)
    assert all(erased is not None for erased in people().values())


def test_trim_drops_only_lines_older_than_every_backup_and_loses_no_concurrent_line(app, settings):
    with database.connection_context():
        for i in range(5):
            erasure_ledger.note("withdraw", "s1", lead=f"old{i}", purpose="marketing_email")
    old = erasure_ledger.path().read_text().splitlines()
    year_ago = datetime.datetime.now() - datetime.timedelta(days=400)
    folder = backups_dir(settings)
    folder.mkdir(exist_ok=True)
    (folder / f"footfall-{year_ago:%Y%m%d-%H%M%S}.db").write_bytes(b"")
    assert erasure_ledger.trim_past(settings.retention_days, folder) == 0  # a backup that old may be restored
    (folder / f"footfall-{year_ago:%Y%m%d-%H%M%S}.db").unlink()

    # Every line is made "old" by trimming at a point past them, while other threads append.
    cut = max(json.loads(line)["seq"] for line in old) + 1
    added: list[int] = []

    def append(n):
        with database.connection_context():
            for i in range(20):
                added.append(erasure_ledger.note("withdraw", "s1", lead=f"new{n}-{i}", purpose="marketing_email"))
    threads = [threading.Thread(target=append, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    dropped = erasure_ledger.trim(cut)
    for thread in threads:
        thread.join(10)
    kept = {json.loads(line)["seq"] for line in erasure_ledger.path().read_text().splitlines()}
    assert dropped == 5 and set(added) <= kept and len(added) == 60


@pytest.mark.parametrize("damaged", [True, False])
def test_init_db_after_a_restore_by_hand_says_what_it_redid(app, settings, make_client, damaged, tmp_path):
    """The documented restore ends with `footfall init-db`: it redoes the ledger and says so. (A
    damaged file restored automatically at start is the same replay: the portal's start.)"""
    from click.testing import CliRunner

    from portal.cli import main
    lan = make_client("10.0.0.61")
    lan.sign_in(email="lan@example.com")
    copy = backup(settings)
    erase_from_my_data(lan)
    database.close()
    target = database_path(settings)
    if damaged:  # the automatic path: a damaged file set aside, the newest sound backup restored
        target.write_bytes(b"this is not a database" * 100)
        for side in ("-wal", "-shm"):
            target.with_name(target.name + side).unlink(missing_ok=True)
        from portal.recovery import ensure_sound
        assert ensure_sound(target, backups_dir(settings)).restored_from == copy.name
    else:
        put_back(settings, copy)
    config = tmp_path / "footfall.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\nstore_name = "Test"\n')
    result = CliRunner().invoke(main, ["init-db", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "1 people erased" in result.output
    assert all(erased is not None for erased in people().values())
    database.close()

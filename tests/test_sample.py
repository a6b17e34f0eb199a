"""`footfall demo --sample`: a newcomer's dashboard, segments and exports show something, and only
clearly marked sample people, exported only with their consent."""
import json
import sqlite3

from portal import consent, exports, metrics
from portal.db import database, init_db
from portal.models import AuditEntry, Lead, OutboxEvent, Segment, SegmentMember
from portal.sample import MARK_ACTION, add_sample, is_sample_email
from tests.livecheck import footfall_process


def _check_sample_store(vault) -> None:
    """What a newcomer looks at, computed by the app's own code."""
    figures = metrics.dashboard()
    assert figures.visitors_30 > 0 and figures.visits_30 > 0 and figures.leads == 40
    assert figures.new_30 > 0 and figures.returning_30 > 0
    assert sum(count for _, count in figures.per_day) == figures.visits_30
    filled = {s.key: s.members for s in Segment.select() if s.members}
    assert {"new", "returning"} <= set(filled)
    for lead in Lead.select():
        assert is_sample_email(vault.decrypt(lead.email_enc, "lead.email"))
        assert vault.decrypt(lead.name_enc, "lead.name").startswith("Sample ")
    returning = Segment.get(Segment.key == "returning")
    exported = list(exports.export_rows(returning.id, "csv", vault))[1:]
    assert exported
    withheld = 0
    emails = {row[0] for row in exported}
    members = Lead.select().join(SegmentMember).where(SegmentMember.segment == returning.id)
    for lead in members:
        email = vault.decrypt(lead.email_enc, "lead.email")
        assert (email in emails) == ("marketing_email" in consent.granted_purposes(lead)), email
        withheld += email not in emails
    assert withheld > 0  # members without (or after withdrawing) the consent are left out
    assert len(emails) == len(exported)
    for email, phone, name, _lang in exported:
        assert is_sample_email(email) and phone == "" and name.startswith("Sample ")
    assert OutboxEvent.select().where(OutboxEvent.topic.in_(["lead.created", "consent.recorded"])).count() == 0


def test_sample_fills_dashboard_segments_and_exports_once(app):
    vault = app.extensions["footfall"].vault
    store_id = app.extensions["footfall"].settings.store_id
    with database.connection_context():
        first = add_sample(vault, store_id)
        assert first is not None and first.leads == 40 and first.visits > first.devices
        _check_sample_store(vault)
        counts = [m.select().count() for m in (Lead, AuditEntry)]
        assert add_sample(vault, store_id) is None
        assert [m.select().count() for m in (Lead, AuditEntry)] == counts
        mark = AuditEntry.get(AuditEntry.action == MARK_ACTION)
        assert json.loads(mark.detail)["sample"] is True


def test_demo_sample_through_the_command_adds_once(tmp_path):
    data = tmp_path / "demo"
    args = ["demo", "--sample", "--port", "0", "--data-dir", str(data)]
    with footfall_process(args, timeout=60) as (proc, _port):
        pass
    db = data / "footfall.db"
    with sqlite3.connect(db) as conn:
        leads = conn.execute("SELECT count(*) FROM lead").fetchone()[0]
        visits = conn.execute("SELECT count(*) FROM visit").fetchone()[0]
    assert leads == 40 and visits > 0
    with footfall_process(args, timeout=60) as (proc, _port):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM lead").fetchone()[0] == leads
        assert conn.execute("SELECT count(*) FROM visit").fetchone()[0] == visits
        assert conn.execute("SELECT count(*) FROM audit_entry WHERE action = ?", (MARK_ACTION,)).fetchone()[0] == 1
    from portal.config import key_path, load_settings
    from portal.identity import Vault, load_or_create_keys
    vault = Vault(load_or_create_keys(key_path(load_settings(environ={}, data_dir=str(data)))))
    init_db(str(db))
    try:
        with database.connection_context():
            _check_sample_store(vault)
    finally:
        database.close()

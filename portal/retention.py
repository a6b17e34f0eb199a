"""Retention (issue 15): what is deleted when its time is up. People and visits after
`retention_days`, the export log after `export_log_retention_days`, and a just-connect device as
soon as its session ends. The scheduler's jobs call these (portal/jobs.py); every deletion of a
person goes through the privacy desk's erasure (portal/privacy.py), outbox event included."""
from __future__ import annotations

import datetime

from peewee import fn

from portal.db import database
from portal.gateway import Gateway
from portal.models import (Authorization, AuditEntry, AuditLog, Device, ExportLog, ExportMember, Lead, OpenRun, Visit,
                           utcnow)
from portal.privacy import erase_person


def due_for_purge(retention_days: int, now: datetime.datetime | None = None) -> dict[str, int]:
    cutoff = ((now or utcnow()) - datetime.timedelta(days=retention_days)).isoformat(" ")
    visits = database.execute_sql("SELECT count(*) FROM visit WHERE \"end\" < ?", (cutoff,)).fetchone()[0]
    leads = database.execute_sql(_STALE_LEADS.replace("SELECT l.id", "SELECT count(*)"), (cutoff, cutoff)).fetchone()[0]
    return {"visits": visits, "leads": leads}


_STALE_LEADS = """
SELECT l.id FROM lead l
WHERE l.erased_at IS NULL AND l.updated_at < ?
  AND NOT EXISTS (SELECT 1 FROM device d JOIN visit v ON v.device_id = d.id WHERE d.lead_id = l.id AND v."end" >= ?)
"""


PURGE_CHUNK = 5000


def purge(retention_days: int, gateway: Gateway, store_id: str, now: datetime.datetime | None = None) -> dict[str, int]:
    """Delete visits older than the retention period and erase people not seen within it."""
    now = now or utcnow()
    cutoff = (now - datetime.timedelta(days=retention_days)).isoformat(" ")
    stale = [row[0] for row in database.execute_sql(_STALE_LEADS, (cutoff, cutoff))]
    for lead_id in stale:
        erase_person(Lead.get_by_id(lead_id), [], gateway, store_id, "retention")
    visits = 0
    while True:  # in short transactions: a first purge may face years of visits
        with database.atomic():
            deleted = database.execute_sql(
                'DELETE FROM visit WHERE id IN (SELECT id FROM visit WHERE "end" < ? LIMIT ?)',
                (cutoff, PURGE_CHUNK)).rowcount
        visits += deleted
        if deleted < PURGE_CHUNK:
            break
    with database.atomic():
        AuditLog.record("retention", "purge", None, visits=visits, leads=len(stale), retention_days=retention_days)
    return {"visits": visits, "leads": len(stale)}


def forget_just_connect(session_seconds: int, now: datetime.datetime | None = None) -> dict[str, int]:
    """Just connect (setting `just_connect`) keeps a device only while the gateway lets it online.
    Once its authorization has ended, the authorization goes; the device row goes with it when
    nothing else holds it (no person, no visit, no run in progress, no live session), else it loses
    its last address; the audit line of the acceptance (the proof of the terms shown) loses its IP."""
    now = now or utcnow()
    with database.atomic():
        ended = list(Authorization.select(Authorization.id, Authorization.device).where(
            (Authorization.method == "just_connect") & Authorization.lead.is_null()
            & ((Authorization.expires_at <= now) | Authorization.revoked_at.is_null(False))))
        ids = {a.device_id for a in ended}
        Authorization.delete().where(Authorization.id.in_([a.id for a in ended])).execute()
        held = Device.select(Device.id).where(
            Device.id.in_(ids) & (Device.lead.is_null(False)
                                  | fn.EXISTS(Visit.select(Visit.id).where(Visit.device == Device.id))
                                  | fn.EXISTS(OpenRun.select(OpenRun.source).where(OpenRun.device == Device.id))
                                  | fn.EXISTS(Authorization.select(Authorization.id).where(Authorization.device == Device.id))))
        kept = {d.id for d in held}
        devices = Device.delete().where(Device.id.in_(ids - kept)).execute() if ids - kept else 0
        if kept:
            Device.update(last_ip=None).where(Device.id.in_(kept) & Device.lead.is_null()).execute()
        since = now - datetime.timedelta(seconds=session_seconds)
        lines = AuditEntry.update(ip=None).where((AuditEntry.action == "just_connect") & AuditEntry.ip.is_null(False)
                                                 & (AuditEntry.at <= since)).execute()
    return {"authorizations": len(ended), "devices": devices, "audit_ips": lines}


def purge_export_log(retention_days: int, now: datetime.datetime | None = None) -> int:
    """Delete export-log entries (and the hashed people in them) older than `export_log_retention_days`;
    returns how many exports went. An entry is the controller's evidence of what went where under
    which consent, and what removal lists are made from, so it is kept for the limitation period of
    a claim (3 years by default, see portal/config.py), then deleted like any other record."""
    cutoff = (now or utcnow()) - datetime.timedelta(days=retention_days)
    with database.atomic():
        old = ExportLog.select(ExportLog.id).where(ExportLog.created_at < cutoff)
        ExportMember.delete().where(ExportMember.export.in_(old)).execute()
        deleted = ExportLog.delete().where(ExportLog.created_at < cutoff).execute()
        if deleted:
            AuditLog.record("retention", "export_log_purged", None, exports=deleted, retention_days=retention_days)
    return deleted

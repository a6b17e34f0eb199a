"""The box's health for its owner: a red banner on every panel page when something needs the
owner (a full card, sign-ins waiting in the journal, a restored database, a clock behind), and
the whole report on one page (the same report `footfall health` prints)."""
from __future__ import annotations

import shutil
from pathlib import Path

from flask import render_template
from flask_login import current_user

from portal.config import database_path
from portal.health_report import journal_waiting, report
from portal.panel import bp, requires, runtime
from portal.recovery import last_recovery


def alerts() -> list[str]:
    """Cheap checks for every page (no database query): translation keys with their values."""
    settings = runtime().settings
    found = []
    try:
        free = shutil.disk_usage(database_path(settings).parent).free
    except OSError:
        free = 0
    if free < settings.disk_floor_mb * 1024 * 1024:
        found.append(("alert_disk_full", {"free": free // 2**20, "floor": settings.disk_floor_mb}))
    waiting = journal_waiting(Path(settings.data_dir))
    if waiting:
        found.append(("alert_journal", {"count": waiting}))
    recovery = last_recovery(database_path(settings))
    if recovery is not None:
        found.append(("alert_restored", {"at": recovery.at, "lost_since": recovery.lost_since or "-"}))
    return found


@bp.context_processor
def health_banner():
    if not current_user or not getattr(current_user, "is_authenticated", False):
        return {}
    return {"health_alerts": alerts()}


@bp.get("/health")
@requires("owner")
def health():
    return render_template("panel/health.html", report=report(runtime().settings))

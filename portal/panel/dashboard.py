"""The dashboard: the store's figures, from a snapshot refreshed in the background."""
from __future__ import annotations

from flask import render_template
from flask_login import login_required

from portal.panel import bp, runtime


@bp.get("/")
@login_required
def dashboard():
    rt = runtime()
    figures, age = rt.dashboard.get()
    return render_template("panel/dashboard.html", d=figures, age=int(age),
                           gap=int(rt.settings.visit_gap_minutes))

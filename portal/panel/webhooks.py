"""Webhooks to the store's CRM (owner only): endpoints, their secret shown once, dead letters."""
from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user

from portal.core.events import WEBHOOK_TYPES
from portal.models import AuditLog
from portal.panel import bp, requires, runtime
from portal.webhooks import queue


def _page(created: queue.Created | None = None, error: str | None = None, form: dict | None = None, status: int = 200):
    endpoints = list(queue.WebhookEndpoint.select().order_by(queue.WebhookEndpoint.id))
    return render_template("panel/webhooks.html", endpoints=endpoints, types=WEBHOOK_TYPES, created=created,
                           error=error, form=form or {}, dead=queue.dead_letters(), counts=queue.counts()), status


@bp.route("/webhooks", methods=["GET", "POST"])
@requires("owner")
def webhooks():
    if request.method == "GET":
        return _page()
    url, types = request.form.get("url", "")[:2100], request.form.getlist("events")[:20]
    rt = runtime()
    try:
        created = queue.add_endpoint(url, types, rt.vault, current_user.actor, rt.settings.webhook_allow_loopback)
    except queue.WebhookError as exc:
        return _page(error=exc.args[0], form={"url": url, "events": types}, status=422)
    AuditLog.record(current_user.actor, "webhook_added", created.endpoint.uid, request.remote_addr,
                    url=created.endpoint.url, events=created.endpoint.types)
    return _page(created=created)  # the secret, this once


def _endpoint(uid: str) -> queue.WebhookEndpoint:
    return queue.WebhookEndpoint.get_or_none(queue.WebhookEndpoint.uid == uid) or abort(404)


@bp.post("/webhooks/<uid>/enabled")
@requires("owner")
def webhook_enabled(uid: str):
    endpoint = _endpoint(uid)
    value = request.form.get("enabled")
    if value not in ("yes", "no"):
        abort(400)
    queue.set_enabled(endpoint, value == "yes")
    AuditLog.record(current_user.actor, "webhook_" + ("enabled" if value == "yes" else "disabled"), endpoint.uid,
                    request.remote_addr)
    return redirect(url_for("panel.webhooks"))


@bp.post("/webhooks/<uid>/remove")
@requires("owner")
def webhook_remove(uid: str):
    endpoint = _endpoint(uid)
    queue.remove_endpoint(endpoint)
    AuditLog.record(current_user.actor, "webhook_removed", uid, request.remote_addr, url=endpoint.url)
    return redirect(url_for("panel.webhooks"))


@bp.post("/webhooks/dead/<int:delivery_id>/send")
@requires("owner")
def webhook_send_again(delivery_id: int):
    """Back in the queue: the scheduler sends it on its next run (never this web worker)."""
    if not queue.send_again(delivery_id):
        abort(404)
    AuditLog.record(current_user.actor, "webhook_send_again", str(delivery_id), request.remote_addr)
    return redirect(url_for("panel.webhooks"))

"""The store's settings (owner): editable settings, policy texts and the logo, applied at once."""
from __future__ import annotations

import dataclasses

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user

from portal import consent, store_settings
from portal.models import AuditLog
from portal.core.numbers import is_ascii_digits
from portal.panel import bp, requires, runtime
from portal.panel.auth import configure_throttle
from portal.policy_texts import DOCUMENTS


@bp.route("/settings", methods=["GET", "POST"])
@requires("owner")
def settings_page():
    rt = runtime()
    error, saved = None, False
    if request.method == "POST":
        form = request.form
        changes = {name: form[name] for name in store_settings.EDITABLE if name in form and form[name].strip()}
        if "session_minutes" in form and form["session_minutes"].strip():
            minutes = form["session_minutes"].strip()
            changes["session_seconds"] = str(int(minutes) * 60) if is_ascii_digits(minutes, 6) else "x"
        try:
            store_settings.save(changes, current_user.actor)
            for document in DOCUMENTS:
                for language in consent.LANGUAGES:
                    text = form.get(f"text-{document}-{language}")
                    if text is not None and text.strip():
                        _publish(document, language, text)
        except store_settings.SettingError as exc:
            error = exc.field
        else:
            saved = True
            _reload(rt)
    return render_template("panel/settings.html", s=runtime().settings, error=error, saved=saved,
                           texts={(d, lang): consent.current(d, lang) for d in DOCUMENTS for lang in consent.LANGUAGES},
                           documents=DOCUMENTS, languages=consent.LANGUAGES), 422 if error else 200


def _publish(document: str, language: str, text: str) -> None:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if len(text) > 20000:
        raise store_settings.SettingError(f"text-{document}-{language}")
    before = consent.current(document, language)
    version = consent.publish(document, language, text)
    if before is None or version.id != before.id:
        AuditLog.record(current_user.actor, "policy_published", f"{document}/{language}", request.remote_addr,
                        sha256=version.sha256)


@bp.post("/settings/logo")
@requires("owner")
def settings_logo():
    upload = request.files.get("logo")
    try:
        store_settings.save_logo(upload.read(store_settings.LOGO_MAX + 1) if upload else b"",
                                 runtime().settings.data_dir, current_user.actor)
    except store_settings.SettingError:
        return render_template("panel/settings.html", s=runtime().settings, error="logo", saved=False,
                               texts={(d, lang): consent.current(d, lang) for d in DOCUMENTS for lang in consent.LANGUAGES},
                               documents=DOCUMENTS, languages=consent.LANGUAGES), 422
    return redirect(url_for("panel.settings_page"))


def _reload(rt) -> None:
    """Apply saved settings to this running portal (other processes read them at start)."""
    settings = store_settings.apply(rt.settings)
    rt.visitors.settings = rt.visitors.contacts.settings = settings
    current_app.extensions["footfall"] = dataclasses.replace(rt, settings=settings)
    configure_throttle(current_app.extensions["footfall"])

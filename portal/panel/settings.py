"""The store's settings (owner): editable settings, policy texts and the logo, applied at once.

Texts are templates (portal/policy_texts.py): the owner edits the template and marks each change
material (people are asked again) or editorial (their consents stay valid). A change that re-renders
texts (a new store name, controller, contact) and any material change go through a confirm step
that shows what will be published and how many people it concerns; nothing is saved before it.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user

from portal import consent, store_settings
from portal.db import database
from portal.models import AuditLog
from portal.core.numbers import is_ascii_digits
from portal.panel import bp, requires, runtime
from portal.panel.auth import configure_throttle
from portal.panel.wording import text_label
from portal.policy_texts import (CONTACT_SETTINGS, DOCUMENTS, IDENTITY_SETTINGS, PLACEHOLDERS, TextError,
                                 is_example_contact, placeholders, render)

KINDS = ("editorial", "material")
TEXT_MAX = 20000


@dataclass(frozen=True)
class TextEdit:
    """One text the owner changed in the form."""
    document: str
    language: str
    template: str
    material: bool


class Refused(ValueError):
    """A form that cannot be saved: `message` is the panel string key, `values` fill it."""

    def __init__(self, message: str, **values):
        super().__init__(message)
        self.message, self.values = message, values


def _texts() -> dict:
    return {(d, lang): consent.current(d, lang) for d in DOCUMENTS for lang in consent.LANGUAGES}


def _page(error: Refused | None = None, saved: bool = False, status: int = 200):
    texts = _texts()
    return render_template("panel/settings.html", s=runtime().settings, error=error, saved=saved, texts=texts,
                           templates={key: consent.template_of(v) for key, v in texts.items() if v is not None},
                           asked=consent.asked_again_all(), kinds=KINDS,
                           placeholders=PLACEHOLDERS, documents=DOCUMENTS, languages=consent.LANGUAGES), status


def _normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()


def _setting_changes(form) -> dict:
    changes = {name: form[name] for name in store_settings.EDITABLE
               if name in form and (form[name].strip() or name in store_settings.CLEARABLE)}
    if "session_minutes" in form and form["session_minutes"].strip():
        minutes = form["session_minutes"].strip()
        changes["session_seconds"] = str(int(minutes) * 60) if is_ascii_digits(minutes, 6) else "x"
    try:
        cleaned = store_settings.clean_all(changes)
    except store_settings.SettingError as exc:
        raise Refused("err_setting", field=exc.field) from None
    settings = runtime().settings
    after = dataclasses.replace(settings, **cleaned)
    if after.dsr_processor_days < after.dsr_deadline_days:  # the two periods are checked together
        raise Refused("err_setting", field="dsr_processor_days")
    for name in CONTACT_SETTINGS:  # an example address never replaces a contact (the demo's default may stay)
        if name in cleaned and cleaned[name] != getattr(settings, name) and is_example_contact(cleaned[name]):
            raise Refused("err_example_contact", field=name)
    return changes


def _text_edits(form, settings) -> list[TextEdit]:
    """The texts whose template the owner changed, checked against the settings they will be rendered with."""
    edits = []
    for document in DOCUMENTS:
        for language in consent.LANGUAGES:
            key = f"{document}-{language}"
            raw = form.get(f"text-{key}")
            if raw is None or not raw.strip():
                continue
            template = _normalize(raw)
            latest = consent.current(document, language)
            if latest is not None and template == consent.template_of(latest):
                continue
            if len(template) > TEXT_MAX:
                raise Refused("err_setting", field=f"text-{key}")
            kind = form.get(f"kind-{key}", "")
            if kind not in KINDS:
                raise Refused("err_text_kind", text=text_label(document, language))
            edits.append(TextEdit(document, language, template, kind == "material"))
    for edit in edits:  # every check before anything is stored: a refused text changes nothing
        try:
            consent.check(edit.document, edit.language, render(edit.template, placeholders(settings, edit.language)),
                          edit.template)
        except TextError as exc:
            raise Refused(f"err_text_{exc.code}", text=text_label(edit.document, edit.language), detail=exc.detail) from None
    return edits


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    """Line by line: ("-", old line), ("+", new line), (" ", same)."""
    out = []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line[:1] in "-+ ":
            out.append((line[:1], line[2:]))
    return out


@bp.route("/settings", methods=["GET", "POST"])
@requires("owner")
def settings_page():
    if request.method == "GET":
        return _page()
    rt = runtime()
    form = request.form
    try:
        changes = _setting_changes(form)
        new_settings = dataclasses.replace(rt.settings, **store_settings.clean_all(changes))
        edits = _text_edits(form, new_settings)
    except Refused as exc:
        return _page(exc, status=422)
    edited = {(e.document, e.language) for e in edits}
    rerenders = [r for r in consent.rerenders(new_settings) if (r.document, r.language) not in edited]
    # A new name or address is editorial; a changed retention (what the texts promise) is the owner's call.
    promises = _changed_promises(rt.settings, new_settings) if rerenders else []
    rerender_kind = form.get("rerender_kind", "") if promises else "editorial"
    material = [e for e in edits if e.material]
    asked = consent.asked_again_all() if (rerenders or material) else {}
    if (rerenders or material) and (form.get("confirm") != "1" or rerender_kind not in KINDS):
        error = Refused("err_rerender_kind") if form.get("confirm") == "1" else None
        return render_template("panel/settings_confirm.html", rerenders=[(r, _diff(r.before, r.after), asked[(r.document, r.language)])
                                                                          for r in rerenders],
                               material=[(e, asked[(e.document, e.language)]) for e in material], promises=promises,
                               kinds=KINDS, error=error,
                               fields=[(k, v) for k, v in form.items(multi=True)
                                       if k not in ("csrf_token", "confirm", "rerender_kind")]), 422 if error else 200
    with database.atomic():
        store_settings.save(changes, current_user.actor)
        for edit in edits:
            before = consent.current(edit.document, edit.language)
            version = consent.publish_template(edit.document, edit.language, edit.template, new_settings, edit.material)
            _audit(before, version, "material" if edit.material else "editorial")
        for r in rerenders:
            before = consent.current(r.document, r.language)
            version = consent.publish(r.document, r.language, r.after, template=before.template,
                                      material=rerender_kind == "material")
            _audit(before, version, rerender_kind, reason="settings")
    reload_settings(rt)
    return _page(saved=True)


def _changed_promises(old, new) -> list[str]:
    """The placeholders whose value the new settings change beyond names and addresses (the
    retention, for one): the old settings with the new names are compared with the new."""
    renamed = dataclasses.replace(old, **{name: getattr(new, name) for name in IDENTITY_SETTINGS})
    return sorted({name for language in consent.LANGUAGES for name, value in placeholders(new, language).items()
                   if placeholders(renamed, language)[name] != value})


def _audit(before, version, kind: str, **detail) -> None:
    if before is None or version.id != before.id:
        AuditLog.record(current_user.actor, "policy_published", f"{version.document}/{version.language}",
                        request.remote_addr, sha256=version.sha256, change=kind, **detail)


@bp.post("/settings/logo")
@requires("owner")
def settings_logo():
    upload = request.files.get("logo")
    try:
        store_settings.save_logo(upload.read(store_settings.LOGO_MAX + 1) if upload else b"",
                                 runtime().settings.data_dir, current_user.actor)
    except store_settings.SettingError:
        return _page(Refused("err_logo"), status=422)
    return redirect(url_for("panel.settings_page"))


def reload_settings(rt) -> None:
    """Apply saved settings to this running portal (other processes read them at start)."""
    settings = store_settings.apply(rt.settings)
    rt.visitors.settings = rt.visitors.contacts.settings = settings
    current_app.extensions["footfall"] = dataclasses.replace(rt, settings=settings)
    configure_throttle(current_app.extensions["footfall"])

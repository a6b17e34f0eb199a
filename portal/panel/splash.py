"""The sign-in page as the owner sets it (issue 16): headline, subtitle, picture, offer, which
contact field comes first, and the store's own page offered once a visitor is online; with a
preview of the real page at phone size.

The texts are panel-editable settings (portal/store_settings.py: checked, then stored; a bad field
changes nothing). The picture is a file beside the logo, replaced atomically and served at
/picture. The preview is the visitors' own template rendered by their own view function, in an
iframe: only this page may frame it (frame-src and frame-ancestors 'self'), and the iframe is
sandboxed, so its form can post nothing.
"""
from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal import store_settings
from portal.config import SPLASH_TEXT_MAX
from portal.core.purposes import LANGUAGES
from portal.errors import CSP
from portal.panel import bp, requires, runtime
from portal.panel.settings import reload_settings

TEXT_FIELDS = tuple(SPLASH_TEXT_MAX)  # headline, subtitle, offer, link_label: one field per language each
FIELDS = (*(f"splash_{name}_{lang}" for name in TEXT_FIELDS for lang in LANGUAGES), "splash_link", "splash_contact_first")
PREVIEW_WIDTH, PREVIEW_HEIGHT = 390, 844
EDITOR_CSP = CSP + "; frame-src 'self'"
PREVIEW_CSP = CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")


def _page(error: str | None = None, values: dict | None = None, saved: bool = False, status: int = 200):
    settings = runtime().settings
    current = {name: getattr(settings, name) for name in FIELDS}
    return render_template("panel/splash.html", values={**current, **(values or {})}, error=error, saved=saved,
                           languages=LANGUAGES, text_fields=TEXT_FIELDS, limits=SPLASH_TEXT_MAX, width=PREVIEW_WIDTH, height=PREVIEW_HEIGHT,
                           has_picture=store_settings.picture_path(settings.data_dir) is not None,
                           picture_max_kb=store_settings.PICTURE_MAX // 1024), status, {"Content-Security-Policy": EDITOR_CSP}


@bp.route("/splash", methods=["GET", "POST"])
@requires("owner")
def splash_editor():
    if request.method == "GET":
        return _page(saved=request.args.get("saved") == "1")
    changes = {name: request.form[name] for name in FIELDS if name in request.form}
    try:
        store_settings.save(changes, current_user.actor)  # every field checked before any is stored
    except store_settings.SettingError as exc:
        return _page(error=exc.field, values=changes, status=422)
    reload_settings(runtime())
    return redirect(url_for("panel.splash_editor", saved=1), code=303)


@bp.post("/splash/picture")
@requires("owner")
def splash_picture():
    upload = request.files.get("picture")
    data = upload.read(store_settings.PICTURE_MAX + 1) if upload else b""
    try:
        store_settings.save_picture(data, runtime().settings.data_dir, current_user.actor)
    except store_settings.SettingError as exc:
        return _page(error=exc.field, status=422)
    return redirect(url_for("panel.splash_editor", saved=1), code=303)


@bp.post("/splash/picture/remove")
@requires("owner")
def splash_picture_remove():
    store_settings.remove_picture(runtime().settings.data_dir, current_user.actor)
    return redirect(url_for("panel.splash_editor", saved=1), code=303)


@bp.get("/splash/preview/<lang>")
@requires("owner")
def splash_preview(lang: str):
    """The sign-in page exactly as visitors get it (not counted in the funnel), for the editor's iframe."""
    from portal.captive.views import render_splash  # the visitors' own view function
    from portal.visitors import SignInForm
    if lang not in LANGUAGES:
        abort(404)
    g.lang = lang
    page, status = render_splash(SignInForm(language=lang), {}, None, preview=True)
    return page, status, {"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN",
                          "Cache-Control": "no-store"}

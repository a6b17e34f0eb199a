"""The entrance sign (issue 15/16): a printable notice, in both languages, that the store's WiFi
counts devices, with the address (and a QR code) of the privacy notice. Owners and managers."""
from __future__ import annotations

from flask import render_template, request

from portal.core.purposes import LANGUAGES
from portal.i18n import translate
from portal.panel import bp, requires, runtime

SIZES = {"a5": "A5", "a4": "A4"}


def notice_url(settings) -> str:
    return settings.portal_url.rstrip("/") + "/privacy"


def qr_data_uri(url: str) -> str:
    """The QR code of `url` as an SVG data URI (the panel's CSP allows data: images, no script)."""
    import segno  # loaded by the pages that draw a code only

    return segno.make(url, error="m").svg_data_uri(scale=6, border=2)


@bp.get("/sign")
@requires("owner", "manager")
def entrance_sign():
    settings = runtime().settings
    size = request.args.get("size", "a5")
    if size not in SIZES:
        size = "a5"  # an unknown paper falls back to the default, as the form offers only these
    url = notice_url(settings)
    values = {"store": settings.store_name, "controller": settings.controller_name or settings.store_name,
              "dpo": settings.dpo_contact or settings.privacy_contact}
    lines = {lang: {key: translate(key, lang).format(**values)
                    for key in ("sign_title", "sign_counts", "sign_air", "sign_choice", "sign_more", "sign_controller")}
             for lang in LANGUAGES}
    return render_template("panel/sign.html", size=size, page=SIZES[size], sizes=SIZES, url=url, qr=qr_data_uri(url),
                           lines=lines, languages=LANGUAGES, air=bool(settings.probe_interface))

"""App-wide request guards, run before any view of any blueprint: body limits, then broken
encodings (before CSRF parses the form), then characters and lengths no field accepts.

Every guard refuses with BadParameters (portal/errors.py answers it with a 400 page) or lets
werkzeug's own limits answer 413; none changes anything. `StrictInt` is the `<int:...>` URL
converter of both apps (the portal and the central store).
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from flask import request
from werkzeug.routing import BaseConverter

PARAM_MAX = 2048
# Control characters (CR and LF included) and U+FFFD, which is what undecodable bytes become.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ufffd]")
# The panel's forms carry multi-line texts (the policies): tabs and line breaks are allowed there.
_FORBIDDEN_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
PANEL_TEXT_MAX = 20000
LOGO_UPLOAD = "/panel/settings/logo"
PICTURE_UPLOAD = "/panel/splash/picture"  # the sign-in page's picture (portal/panel/splash.py)
# The settings form carries every policy text in every language (a privacy notice alone is several
# KB, and percent-encoded Vietnamese takes up to 9 bytes a letter): max_body_bytes refused it with a 413.
SETTINGS_FORM = "/panel/settings"
SETTINGS_FORM_MAX = 1024 * 1024


class BadParameters(Exception):
    """A parameter holds characters no field accepts, or is too long."""


def body_limits() -> None:
    """The logo and picture uploads and the settings form may be larger than any other request (before anything reads the body)."""
    if request.path == LOGO_UPLOAD:
        request.max_content_length = 256 * 1024
        request.max_form_memory_size = 256 * 1024
    elif request.path == PICTURE_UPLOAD:
        request.max_content_length = 384 * 1024
        request.max_form_memory_size = 384 * 1024
    elif request.path == SETTINGS_FORM:
        request.max_content_length = SETTINGS_FORM_MAX
        request.max_form_memory_size = SETTINGS_FORM_MAX


def _undecodable(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def check_encoding() -> None:
    """Before the form is parsed: werkzeug keeps undecodable escapes (%FF) as literal text, so
    broken UTF-8 would pass as a plausible value. Refuse it from the raw query and body instead."""
    if _undecodable(request.environ.get("QUERY_STRING", "").encode("latin-1")):
        raise BadParameters()
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        if _undecodable(request.get_data(cache=True)):  # the form is parsed from this cached copy
            raise BadParameters()


def check_parameters() -> None:
    """Reject, before any view runs, parameters no honest browser sends (CRLF, NUL, broken UTF-8)."""
    panel_form = request.path.startswith("/panel/") and request.method == "POST"
    for source, multiline in ((request.args, False), (request.form, panel_form)):
        forbidden, limit = (_FORBIDDEN_MULTILINE, PANEL_TEXT_MAX) if multiline else (_FORBIDDEN, PARAM_MAX)
        for key, values in source.lists():
            if len(key) > 64 or _FORBIDDEN.search(key):
                raise BadParameters()
            for text in values:
                if len(text) > limit or forbidden.search(text):
                    raise BadParameters()


class StrictInt(BaseConverter):
    """`<int:...>` in URLs: werkzeug's own accepts fullwidth digits and unbounded values (which
    overflow the database: a 500); this one matches 1-18 ASCII digits, anything else is a 404."""

    regex = r"[0-9]{1,18}"
    part_isolating = True

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))

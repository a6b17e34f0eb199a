"""One error page for every failure, in the visitor's language; security headers on every answer."""
from __future__ import annotations

import logging

from flask import Flask, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError
from peewee import OperationalError
from werkzeug.exceptions import HTTPException

from portal.db import DatabaseBusy, database, is_busy, is_storage_fault
from portal.guards import BadParameters
from portal.i18n import negotiate

logger = logging.getLogger(__name__)

_MESSAGES = {400: "err_bad_request", 404: "err_not_found", 405: "err_method", 413: "err_too_large",
             414: "err_too_large", 431: "err_too_large", 429: "err_rate_limited"}

BUSY_RETRY_AFTER = 3

# No scripts at all; styles are inline; forms post only to the portal itself.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


def error_page(message: str, code: int):
    if not hasattr(g, "lang"):
        try:
            accept = request.accept_languages
        except Exception:  # a header so broken werkzeug cannot parse it: fall back to the default
            accept = None
        g.lang = negotiate(None, None, accept, current_app.extensions["footfall"].settings.default_language)
    return render_template("captive/error.html", message=message, code=code), code


def message_for(exc: Exception) -> tuple[str, int]:
    """The message key and status of a refused request (the guests' page and the panel's say the same)."""
    if isinstance(exc, CSRFError):
        return "err_csrf", 400
    if isinstance(exc, BadParameters):
        return "err_bad_characters", 400
    code = getattr(exc, "code", None) or 500
    return _MESSAGES.get(code, "err_bad_request" if code < 500 else "err_server"), code


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    @app.errorhandler(BadParameters)
    @app.errorhandler(HTTPException)
    def http_error(exc: Exception):
        return error_page(*message_for(exc))

    @app.errorhandler(OperationalError)
    def database_error(exc: OperationalError):
        if is_busy(exc):
            # Nothing was written (the transaction never began, or rolled back): the visitor may
            # simply send the form again. Counted for the health view; one line, no traceback.
            if not isinstance(exc, DatabaseBusy):  # an autocommit write that timed out
                database.stats.gave_up()
            logger.warning("database busy on %s %s: answered 503", request.method, request.path)
            page, code = error_page("err_busy", 503)
            return page, code, {"Retry-After": str(BUSY_RETRY_AFTER)}
        if is_storage_fault(exc):
            logger.error("storage fault on %s %s: %s", request.method, request.path, exc)
            page, code = error_page("err_storage", 503)
            return page, code, {"Retry-After": "60"}
        return unexpected(exc)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_page("err_server", 500)

    @app.after_request
    def security_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        # Never to other sites; to our own pages, yes: over HTTPS flask-wtf refuses a form POST
        # whose Referer is missing or foreign (WTF_CSRF_SSL_STRICT), so "no-referrer" broke sign-in.
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "text/html":
            h.setdefault("Cache-Control", "no-store")
        return response

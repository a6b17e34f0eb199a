"""Interface texts and formats in the visitor's or the manager's language, and the choice between them.

The texts live in gettext catalogs, portal/translations/<lang>/LC_MESSAGES/messages.po, one per
language, with short keys as msgids (portal/i18n_catalogs.py: compiling, checking, adding keys).
Dates and numbers are formatted by Babel for the page's language. Policy texts (what visitors
agree to) are versioned in the database instead, see consent.py.
"""
from __future__ import annotations

import datetime
import decimal

from babel import dates, numbers

from portal import i18n_catalogs
from portal.core.purposes import LANGUAGES

__all__ = ["LANGUAGES", "translate", "negotiate", "has_key", "format_clock", "format_date", "format_datetime", "format_number",
           "format_percent", "init_app"]

# Dates the way each language writes them: dd/mm/yyyy in Vietnamese; an unambiguous month name in English.
DATE_FORMATS = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}
DATETIME_FORMATS = {"vi": "HH:mm dd/MM/yyyy", "en": "d MMM yyyy, HH:mm"}
SHORT_DAY_FORMATS = {"vi": "dd/MM", "en": "d MMM"}
# A day in figures, the day first, for a guest on a phone ("25/11/2026"); another language: its locale's short date.
NUMERIC_DATE_FORMATS = {"vi": "dd/MM/yyyy", "en": "dd/MM/yyyy"}


def translate(key: str, language: str) -> str:
    """The text of `key` in `language` (then English, then the key itself: a test keeps that from showing)."""
    return i18n_catalogs.translations(language or i18n_catalogs.SOURCE_LANGUAGE).gettext(key)


def has_key(key: str) -> bool:
    return key in i18n_catalogs.known_keys()


def negotiate(requested: str | None, cookie: str | None, accept_languages, default: str) -> str:
    """An explicit choice, then the remembered one, then the browser's, then the store's default."""
    for candidate in (requested, cookie):
        if candidate in LANGUAGES:
            return candidate
    best = accept_languages.best_match(LANGUAGES) if accept_languages else None
    return best or default


def _local(value: datetime.datetime, zone: datetime.tzinfo | None = None) -> datetime.datetime:
    """A naive UTC timestamp (how the database keeps them) in `zone` (None: the machine's)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(zone)


def format_datetime(value: datetime.datetime | None, language: str, zone: datetime.tzinfo | None = None) -> str:
    """A time in the store's zone (`zone`; the machine's when None), as `language` writes it."""
    if value is None:
        return ""
    try:
        return dates.format_datetime(_local(value, zone), DATETIME_FORMATS.get(language, "short"), locale=language)
    except (OverflowError, ValueError):  # the edge of the calendar (year 1 or 9999): shown as stored, in UTC
        return value.strftime("%Y-%m-%d %H:%M UTC")


def format_clock(value: datetime.datetime, language: str) -> tuple[str, str]:
    """An aware local time as ("06:18", "25/11/2026") in `language` (the guest's online page)."""
    return (dates.format_time(value, "HH:mm", locale=language),
            dates.format_date(value.date(), NUMERIC_DATE_FORMATS.get(language, "short"), locale=language))


def format_date(value: datetime.date | datetime.datetime | None, language: str, short: bool = False,
                zone: datetime.tzinfo | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        value = _local(value, zone).date()
    table = SHORT_DAY_FORMATS if short else DATE_FORMATS
    return dates.format_date(value, table.get(language, "short"), locale=language)


def format_number(value: float | int | None, language: str) -> str:
    """A number in the language's digits grouping; anything else (None, a template's undefined) as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return "" if value is None else str(value)
    return numbers.format_decimal(value, locale=language)


def format_percent(value: float | None, language: str) -> str:
    """`value` in percent (45.5 -> "45,5 %" or "45.5%")."""
    if value is None:
        return ""
    return numbers.format_percent(value / 100, format="#,##0.#%", locale=language)


def init_app(app) -> None:
    """Flask-Babel over the compiled catalogs: gettext in templates and Babel formats in the page's language."""
    from flask import g
    from flask_babel import Babel

    def locale() -> str:
        return getattr(g, "lang", None) or app.extensions["footfall"].settings.default_language

    Babel(app, locale_selector=locale, default_domain=i18n_catalogs.DOMAIN,
          default_translation_directories=str(i18n_catalogs.compiled_dir()))

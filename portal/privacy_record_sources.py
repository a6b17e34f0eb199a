"""What the record of processing (portal/privacy_record.py) is drawn from: the texts and settings in
force and the webhook endpoints, read only from this appliance's database (the command line), or
through the portal's own connection (the panel), or the defaults a new portal publishes."""
from __future__ import annotations

import sqlite3
from typing import NamedTuple

from portal.config import Settings, database_path
from portal.core.purposes import LANGUAGES
from portal.policy_texts import DEFAULTS, DOCUMENTS, placeholders, render as render_text

Texts = dict[tuple[str, str], str]


class Endpoint(NamedTuple):
    """A webhook endpoint the owner added: a recipient of the record."""
    url: str
    types: tuple[str, ...]
    enabled: bool


def default_texts(settings: Settings) -> Texts:
    """The texts a fresh portal publishes, rendered from the settings as portal.consent does."""
    return {(doc, lang): render_text(DEFAULTS[doc][lang], placeholders(settings, lang)) for doc in DOCUMENTS for lang in LANGUAGES}


def _read_only(settings: Settings, sql: str) -> list[tuple] | None:
    """Rows of `sql` from this appliance's database opened read only, or None without one."""
    path = database_path(settings)
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def published_texts(settings: Settings) -> Texts | None:
    """The versions in force in this appliance's database (read only), or None without one."""
    rows = _read_only(settings, "SELECT document, language, text FROM policy_version ORDER BY id")
    if rows is None:
        return None
    texts = {(doc, lang): text for doc, lang, text in rows}  # ordered by id: the last version wins
    return texts or None


def settings_in_force(settings: Settings) -> Settings:
    """The settings with the owner's panel edits on top (portal/store_settings.py apply), read only
    from this appliance's database; the settings as given without one."""
    import dataclasses
    import json

    from portal.store_settings import EDITABLE

    rows = _read_only(settings, "SELECT key, value FROM store_setting")
    if rows is None:
        return settings
    try:
        values = {key: json.loads(value) for key, value in rows if key in EDITABLE}
    except ValueError:
        return settings
    return dataclasses.replace(settings, **values) if values else settings


def published_endpoints(settings: Settings) -> list[Endpoint] | None:
    """The webhook endpoints in this appliance's database (read only), or None without one."""
    rows = _read_only(settings, "SELECT url, events, enabled FROM webhook_endpoint ORDER BY id")
    if rows is None:
        return None
    return [Endpoint(url, tuple(t for t in (events or "").split(",") if t), bool(enabled)) for url, events, enabled in rows]


def endpoints_in_force() -> list[Endpoint]:
    """The webhook endpoints, read through the portal's own database connection (the panel)."""
    from portal.webhooks.queue import WebhookEndpoint

    return [Endpoint(e.url, tuple(e.types), bool(e.enabled)) for e in WebhookEndpoint.select().order_by(WebhookEndpoint.id)]

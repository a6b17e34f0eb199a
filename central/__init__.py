"""Central store: the chain's leads, visits and segments on PostgreSQL (see docs/architecture.md).

Its own app factory; stateless, so any number of worker processes serve it behind one database.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from central import visits
from central.db import database, init_db
from central.models import ApiToken, Store, utcnow
from portal.config import Settings, central_key_path, load_settings
from portal.identity import Vault, load_or_create_keys
from portal.guards import StrictInt

logger = logging.getLogger(__name__)
SCOPES = ("people:read", "exports:read", "erase:write", "stores:read")


def create_app(config: Settings | dict | None = None) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(**dict(config or {}))
    keys = load_or_create_keys(central_key_path(settings))
    init_db(settings.central_dsn, settings.central_schema)
    with database.connection_context(), database.atomic():  # this month's visit partitions and the next ones
        visits.ensure(database.cursor(), utcnow(), settings.central_retention_days)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.central_max_batch_bytes, JSON_SORT_KEYS=False)
    app.extensions["central"] = {"settings": settings, "vault": Vault(keys), "keys": keys}

    @app.before_request
    def connect():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def disconnect(exc):
        if not database.is_closed():
            database.close()

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal error"), 500

    # <int:...> in every route: ASCII digits and bounded (werkzeug's own takes "１２" and 40 digits).
    app.url_map.converters["int"] = StrictInt
    from central import api, sync_api  # noqa: F401  (register routes)
    app.register_blueprint(sync_api.bp)
    app.register_blueprint(api.bp)
    return app


# -- administration (CLI) ------------------------------------------------------------------------

def add_store(store_id: str, name: str, vault: Vault) -> bytes:
    """Enroll a store; returns its signing key (shown once)."""
    key = secrets.token_bytes(32)
    Store.create(id=store_id, name=name, key_enc=vault.encrypt(base64.b64encode(key).decode(), "store.key"))
    return key


def add_token(name: str, scopes: list[str]) -> str:
    token = secrets.token_urlsafe(32)
    ApiToken.create(name=name, token_hash=hashlib.sha256(token.encode()).hexdigest(), scopes=" ".join(scopes))
    return token


def token_scopes(header: str) -> set[str] | None:
    if not header.startswith("Bearer ") or len(header) > 200:
        return None
    digest = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    token = ApiToken.get_or_none((ApiToken.token_hash == digest) & ApiToken.revoked_at.is_null())
    return set(token.scopes.split()) if token else None


def now() -> float:
    return time.time()


def ctx() -> dict[str, Any]:
    from flask import current_app
    return current_app.extensions["central"]


__all__ = ["create_app", "add_store", "add_token", "token_scopes", "SCOPES", "utcnow", "g"]

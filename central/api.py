"""The marketing team's read API: tokens with scopes; the OpenAPI document at /openapi.json."""
from __future__ import annotations

import datetime
import functools

from flask import Blueprint, Response, abort, jsonify, request, stream_with_context

from central import ctx, token_scopes
from central.db import database
from central.ingest import erase_person
from central.models import Person, Store, utcnow
from portal.core import audience
from portal.core.numbers import NumberError, parse_int
from portal.core.segment_rules import BUILTIN, LeadStat, member

bp = Blueprint("api", __name__)
PAGE_MAX = 500


def scope(name: str):
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            scopes = token_scopes(request.headers.get("Authorization", ""))
            if scopes is None:
                return jsonify(error="a valid bearer token is required"), 401
            if name not in scopes:
                return jsonify(error=f"this token lacks the {name} scope"), 403
            return view(*args, **kwargs)
        return inner
    return wrap


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        return parse_int(raw, low, high)
    except NumberError:
        abort(400, description=f"{name} must be a whole number from {low} to {high}")


def _consents(person_ids: list[int]) -> dict[int, dict[str, bool]]:
    out: dict[int, dict[str, bool]] = {}
    if person_ids:
        rows = database.execute_sql(
            "SELECT DISTINCT ON (person_id, purpose) person_id, purpose, granted FROM consent_event "
            "WHERE person_id = ANY(%s) ORDER BY person_id, purpose, at DESC, id DESC", (person_ids,))
        for person, purpose, granted in rows:
            out.setdefault(person, {})[purpose] = granted
    return out


def _person_json(p: Person, consents: dict[str, bool]) -> dict:
    vault = ctx()["vault"]
    return {"id": p.id, "email": vault.decrypt(p.email_enc, "person.email"), "phone": vault.decrypt(p.phone_enc, "person.phone"),
            "name": vault.decrypt(p.name_enc, "person.name"), "language": p.language, "consents": consents,
            "updated_at": p.updated_at.isoformat()}


@bp.get("/v1/people")
@scope("people:read")
def people():
    after = _int_arg("after", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, PAGE_MAX)
    rows = list(Person.select().where(Person.erased_at.is_null() & (Person.id > after)).order_by(Person.id).limit(limit))
    consents = _consents([p.id for p in rows])
    return jsonify(people=[_person_json(p, consents.get(p.id, {})) for p in rows],
                   next=rows[-1].id if len(rows) == limit else None)


@bp.get("/v1/people/<int:person_id>")
@scope("people:read")
def person(person_id: int):
    p = Person.get_or_none((Person.id == person_id) & Person.erased_at.is_null()) or abort(404, description="no such person")
    visits = database.execute_sql(
        'SELECT v.store_id, count(*), max(v."end") FROM visit v JOIN device d ON d.id = v.device_id '
        "WHERE d.person_id = %s AND NOT v.passerby GROUP BY v.store_id ORDER BY v.store_id", (person_id,)).fetchall()
    history = database.execute_sql("SELECT store_id, purpose, granted, at, policy_sha256 FROM consent_event "
                                   "WHERE person_id = %s ORDER BY at, id", (person_id,)).fetchall()
    body = _person_json(p, _consents([person_id]).get(person_id, {}))
    body["visits"] = [{"store": s, "visits": n, "last": last.isoformat()} for s, n, last in visits]
    body["consent_history"] = [{"store": s, "purpose": pu, "granted": gr, "at": at.isoformat(), "policy_sha256": h}
                               for s, pu, gr, at, h in history]
    return jsonify(body)


@bp.post("/v1/people/<int:person_id>/erase")
@scope("erase:write")
def erase(person_id: int):
    if not Person.select().where((Person.id == person_id) & Person.erased_at.is_null()).exists():
        abort(404, description="no such person")
    with database.atomic():
        told = erase_person(database.cursor(), person_id, origin=None)
    return jsonify(erased=person_id, stores_told=sorted(set(told)))


def chain_segments(now: datetime.datetime | None = None) -> dict[str, list[int]]:
    """The built-in segments over every store's visits: one person, all their stores."""
    now = now or utcnow()
    windows = sorted({rule.get("window_days", 90) for _, rule in BUILTIN.values()})
    sums = ", ".join(f"count(*) FILTER (WHERE v.start >= %s)" for _ in windows)
    stats: dict[int, LeadStat] = {}
    rows = database.execute_sql(
        f'SELECT d.person_id, p.language, min(v.start), max(v."end"), '
        f'avg(extract(epoch FROM v."end" - v.start)) / 60, count(*), {sums} FROM visit v JOIN device d ON d.id = v.device_id '
        "JOIN person p ON p.id = d.person_id AND p.erased_at IS NULL WHERE NOT v.passerby GROUP BY d.person_id, p.language",
        [now - datetime.timedelta(days=w) for w in windows])
    for person_id, language, first, last, dwell, visits, *counts in rows:
        stats[person_id] = LeadStat(person_id, language, dict(zip(windows, counts)), first, last, float(dwell or 0),
                                    visits=visits)
    for person_id, consents in _consents(list(stats)).items():
        stats[person_id].consents = frozenset(p for p, granted in consents.items() if granted)
    return {key: sorted(pid for pid, s in stats.items() if member(key, rule, s, now)) for key, (_, rule) in BUILTIN.items()}


@bp.get("/v1/segments")
@scope("people:read")
def segments():
    members = chain_segments()
    return jsonify(segments=[{"key": key, "name": BUILTIN[key][0], "members": len(ids)} for key, ids in members.items()])


@bp.get("/v1/segments/<key>/export/<kind>")
@scope("exports:read")
def export(key: str, kind: str):
    if key not in BUILTIN or kind not in audience.KINDS:
        abort(404, description="unknown segment or export kind")
    ids = chain_segments()[key]
    return Response(stream_with_context(audience.to_csv(_export_rows(ids, kind))), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="chain-{key}-{kind}.csv"'})


def _export_rows(ids: list[int], kind: str):
    """The appliance's consent rules: only the identifiers each person agreed to, hashed for ads."""
    vault = ctx()["vault"]
    consents = _consents(ids)
    yield list(audience.HEADERS[kind])
    for p in Person.select().where(Person.id.in_(ids) & Person.erased_at.is_null()).order_by(Person.id):
        granted = consents.get(p.id, {})
        email = vault.decrypt(p.email_enc, "person.email")
        phone = vault.decrypt(p.phone_enc, "person.phone")
        if kind == "csv":
            email = email if granted.get("marketing_email") else None
            phone = phone if granted.get("marketing_sms") else None
            if email or phone:
                yield [email or "", phone or "", vault.decrypt(p.name_enc, "person.name") or "", p.language]
        elif granted.get("ad_audiences") and (email or phone):
            yield audience.hashed_row(kind, email, phone)


@bp.get("/v1/stores")
@scope("stores:read")
def stores():
    return jsonify(stores=[{"id": s.id, "name": s.name, "events_applied": s.events_applied,
                            "last_seen_at": s.last_seen_at.isoformat() if s.last_seen_at else None}
                           for s in Store.select().order_by(Store.id)])


@bp.get("/openapi.json")
def openapi():
    from central.openapi import DOCUMENT
    return jsonify(DOCUMENT)

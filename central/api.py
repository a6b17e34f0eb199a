"""The marketing team's read API: tokens with scopes; the OpenAPI document at /openapi.json."""
from __future__ import annotations

import functools

from flask import Blueprint, Response, abort, jsonify, request, stream_with_context

from central import chainstat, ctx, token_scopes
from central.db import database
from central.models import Person, Store, utcnow
from central.people import CHANNELS, FOLLOWED, UNRESTRICTED, counted, erase_person, is_restricted
from portal.core import audience
from portal.config import transfers_assessed
from portal.core.purposes import MARKETING_PURPOSES
from portal.core.numbers import NumberError, parse_int
from portal.core.segment_rules import BUILTIN

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


def _channels(p: Person) -> frozenset[str]:
    """The contacts of a person some store proved (a one-time code); the only ones served or counted."""
    return frozenset(k for k in ("email", "phone")
                     if getattr(p, f"{k}_verified_at") is not None and getattr(p, f"{k}_enc") is not None)


# Scoped per field: each contact detail is served only with a consent that counts (double opt-in)
# for a use of it; the name with any marketing consent. A person with no consent that counts
# (beyond the WiFi terms, which are no consent to marketing) is not served at all.
FIELD_PURPOSES = {"email": ("marketing_email", "ad_audiences"), "phone": ("marketing_sms", "ad_audiences"),
                  "name": MARKETING_PURPOSES}


def _listed_sql() -> str:
    """SQL over a person `p`: some marketing purpose whose latest choice is a grant that counts (the
    WiFi terms, visit analytics and chain sharing are no consent to be served as a contact)."""
    ok = {"email": "(p.email_verified_at IS NOT NULL AND p.email_enc IS NOT NULL)",
          "phone": "(p.phone_verified_at IS NOT NULL AND p.phone_enc IS NOT NULL)"}
    cases = " ".join(f"WHEN '{purpose}' THEN {' OR '.join(ok[k] for k in kinds)}" for purpose, kinds in CHANNELS.items())
    return ("EXISTS (SELECT 1 FROM (SELECT DISTINCT ON (c.purpose) c.purpose, c.granted FROM consent_event c "
            f"WHERE c.person_id = p.id AND c.purpose IN ({', '.join(repr(m) for m in MARKETING_PURPOSES)}) "
            "ORDER BY c.purpose, c.at DESC, c.id DESC) l "
            f"WHERE l.granted AND CASE l.purpose {cases} ELSE TRUE END)")


LISTED = _listed_sql()


def _listed(counts: dict[str, bool]) -> bool:
    return any(granted for purpose, granted in counts.items() if purpose in MARKETING_PURPOSES)


def _person_json(p: Person, consents: dict[str, bool]) -> dict:
    vault = ctx()["vault"]
    channels = _channels(p)
    counts, waiting = counted(consents, channels)
    allowed = {field for field, purposes in FIELD_PURPOSES.items() if any(counts.get(pu) is True for pu in purposes)}
    email = "email" in channels and "email" in allowed
    phone = "phone" in channels and "phone" in allowed
    return {"id": p.id, "email": vault.decrypt(p.email_enc, "person.email") if email else None,
            "phone": vault.decrypt(p.phone_enc, "person.phone") if phone else None,
            "email_verified_at": p.email_verified_at.isoformat() if email else None,
            "phone_verified_at": p.phone_verified_at.isoformat() if phone else None,
            "name": vault.decrypt(p.name_enc, "person.name") if "name" in allowed else None,
            "language": p.language, "consents": counts,
            "awaiting_verification": waiting, "updated_at": p.updated_at.isoformat()}


@bp.get("/v1/people")
@scope("people:read")
def people():
    """Only people with a consent that counts; a page may hold fewer than `limit` only at the end."""
    after = _int_arg("after", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, PAGE_MAX)
    rows = list(Person.raw(f"SELECT p.* FROM person p WHERE p.erased_at IS NULL AND p.id > %s AND {LISTED} AND {UNRESTRICTED} "
                           "ORDER BY p.id LIMIT %s", after, limit))
    consents = _consents([p.id for p in rows])
    return jsonify(people=[_person_json(p, consents.get(p.id, {})) for p in rows],
                   next=rows[-1].id if len(rows) == limit else None)


@bp.get("/v1/people/<int:person_id>")
@scope("people:read")
def person(person_id: int):
    p = Person.get_or_none((Person.id == person_id) & Person.erased_at.is_null()) or abort(404, description="no such person")
    recorded = _consents([person_id]).get(person_id, {})
    if not _listed(counted(recorded, _channels(p))[0]) or is_restricted(database.cursor(), person_id):
        abort(404, description="no such person")  # no consent that counts, or restricted: the same answer as none
    # Per-person visit figures only with visit analytics (issue 15): a marketing consent is not one.
    visits = database.execute_sql(
        'SELECT v.store_id, count(*), max(v."end") FROM visit v JOIN device d ON d.id = v.device_id '
        f"WHERE d.person_id = %s AND NOT v.passerby AND EXISTS (SELECT 1 FROM person p WHERE p.id = d.person_id AND {FOLLOWED}) "
        "GROUP BY v.store_id ORDER BY v.store_id", (person_id,)).fetchall()
    history = database.execute_sql("SELECT store_id, purpose, granted, at, policy_sha256 FROM consent_event "
                                   "WHERE person_id = %s ORDER BY at, id", (person_id,)).fetchall()
    body = _person_json(p, recorded)
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


@bp.get("/v1/segments")
@scope("people:read")
def segments():
    """From the rows kept as events arrive (central/chainstat.py), the rules applied relative to now."""
    found = chainstat.summary(database.cursor(), list(CHANNELS), utcnow())
    return jsonify(segments=[{"key": key, "name": BUILTIN[key][0], **found[key]} for key in BUILTIN])


# The consents each export serves: what it counts and what it leaves out for lack of verification.
EXPORT_PLATFORMS = ("meta", "google")  # transfers abroad (portal/compliance.py EXPORT_PLATFORMS)
EXPORT_PURPOSES = {"csv": ("marketing_email", "marketing_sms"), "meta": ("ad_audiences",), "google": ("ad_audiences",)}


@bp.get("/v1/segments/<key>/export/<kind>")
@scope("exports:read")
def export(key: str, kind: str):
    if key not in BUILTIN or kind not in audience.KINDS:
        abort(404, description="unknown segment or export kind")
    # Ad platforms are transfers abroad: refused until the chain names its assessment (as the panel does).
    if kind in EXPORT_PLATFORMS and kind not in transfers_assessed(ctx()["settings"]):
        abort(409, description=f"no transfer impact assessment for {kind}: set central_transfers_assessed")
    ids, left_out = chainstat.members(database.cursor(), key, utcnow(), EXPORT_PURPOSES[kind])
    return Response(stream_with_context(audience.to_csv(_export_rows(ids, kind))), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="chain-{key}-{kind}.csv"',
                             LEFT_OUT_HEADER: str(left_out)})


LEFT_OUT_HEADER = "X-Footfall-Left-Out-Unverified"  # members with a consent this export serves not counted: channel unverified


def _export_rows(ids: list[int], kind: str):
    """The appliance's consent rules, double opt-in: only the verified identifiers each person
    agreed to, hashed for ads."""
    vault = ctx()["vault"]
    consents = _consents(ids)
    yield list(audience.HEADERS[kind])
    for p in Person.select().where(Person.id.in_(ids) & Person.erased_at.is_null()).order_by(Person.id):
        channels = _channels(p)
        granted, _ = counted(consents.get(p.id, {}), channels)
        email = vault.decrypt(p.email_enc, "person.email") if "email" in channels else None
        phone = vault.decrypt(p.phone_enc, "person.phone") if "phone" in channels else None
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

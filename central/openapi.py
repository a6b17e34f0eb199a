"""The central store's API, described (OpenAPI 3.0)."""
from __future__ import annotations

_ERROR = {"description": "A clear error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_BEARER = [{"bearer": []}]
_CSV = {"description": "CSV file", "content": {"text/csv": {"schema": {"type": "string"}}}}


def _json(ref: str) -> dict:
    return {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Footfall central store", "version": "1",
             "description": "Stores push signed batches of events; the chain's marketing team reads people, segments "
                            "and consent-gated audience exports with scoped bearer tokens."},
    "paths": {
        "/v1/ingest": {"post": {
            "summary": "Push a signed, gzip-compressed batch of events (stores only)",
            "description": "Answers to a verified store carry X-Footfall-Timestamp and X-Footfall-Signature: "
                           "HMAC-SHA256(store key, \"answer.<timestamp>.<request signature>.\" + body).",
            "parameters": [
                {"name": "X-Footfall-Store", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 64}},
                {"name": "X-Footfall-Timestamp", "in": "header", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,10}$"}},
                {"name": "X-Footfall-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "Content-Encoding", "in": "header", "required": True, "schema": {"type": "string", "enum": ["gzip"]}},
            ],
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": _json("IngestResult"), "400": _ERROR, "401": _ERROR, "413": _ERROR, "415": _ERROR},
        }},
        "/v1/people": {"get": {
            "summary": "People of the chain, merged across stores: only those with a consent that counts",
            "description": "Each person is served only what their consents allow, field by field (a marketing "
                           "consent counts only with its channel verified, double opt-in): email with marketing_email "
                           "or ad_audiences, phone with marketing_sms or ad_audiences, name with any marketing consent. "
                           "A person with no consent that counts (the WiFi terms alone are none) is not listed. Pages "
                           "run by id: pass the previous page's `next` as `after` until it is null.",
            "security": _BEARER,
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
            "responses": {"200": _json("PeoplePage"), "400": _ERROR, "401": _ERROR, "403": _ERROR},
        }},
        "/v1/people/{person_id}": {"get": {
            "summary": "One person: consents, history, visits per store (only with visit_analytics); 404 for a person "
                       "not listed (no consent that counts, or restricted by a store)", "security": _BEARER,
            "parameters": [{"name": "person_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": _json("Person"), "401": _ERROR, "403": _ERROR, "404": _ERROR},
        }},
        "/v1/people/{person_id}/erase": {"post": {
            "summary": "Erase a person everywhere (central store and every store that knows them)", "security": _BEARER,
            "parameters": [{"name": "person_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": _json("Erased"), "401": _ERROR, "403": _ERROR, "404": _ERROR},
        }},
        "/v1/segments": {"get": {
            "summary": "Chain-wide segments (new, returning, loyal, lapsed, lost) of people who agreed to visit analytics "
                       "and no store restricted: members, consents that count and those left out for lack of verification",
            "security": _BEARER,
            "responses": {"200": _json("Segments"), "401": _ERROR, "403": _ERROR},
        }},
        "/v1/segments/{key}/export/{kind}": {"get": {
            "summary": "Audience export of a chain-wide segment: only verified contacts with the matching consent (double opt-in)", "security": _BEARER,
            "parameters": [{"name": "key", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["new", "returning", "loyal", "lapsed", "lost"]}},
                           {"name": "kind", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["csv", "meta", "google"]}}],
            "responses": {"200": {**_CSV, "headers": {"X-Footfall-Left-Out-Unverified": {
                "description": "Members with a consent this export serves that does not count: its channel is not verified",
                "schema": {"type": "integer", "minimum": 0}}}}, "401": _ERROR, "403": _ERROR, "404": _ERROR,
                "409": _ERROR},  # meta/google without central_transfers_assessed naming the platform
        }},
        "/v1/stores": {"get": {
            "summary": "Enrolled stores and their sync state", "security": _BEARER,
            "responses": {"200": _json("Stores"), "401": _ERROR, "403": _ERROR},
        }},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "IngestResult": {"type": "object", "properties": {
                "applied": {"type": "integer"}, "duplicates": {"type": "integer"},
                "ignored_anonymous": {"type": "integer", "description": "Visits of devices linked to no person here: "
                                      "ignored, nothing of them kept (a store sends none)"},
                "commands": {"type": "array", "items": {"type": "object", "properties": {"erase_lead": {"type": "string"}}}}}},
            "Person": {"type": "object", "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string", "nullable": True,
                          "description": "Verified, and only with a counting marketing_email or ad_audiences consent"},
                "phone": {"type": "string", "nullable": True,
                          "description": "Verified, and only with a counting marketing_sms or ad_audiences consent"},
                "email_verified_at": {"type": "string", "nullable": True, "description": "Null whenever email is"},
                "phone_verified_at": {"type": "string", "nullable": True, "description": "Null whenever phone is"},
                "name": {"type": "string", "nullable": True, "description": "Only with some marketing consent that counts"},
                "language": {"type": "string"},
                "consents": {"type": "object", "additionalProperties": {"type": "boolean"},
                             "description": "The latest choice per purpose that counts; a marketing consent counts only "
                                            "with its channel verified (double opt-in)"},
                "awaiting_verification": {"type": "array", "items": {"type": "string"},
                                          "description": "Purposes granted that do not count yet: no verified channel"},
                "updated_at": {"type": "string"}}},
            "PeoplePage": {"type": "object", "properties": {
                "people": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
                "next": {"type": "integer", "nullable": True}}},
            "Erased": {"type": "object", "properties": {"erased": {"type": "integer"},
                                                        "stores_told": {"type": "array", "items": {"type": "string"}}}},
            "Segments": {"type": "object", "properties": {"segments": {"type": "array", "items": {"type": "object", "properties": {
                "key": {"type": "string"}, "name": {"type": "string"}, "members": {"type": "integer"},
                "consented": {"$ref": "#/components/schemas/PurposeCounts"},
                "left_out_unverified": {"$ref": "#/components/schemas/PurposeCounts"}}}}}},
            "PurposeCounts": {"type": "object", "additionalProperties": {"type": "integer"},
                              "description": "Members per marketing purpose (marketing_email, marketing_sms, ad_audiences)"},
            "Stores": {"type": "object", "properties": {"stores": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "events_applied": {"type": "integer"},
                "last_seen_at": {"type": "string", "nullable": True}}}}}},
        },
    },
}

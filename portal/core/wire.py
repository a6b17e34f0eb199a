"""The sync wire signature, defined once: the store signs its batches, the central its answers.

    request:  X-Footfall-Signature = hex HMAC-SHA256(store key, "<timestamp>." + gzip body)
    answer:   X-Footfall-Signature = hex HMAC-SHA256(store key,
                  "answer.<timestamp>.<the request's signature>." + JSON body)

Both carry X-Footfall-Timestamp (epoch seconds) and are refused outside a replay window. An
answer is bound to the request it answers (its signature is part of the MAC) and cannot pass
for a request (the "answer." prefix): a recorded answer, erase commands and all, cannot be
replayed to another request, and an unsigned or wrongly signed answer is never acted on.
The events a batch carries are in portal/core/events.py.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from portal.core.numbers import NumberError, parse_int

STORE_HEADER = "X-Footfall-Store"
TIMESTAMP_HEADER = "X-Footfall-Timestamp"
SIGNATURE_HEADER = "X-Footfall-Signature"
TIMESTAMP_MAX = 2**33  # epoch seconds, the year 2242: ten digits at most
ANSWER_WINDOW = 300  # seconds; the central's own sync_replay_window defaults to the same
_SIGNATURE = re.compile(r"^[0-9a-f]{64}\Z")


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """A batch's signature (the store signs, the central verifies)."""
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_answer(key: bytes, timestamp: int, request_signature: str, body: bytes) -> str:
    """An answer's signature (the central signs, the store verifies)."""
    return hmac.new(key, f"answer.{timestamp}.{request_signature}.".encode() + body, hashlib.sha256).hexdigest()


def parse_timestamp(text: str) -> int | None:
    try:
        return parse_int(text, 0, TIMESTAMP_MAX)
    except NumberError:
        return None


def well_formed_signature(text: str) -> bool:
    return bool(_SIGNATURE.match(text or ""))


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures."""
    return hmac.compare_digest(expected.encode(), (given or "").encode())


def fresh(timestamp: int, now: float, window: int) -> bool:
    return abs(now - timestamp) <= window


def check_answer(key: bytes, request_signature: str, headers, body: bytes, now: float,
                 window: int = ANSWER_WINDOW) -> str | None:
    """None when the answer is the central's, to this request, and fresh; else why not."""
    timestamp = parse_timestamp(headers.get(TIMESTAMP_HEADER, "") or "")
    signature = headers.get(SIGNATURE_HEADER, "") or ""
    if timestamp is None or not well_formed_signature(signature):
        return "the answer is not signed"
    if not same(sign_answer(key, timestamp, request_signature, body), signature):
        return "the answer's signature is wrong (not the central store, or not an answer to this batch)"
    if not fresh(timestamp, now, window):
        return f"the answer's timestamp is outside the {window} s window (check both clocks)"
    return None

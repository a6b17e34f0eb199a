"""Pushing the outbox to the central store: signed gzip batches, at least once, in order.

An event is marked delivered only when the central store answers 200 for its batch; the central
store applies an event only if its seq (the outbox's sequence, which never goes back, not even
after a restore from a backup) is above the store's high-water mark there, so a retry after a
lost answer duplicates nothing. Batches go oldest first, up to IN_FLIGHT at once, each after the
first naming the seq its predecessor ended with: the central applies them in that order (the mark
is only right if every event below it was applied). Failures
back off exponentially with jitter (state kept in the database, so a reboot keeps it); when the
link comes back, `drain` sends batch after batch at full speed.
"""
from __future__ import annotations

import base64
import datetime
import gzip
import http.client
import ipaddress
import json
import logging
import random
import ssl
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from portal import clock, privacy
from portal.core import wire
from portal.db import database
from portal.gateway import Gateway
from portal.identity import Keys, Vault, save_keys
from portal.models import Lead, OutboxEvent, StoreSetting, utcnow
from portal.sync_batch import Prepared, prepare, to_wire  # noqa: F401 (sync.to_wire, sync.prepare)
from portal.weak_secrets import WeakSecret, check_key

logger = logging.getLogger(__name__)
STATE_KEY = "sync.state"
BACKOFF_BASE, BACKOFF_CAP = 5.0, 900.0
IN_FLIGHT = 2  # batches sent before the oldest one's answer is in (the central applies them in order)


class SyncError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    url: str
    store_id: str
    key: bytes
    ca_file: str = ""
    allow_http: bool = False  # sync_allow_http: plain http to a loopback central, for tests


sign = wire.sign  # the batch signature, defined once in portal.core.wire


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def post(target: Target, body: bytes, timestamp: int, timeout: float = 30) -> tuple[int, dict]:
    parts = urlsplit(target.url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=target.ca_file or None)  # verification always on
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    elif parts.scheme == "http" and target.allow_http and _loopback(parts.hostname):
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    elif parts.scheme == "http":
        raise SyncError(f"central_url must be https:// (batches carry personal data), not {target.url!r}; "
                        "sync_allow_http allows http:// to a loopback address only, for tests")
    else:
        raise SyncError(f"central_url must be https://, not {target.url!r}")
    signature = sign(target.key, timestamp, body)
    try:
        conn.request("POST", (parts.path.rstrip("/") or "") + "/v1/ingest", body=body, headers={
            "Content-Type": "application/octet-stream", "Content-Encoding": "gzip", wire.STORE_HEADER: target.store_id,
            wire.TIMESTAMP_HEADER: str(timestamp), wire.SIGNATURE_HEADER: signature})
        response = conn.getresponse()
        raw = response.read(1 << 20)
    except ssl.SSLCertVerificationError as exc:
        if clock.known_wrong():
            # A certificate is "not yet valid" to a box that lives in 1970: name the cause.
            raise SyncError(f"this box's clock is wrong ({datetime.datetime.now():%Y-%m-%d %H:%M}), so the central "
                            f"store's TLS certificate cannot be checked until NTP sets it: {exc}") from None
        raise SyncError(f"central store unreachable: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise SyncError(f"central store unreachable: {exc}") from None
    finally:
        conn.close()
    if response.status == 200:
        # Only a 200 is acted on (delivered, commands applied): it must be the central's answer to
        # this very batch, fresh. Anything else is a failure, retried later (the central dedups).
        problem = wire.check_answer(target.key, signature, response.headers, raw, time.time())
        if problem:
            raise SyncError(f"refused the central store's answer: {problem}")
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {"error": raw[:200].decode("utf-8", "replace")}
    return response.status, answer if isinstance(answer, dict) else {}


def deliver(target: Target, batch: Prepared) -> dict:
    """POST one prepared batch (no database access: safe on another thread)."""
    status, answer = post(target, batch.body, int(time.time()))  # the central store checks it against its own clock
    if status != 200:
        raise SyncError(f"central store answered {status}: {answer.get('error', '')}", status)
    return answer


def mark_delivered(ids: list[int]) -> None:
    with database.atomic():
        for i in range(0, len(ids), 900):
            OutboxEvent.update(delivered_at=utcnow()).where(OutboxEvent.id.in_(ids[i:i + 900])).execute()


def push_once(target: Target, vault: Vault, batch: int) -> dict:
    """Send the oldest undelivered events; returns what the central store said."""
    prepared = prepare(vault, batch)
    if prepared is None:
        return {"sent": 0, "applied": 0, "duplicates": 0, "commands": []}
    answer = deliver(target, prepared)
    mark_delivered(prepared.ids)
    return {"sent": len(prepared.ids), **answer}


def apply_commands(commands: list, gateway: Gateway, store_id: str) -> int:
    """Erasures decided at the central store (or another store): apply, then acknowledge."""
    done = 0
    for command in commands:
        uid = command.get("erase_lead") if isinstance(command, dict) else None
        if not isinstance(uid, str):
            continue
        lead = Lead.get_or_none(Lead.uid == uid)
        with database.atomic():
            if lead is not None and lead.erased_at is None:
                privacy.erase_person(lead, [], gateway, store_id, "central")
            OutboxEvent.emit("erase.ack", lead=uid)
        done += 1
    return done


def _state() -> dict:
    row = StoreSetting.get_or_none(StoreSetting.key == STATE_KEY)
    return json.loads(row.value) if row else {"failures": 0, "next_at": 0}


def _save_state(state: dict) -> None:
    StoreSetting.insert(key=STATE_KEY, value=json.dumps(state), updated_at=utcnow()).on_conflict(
        conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(state), StoreSetting.updated_at: utcnow()}
    ).execute()


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Exponential, capped, with full jitter in its upper half: retries of many stores spread out."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, failures - 1))
    return delay * (rng or random).uniform(0.5, 1.0)


def drain(target: Target, vault: Vault, gateway: Gateway, store_id: str, batch: int, budget: float = 25.0,
          clock: Callable[[], float] = time.time, in_flight: int = IN_FLIGHT) -> dict:
    """Push until the outbox is empty, the time budget is spent or the central store fails.
    `clock` decides when to retry after failures (tests run days of outage on it).

    Up to `in_flight` batches travel at once, oldest first, while the next is read and compressed
    here. Each after the first names the seq its predecessor ended with ("after"): the central
    applies it only once that one is applied, so the order per store (and so per person) is kept
    and its high-water mark stays right. A batch answered 409 (its predecessor was not applied in
    time) is prepared again, with everything after it, as the head of a new round."""
    state = _state()
    now = clock()
    if now < state.get("next_at", 0):
        return {"skipped": "backing off", "retry_in": round(state["next_at"] - now, 1), "failures": state["failures"]}
    totals = {"batches": 0, "sent": 0, "applied": 0, "duplicates": 0, "commands": 0}
    started = time.monotonic()
    size, delivered_to, behind = batch, 0, 0
    with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="sync-post") as pool:
        # Nothing to send still asks (an empty batch): erasures decided centrally come back as answers.
        head = prepare(vault, size) or Prepared([], gzip.compress(b'{"events":[]}'))
        flight = deque([(head, pool.submit(deliver, target, head))])
        exhausted = not head.ids
        while True:
            while len(flight) < max(1, in_flight) and not exhausted and time.monotonic() - started < budget:
                last = flight[-1][0] if flight else None
                upcoming = (prepare(vault, size, after_id=last.ids[-1], after_seq=last.top) if last
                            else prepare(vault, size, after_id=delivered_to))
                if upcoming is None:
                    exhausted = True
                else:
                    flight.append((upcoming, pool.submit(deliver, target, upcoming)))
            if not flight:
                break
            current, future = flight.popleft()
            try:
                answer = future.result()
            except SyncError as exc:
                for _, later in flight:  # their predecessor was not applied: none of them is either
                    later.cancel()
                    _settle(later)
                flight.clear()
                if exc.status == 400 and current.after is not None:
                    # A central store older than "after" refuses the body: one batch at a time, as it reads them.
                    logger.warning("the central store does not take batches in flight (%s): sending one at a time", exc)
                    in_flight, exhausted = 1, False
                    continue
                if (exc.status == 413 and size > 1) or (exc.status == 409 and behind < 3):
                    # Too large for the central store: smaller. 409: again, as the head of a new round.
                    size = max(1, size // 2) if exc.status == 413 else size
                    behind += exc.status == 409
                    exhausted = False
                    continue
                state = {"failures": state.get("failures", 0) + 1, "last_error": str(exc)[:300]}
                state["next_at"] = clock() + backoff(state["failures"])
                _save_state(state)
                logger.warning("sync failed (%d in a row): %s", state["failures"], exc)
                return {**totals, "error": str(exc), "failures": state["failures"]}
            if current.ids:
                mark_delivered(current.ids)
                delivered_to = current.ids[-1]
            behind = 0
            if state.get("failures"):
                state = {"failures": 0, "next_at": 0}
                _save_state(state)
            totals["batches"] += bool(current.ids)
            totals["sent"] += len(current.ids)
            for key in ("applied", "duplicates"):
                totals[key] += answer.get(key, 0)
            commands = answer.get("commands") or []
            if commands:
                totals["commands"] += apply_commands(commands, gateway, store_id)
                exhausted = False  # their acknowledgements are new events: a next batch takes them
    return totals


def _settle(future) -> None:
    """Wait for a request already sent (its outcome is not acted on: the next round resends)."""
    try:
        future.result()
    except Exception:  # noqa: BLE001 - any failure of an abandoned request is the next round's to see
        pass


def pending() -> int:
    return OutboxEvent.select().where(OutboxEvent.delivered_at.is_null()).count()


def enroll(key_file, keys: Keys, vault: Vault, store_id: str, store_key: bytes, index_key: bytes) -> int:
    """Join a chain: adopt its blind-index key (re-indexing every lead) and keep the store's key."""
    new = Vault(Keys(keys.encryption, index_key, keys.secret))
    count = 0
    with database.atomic():
        for lead in Lead.select().where(Lead.erased_at.is_null()):
            email = vault.decrypt(lead.email_enc, "lead.email")
            phone = vault.decrypt(lead.phone_enc, "lead.phone")
            lead.email_index = new.blind_index("email", email) if email else None
            lead.phone_index = new.blind_index("phone", phone) if phone else None
            lead.save()
            count += 1
    save_keys(key_file, Keys(keys.encryption, index_key, keys.secret, store_id=store_id, sync_key=store_key))
    return count


def decode_key(text: str, what: str = "key") -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise SyncError(f"{what} is not base64, as `footfall central add-store` prints it") from None
    try:
        check_key(key, what)
    except WeakSecret as exc:
        raise SyncError(str(exc)) from None
    return key


def parse_enrollment(text: str) -> tuple[bytes, bytes]:
    """(store key, index key) from the lines `footfall central add-store` prints:
    store_key=<base64> and index_key=<base64>; blank lines and # comments ignored."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or name.strip() not in ("store_key", "index_key") or name.strip() in found:
            raise SyncError("expected two lines, store_key=<base64> and index_key=<base64>, as add-store prints them")
        found[name.strip()] = value.strip()
    if set(found) != {"store_key", "index_key"}:
        raise SyncError("expected two lines, store_key=<base64> and index_key=<base64>, as add-store prints them")
    store, index = decode_key(found["store_key"], "store_key"), decode_key(found["index_key"], "index_key")
    if store == index:
        raise SyncError("store_key and index_key are the same: use the two keys add-store printed")
    return store, index

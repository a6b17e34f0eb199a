"""One-time codes that prove control of an email or a phone (issue 11).

Six digits from `secrets`, valid ten minutes, at most five tries, single use. Only a keyed hash of
the code is stored (HMAC-SHA256 under the store's index key, bound to the code's uid), compared in
constant time. Tries and use are counted by compare-and-set updates, so parallel guesses count as
the same guesses in a row and one code signs in once. Sending is limited per destination, per
device and per IP, per hour and per day, counted in the database (they survive a restart and hold
across processes): an SMS gateway left open is a bill (SMS pumping).
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from portal.db import database
from portal.models import VerificationCode, utcnow

CODE_DIGITS = 6
VALID = datetime.timedelta(minutes=10)
MAX_TRIES = 5
COOLDOWN = datetime.timedelta(seconds=60)
HOUR, DAY = datetime.timedelta(hours=1), datetime.timedelta(days=1)
# (column, per hour, per day): a destination, a device, an address.
LIMITS = (("destination_index", 5, 10), ("device_mac", 5, 20), ("ip", 10, 50))


class VerificationError(ValueError):
    """Why a code was not sent or not accepted; .code is shown translated."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Issued:
    uid: str
    code: str  # to be sent, never stored
    expires_at: datetime.datetime


PAID = ("sms", "zalo")  # each message is billed to the shop


class Codes:
    def __init__(self, key: bytes, paid_per_hour: int = 60, paid_per_day: int = 300) -> None:
        self._key = key
        # The whole store's cap on billed messages: a guest rotating MACs, addresses and numbers
        # gets past the per-device limits, never past this (SMS pumping ends here).
        self.paid_per_hour, self.paid_per_day = paid_per_hour, paid_per_day

    def _hash(self, uid: str, code: str) -> str:
        return hmac.new(self._key, f"verification:{uid}:{code}".encode(), hashlib.sha256).hexdigest()

    def issue(self, channel: str, destination_index: str, device_mac: str | None, ip: str | None,
              now: datetime.datetime | None = None, claim_uid: str | None = None) -> Issued:
        """A new code for this destination, or VerificationError("cooldown" / "limit_*")."""
        now = now or utcnow()
        uid = VerificationCode.uid.default()
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        with database.atomic():  # counted and written under the write lock: parallel requests queue
            # The cooldown is per destination and device: a resend loop from one phone waits; a
            # returning visitor on a new random MAC is not kept waiting by her own old phone (the
            # destination's hourly and daily limits still hold across devices).
            recent = VerificationCode.destination_index == destination_index
            if device_mac is not None:
                recent &= VerificationCode.device_mac == device_mac
            last = (VerificationCode.select(VerificationCode.created_at).where(recent)
                    .order_by(VerificationCode.created_at.desc()).first())
            if last is not None and now - last.created_at < COOLDOWN:
                raise VerificationError("cooldown")
            for column, per_hour, per_day in LIMITS:
                value = {"destination_index": destination_index, "device_mac": device_mac, "ip": ip}[column]
                if value is None:
                    continue
                field = getattr(VerificationCode, column)
                for window, limit, name in ((HOUR, per_hour, "hour"), (DAY, per_day, "day")):
                    sent = VerificationCode.select().where((field == value) & (VerificationCode.created_at > now - window)).count()
                    if sent >= limit:
                        raise VerificationError(f"limit_{name}")
            if channel in PAID:
                for window, limit in ((HOUR, self.paid_per_hour), (DAY, self.paid_per_day)):
                    sent = VerificationCode.select().where(VerificationCode.channel.in_(PAID)
                                                           & (VerificationCode.created_at > now - window)).count()
                    if sent >= limit:
                        raise VerificationError("limit_store")
            VerificationCode.create(uid=uid, channel=channel, destination_index=destination_index,
                                    code_hash=self._hash(uid, code), created_at=now, expires_at=now + VALID,
                                    device_mac=device_mac, ip=ip, claim_uid=claim_uid)
        return Issued(uid, code, now + VALID)

    def check(self, uid: str, code: str, device_mac: str | None = None,
              now: datetime.datetime | None = None) -> VerificationCode:
        """The code row when `code` is right (it is then used up); VerificationError otherwise:
        not_found, expired, used, too_many_tries, malformed, wrong, other_device."""
        now = now or utcnow()
        code = (code or "").strip()
        if not (len(code) == CODE_DIGITS and code.isascii() and code.isdigit()):
            raise VerificationError("malformed")
        row = VerificationCode.get_or_none(VerificationCode.uid == uid)
        if row is None:
            raise VerificationError("not_found")
        if device_mac is not None and row.device_mac is not None and row.device_mac != device_mac:
            raise VerificationError("other_device")  # a code asked for by another device's request
        if row.used_at is not None:
            raise VerificationError("used")
        if now >= row.expires_at:
            raise VerificationError("expired")
        with database.atomic():
            counted = (VerificationCode.update(tries=VerificationCode.tries + 1)
                       .where((VerificationCode.id == row.id) & (VerificationCode.tries < MAX_TRIES)
                              & VerificationCode.used_at.is_null()).execute())
        if not counted:  # used meanwhile by a parallel request, or out of tries
            used = VerificationCode.select(VerificationCode.used_at).where(VerificationCode.id == row.id).scalar()
            raise VerificationError("used" if used is not None else "too_many_tries")
        if not hmac.compare_digest(row.code_hash, self._hash(uid, code)):
            raise VerificationError("wrong")
        with database.atomic():
            won = (VerificationCode.update(used_at=now)
                   .where((VerificationCode.id == row.id) & VerificationCode.used_at.is_null()).execute())
        if not won:
            raise VerificationError("used")  # a parallel request with the same code was first
        return VerificationCode.get_by_id(row.id)

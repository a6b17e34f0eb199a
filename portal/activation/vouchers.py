"""Vouchers: a readable single-use code (no 0/O, 1/I/L, 2/Z, 5/S, 8/B), an expiry, redeemed once
at the till, optionally with the receipt's amount (the spend of RFM)."""
from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass

from peewee import IntegrityError

from portal.activation.models import Automation, Voucher
from portal.core.numbers import NumberError, parse_int
from portal.db import database
from portal.models import AuditLog, Lead, OutboxEvent, utcnow

ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE = re.compile(rf"^[{ALPHABET}]{{8}}\Z")
MAX_AMOUNT = 10**12  # đồng


class VoucherError(ValueError):
    """`code` names what is wrong: unknown, expired, used (with `used_at`), amount."""

    def __init__(self, code: str, used_at: datetime.datetime | None = None) -> None:
        super().__init__(code)
        self.code, self.used_at = code, used_at


@dataclass(frozen=True)
class Redeemed:
    code: str
    amount: int | None
    expires_at: datetime.datetime


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(8))


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalize(typed: str) -> str:
    """What the cashier typed, as a stored code: case, spaces and dashes do not matter."""
    return re.sub(r"[\s\-]", "", (typed or "")[:40]).upper()


def issue(lead: Lead, automation: Automation | None, days: int) -> Voucher:
    """A new code for a person (inside the caller's transaction)."""
    for _ in range(10):
        try:
            with database.atomic():  # a savepoint: a taken code (one in 10^11) only costs another try
                return Voucher.create(code=new_code(), lead=lead, automation=automation,
                                      expires_at=utcnow() + datetime.timedelta(days=days))
        except IntegrityError:
            continue
    raise RuntimeError("no free voucher code after 10 tries")  # 25^8 codes: never in practice


# Whole đồng, with thousands separators of either habit ("125.000", "125,000", "1 250 000"): a
# separator stands before a group of three digits only, so "125000.00" is refused, not read as
# a hundred times the receipt.
_AMOUNT = re.compile(r"^[0-9]{1,3}(?:([.,\x20])[0-9]{3}(?:\1[0-9]{3})*)?\Z|^[0-9]+\Z")


def parse_amount(raw: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not _AMOUNT.match(raw):
        raise VoucherError("amount")
    try:
        return parse_int(raw.replace(".", "").replace(",", "").replace(" ", ""), 0, MAX_AMOUNT)
    except NumberError:
        raise VoucherError("amount") from None


def redeem(typed: str, amount: int | None, actor: str, now: datetime.datetime | None = None) -> Redeemed:
    """Mark a code used, once: a second use is refused with the time of the first."""
    code = normalize(typed)
    if not CODE.match(code):
        raise VoucherError("unknown")
    now = now or utcnow()
    with database.atomic():
        done = (Voucher.update(redeemed_at=now, redeemed_by=actor, amount=amount)
                .where((Voucher.code == code) & Voucher.redeemed_at.is_null() & (Voucher.expires_at > now)).execute())
        voucher = Voucher.get_or_none(Voucher.code == code)
        if not done:
            if voucher is None:
                raise VoucherError("unknown")
            if voucher.redeemed_at is not None:
                raise VoucherError("used", voucher.redeemed_at)
            raise VoucherError("expired")
        lead = Lead.get_or_none(Lead.id == voucher.lead_id) if voucher.lead_id else None
        auto = Automation.get_or_none(Automation.id == voucher.automation_id) if voucher.automation_id else None
        # The fields webhooks pass on (portal/webhooks/queue.py VOUCHER_FIELDS), and the person's uid.
        payload = {"voucher": code, "code": display(code), "value": amount, "currency": "VND"}
        if lead is not None and lead.erased_at is None:
            payload["lead"] = lead.uid
        if auto is not None:
            payload["campaign"] = auto.uid
        OutboxEvent.emit("voucher.redeemed", **payload)
        AuditLog.record(actor, "voucher_redeemed", display(code), amount=amount)
    return Redeemed(code, amount, voucher.expires_at)

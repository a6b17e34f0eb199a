"""Audience files for ad platforms and CRMs: the kinds, identifiers normalized and hashed as each
platform documents, and CSV that a spreadsheet cannot run.

Which people and which identifiers go in (only with the matching current consent) is the
caller's: portal/exports.py on the appliance, central/api.py for the chain.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from typing import Iterable, Iterator

KINDS = ("csv", "meta", "google")
HEADERS = {"csv": ("email", "phone", "name", "language"), "meta": ("email", "phone"), "google": ("Email", "Phone")}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    """Both platforms: trim and lowercase."""
    return email.strip().lower()


def meta_phone(e164: str) -> str:
    """Meta: digits only, with the country code, no '+' and no leading zeros."""
    return "".join(ch for ch in e164 if ch.isdigit()).lstrip("0")


def google_phone(e164: str) -> str:
    """Google Customer Match: E.164, with the '+'."""
    return "+" + meta_phone(e164)


def hashed_row(kind: str, email: str | None, phone: str | None) -> list[str]:
    """A Meta or Google row: each identifier normalized for that platform, then SHA-256 ("" if absent)."""
    if kind not in ("meta", "google"):
        raise ValueError(f"not an ad platform: {kind!r}")
    to_phone = meta_phone if kind == "meta" else google_phone
    return [sha256(normalize_email(email)) if email else "", sha256(to_phone(phone)) if phone else ""]


_PHONE = re.compile(r"^\+[0-9]{6,15}\Z")


def _safe_cell(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (E.164 phones excepted).
    A carriage return becomes a line feed: the writer quotes a cell holding "\n" (our line end)
    but writes a bare "\r" as it is, and a spreadsheet starts a new row there, whose first cell
    (after the "\r") would escape the quote."""
    cell = cell.replace("\r\n", "\n").replace("\r", "\n")
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _PHONE.match(cell):
        return "'" + cell
    return cell


def to_csv(rows: Iterable[list[str]]) -> Iterator[str]:
    """Stream as CSV text; cells that a spreadsheet would run as formulas are neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_safe_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()

"""Settings the owner edits in the panel, stored in the database and applied over the file's."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

from portal.config import SPLASH_FORBIDDEN, SPLASH_TEXT_MAX
from portal.core.purposes import LANGUAGES
from portal.models import AuditLog, StoreSetting, utcnow
from portal.core import deadlines
from portal.core.numbers import NumberError, parse_int
from portal.safeurl import safe_continue


def _holidays(value: str) -> str:
    days = deadlines.parse_holidays(value)  # ValueError names the bad one
    if len(days) > 60:
        raise ValueError("too many holidays")
    return ",".join(sorted(d.isoformat() for d in days))


def _zone(value: str) -> str:
    deadlines.zone(value)
    return value


def _yes_no(value: str) -> bool:
    if value not in ("yes", "no"):
        raise ValueError(value)
    return value == "yes"


# name: (kind, low, high) for numbers, a pattern for text, or a function from the form's text to
# the value (ValueError: refused)
EDITABLE = {
    "store_name": re.compile(r"^[^\x00-\x1f<>\"\\]{1,60}\Z"),
    # Who the texts name (portal/policy_texts.py placeholders): a change re-renders them (the panel confirms).
    "controller_name": re.compile(r"^[^\x00-\x1f<>\"\\{}]{1,120}\Z"),
    "privacy_contact": re.compile(r"^[^\x00-\x1f<>\"\\{}]{3,200}\Z"),
    "dpo_contact": re.compile(r"^[^\x00-\x1f<>\"\\{}]{3,200}\Z"),
    "brand_color": re.compile(r"^#[0-9a-fA-F]{6}\Z"),
    "session_seconds": (int, 300, 7 * 86400),
    "retention_days": (int, 1, 3650),
    "visit_gap_minutes": (int, 1, 240),
    "min_dwell_minutes": (int, 0, 240),
    "weekly_summary": re.compile(r"^(off|vi|en)\Z"),
    # The sign-in page (portal/panel/splash.py): any printable text, shown escaped; empty means the default.
    **{f"splash_{name}_{language}": re.compile(rf"^(?:(?!{SPLASH_FORBIDDEN}).){{0,{longest}}}\Z", re.S)
       for name, longest in SPLASH_TEXT_MAX.items() for language in LANGUAGES},
    "splash_contact_first": re.compile(r"^(?:phone|email)\Z"),
    "splash_link": lambda value: value if value == "" or (len(value) <= 512 and safe_continue(value)) else None,
    # Issue 15: what the owner answers for under Law 91/2025, Decree 356/2025 and the GDPR.
    "min_age": (int, 0, 25),
    "just_connect": _yes_no,
    "marketing_max_per_month": (int, 1, 100),
    "dsr_deadline_days": (int, 1, 30),
    "dsr_processor_days": (int, 1, 60),
    "dsr_extension_days": (int, 1, 60),
    "public_holidays": _holidays,
    "store_time_zone": _zone,
    "export_log_retention_days": (int, 30, 3650),
}
CLEARABLE = frozenset({"public_holidays", "store_time_zone"})  # empty is a value of theirs
LOGO_MAX = 200 * 1024
LOGO_TYPES = {b"\x89PNG\r\n\x1a\n": ("png", "image/png"), b"\xff\xd8\xff": ("jpg", "image/jpeg")}
PICTURE_MAX = 300 * 1024
PICTURE_FILE = "splash-picture"


class SettingError(ValueError):
    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


def clean(name: str, raw) -> object:
    rule = EDITABLE.get(name)
    if rule is None:
        raise SettingError(name)
    if isinstance(rule, tuple):
        _, low, high = rule
        try:
            return parse_int(str(raw).strip(), low, high)  # int() would take "１２" and "1_2"
        except NumberError:
            raise SettingError(name) from None
    value = " ".join(str(raw).split())
    if callable(rule):  # a check of its own: the value it gives, or None / ValueError to refuse
        try:
            cleaned = rule(value)
        except ValueError:
            raise SettingError(name) from None
        if cleaned is None:
            raise SettingError(name)
        return cleaned
    if not rule.match(value):
        raise SettingError(name)
    return value


def overrides() -> dict:
    return {row.key: json.loads(row.value) for row in StoreSetting.select() if row.key in EDITABLE}


def apply(settings):
    """The settings in force: the file's and environment's, with the panel's edits on top."""
    values = overrides()
    return dataclasses.replace(settings, **values) if values else settings


def clean_all(changes: dict) -> dict:
    """Every change validated, nothing stored (SettingError names the first bad field)."""
    return {name: clean(name, value) for name, value in changes.items()}


def save(changes: dict, actor: str, current=None) -> dict:
    """Validate everything first, then store: a bad field changes nothing. `current` (the settings
    in force) lets the fields that depend on each other be checked together."""
    cleaned = {name: clean(name, value) for name, value in changes.items()}
    if current is not None:
        after = dataclasses.replace(current, **cleaned)
        if after.dsr_processor_days < after.dsr_deadline_days:
            raise SettingError("dsr_processor_days")
    for name, value in cleaned.items():
        StoreSetting.insert(key=name, value=json.dumps(value), updated_at=utcnow()).on_conflict(
            conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(value), StoreSetting.updated_at: utcnow()}
        ).execute()
    if cleaned:
        AuditLog.record(actor, "settings_changed", None, **cleaned)
    return cleaned


def logo_path(data_dir: str) -> Path | None:
    for ext in ("png", "jpg"):
        path = Path(data_dir) / f"logo.{ext}"
        if path.exists():
            return path
    return None


def save_logo(data: bytes, data_dir: str, actor: str) -> None:
    if not data or len(data) > LOGO_MAX:
        raise SettingError("logo")
    kind = next((ext for magic, (ext, _) in LOGO_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise SettingError("logo")
    for old in Path(data_dir).glob("logo.*"):
        old.unlink()
    target = Path(data_dir) / f"logo.{kind}"
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    AuditLog.record(actor, "logo_changed", None, bytes=len(data), type=kind)


def picture_type(data: bytes) -> tuple[str, str] | None:
    """(kind, mimetype) of a PNG, JPEG or WebP by its magic bytes, or None."""
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return next((found for magic, found in LOGO_TYPES.items() if data.startswith(magic)), None)


PICTURE_SIDE_MAX = 4096  # pixels: a small file can still be a huge image that a cheap phone cannot decode


def picture_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or WebP header, or None when the header cannot be read."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if chunk == b"VP8L" and data[20:21] == b"\x2f":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 <= len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            if marker == 0xFF:  # fill byte
                at += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
                return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def picture_path(data_dir: str) -> Path | None:
    path = Path(data_dir) / PICTURE_FILE
    return path if path.exists() else None


def save_picture(data: bytes, data_dir: str, actor: str) -> None:
    """The sign-in page's picture: checked first, then one atomic replace (a visitor never sees half)."""
    if not data:
        raise SettingError("picture_missing")
    if len(data) > PICTURE_MAX:
        raise SettingError("picture_too_big")
    found = picture_type(data)
    if found is None:
        raise SettingError("picture_type")
    size = picture_size(data)
    if size is None or not all(0 < side <= PICTURE_SIDE_MAX for side in size):
        raise SettingError("picture_size")
    target = Path(data_dir) / PICTURE_FILE
    # A name of its own per upload: two owners saving at once never write into one half-file.
    fd, tmp = tempfile.mkstemp(prefix=PICTURE_FILE + ".", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    AuditLog.record(actor, "splash_picture_changed", None, bytes=len(data), type=found[0])


def remove_picture(data_dir: str, actor: str) -> bool:
    path = Path(data_dir) / PICTURE_FILE
    if not path.exists():
        return False
    path.unlink()
    AuditLog.record(actor, "splash_picture_removed", None)
    return True

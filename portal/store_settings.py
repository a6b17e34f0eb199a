"""Settings the owner edits in the panel, stored in the database and applied over the file's."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from portal.models import AuditLog, StoreSetting, utcnow
from portal.core.numbers import NumberError, parse_int

# name: (kind, low, high) for numbers, or a pattern for text
EDITABLE = {
    "store_name": re.compile(r"^[^\x00-\x1f<>\"\\]{1,60}\Z"),
    "brand_color": re.compile(r"^#[0-9a-fA-F]{6}\Z"),
    "session_seconds": (int, 300, 7 * 86400),
    "retention_days": (int, 1, 3650),
    "visit_gap_minutes": (int, 1, 240),
    "min_dwell_minutes": (int, 0, 240),
}
LOGO_MAX = 200 * 1024
LOGO_TYPES = {b"\x89PNG\r\n\x1a\n": ("png", "image/png"), b"\xff\xd8\xff": ("jpg", "image/jpeg")}


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
    if not rule.match(value):
        raise SettingError(name)
    return value


def overrides() -> dict:
    return {row.key: json.loads(row.value) for row in StoreSetting.select() if row.key in EDITABLE}


def apply(settings):
    """The settings in force: the file's and environment's, with the panel's edits on top."""
    values = overrides()
    return dataclasses.replace(settings, **values) if values else settings


def save(changes: dict, actor: str) -> dict:
    """Validate everything first, then store: a bad field changes nothing."""
    cleaned = {name: clean(name, value) for name, value in changes.items()}
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

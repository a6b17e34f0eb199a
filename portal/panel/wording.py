"""Words for what the panel would otherwise show raw: audit actions and details, setting names and
ranges, built-in segment names, roles, days. Offered to the panel's templates (context processor)."""
from __future__ import annotations

import datetime
import json
import re

from flask import g

from portal import i18n, store_settings
from portal.core.segment_rules import BUILTIN, RULE_FIELDS
from portal.captive.look import store_zone
from portal.i18n import translate
from portal.panel import bp, runtime

_NOT_KEY = re.compile(r"[^a-z0-9_]")
# The settings form asks for the session in minutes; it is stored in seconds.
SHOWN_IN_MINUTES = {"session_seconds": 60}
TEXT_MAX = 20000  # characters of one policy text (portal/panel/settings.py)
_BUILTIN_NAMES = {name: key for key, (name, _) in BUILTIN.items()}


def _lang() -> str:
    return getattr(g, "lang", "en")


def t(key: str) -> str:
    return translate(key, _lang())


def _known(key: str) -> bool:
    return i18n.has_key(key)


def audit_action(action: str) -> str:
    key = "audit_" + _NOT_KEY.sub("_", action.lower())
    return t(key) if _known(key) else t("audit_unknown").format(action=action)


def _value(field: str, value) -> str:
    if isinstance(value, bool):
        return t("yes") if value else t("no")
    if isinstance(value, (int, float)):
        return i18n.format_number(value, _lang())
    if isinstance(value, list):
        return ", ".join(_value(field, v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{_field(k)}: {_value(k, v)}" for k, v in value.items())
    text = str(value)
    for prefix in {"consent": ("purpose_",), "purpose": ("purpose_",), "purposes": ("purpose_",),
                   "role": ("role_",), "language": ("lang_",), "kind": ("kind_", "export_"),
                   "status": ("status_",), "channel": ("channel_",)}.get(field, ()):
        if _known(prefix + text):
            return t(prefix + text)
    return text


def _field(name: str) -> str:
    for key in ("setting_" + name, "rule_" + name, "audit_field_" + name):
        if _known(key):
            return t(key)
    return name.replace("_", " ")


def audit_details(detail: str | None) -> list[tuple[str, str]]:
    """(label, value) pairs in words from an audit entry's JSON detail."""
    if not detail or detail == "{}":
        return []
    try:
        values = json.loads(detail)
    except ValueError:
        return [(t("details"), detail)]
    if not isinstance(values, dict):
        return [(t("details"), _value("", values))]
    if "rule" in values and isinstance(values["rule"], str):
        try:
            values["rule"] = json.loads(values["rule"])
        except ValueError:
            pass
    return [(_field(name), _value(name, value)) for name, value in values.items() if value not in (None, "", [])]


def audit_actor(actor: str) -> str:
    """"manager:lan" -> "lan"; the system's own actors in words."""
    kind, _, name = actor.partition(":")
    if name and kind == "manager":
        return name
    return t("actor_" + actor) if _known("actor_" + actor) else actor


def audit_subject(subject: str | None) -> str:
    """A policy text's "wifi_terms/vi" in words; other subjects (people's ids, usernames, paths) as they are."""
    if not subject:
        return ""
    document, _, language = subject.partition("/")
    if language and (_known("doc_" + document) or _known("purpose_" + document)) and _known("lang_" + language):
        return f"{document_label(document)} ({t('lang_' + language)})"
    return subject


def setting_label(name: str) -> str:
    return t("setting_" + name)


def setting_range(name: str) -> str:
    """'from 1 to 240' for a number setting, in its shown unit; '' for others."""
    rule = store_settings.EDITABLE.get(name)
    if not isinstance(rule, tuple):
        return ""
    scale = SHOWN_IN_MINUTES.get(name, 1)
    _, low, high = rule
    lang = _lang()
    return t("setting_range").format(low=i18n.format_number(low // scale, lang), high=i18n.format_number(high // scale, lang))


def document_label(document: str) -> str:
    return t("doc_" + document) if _known("doc_" + document) else t("purpose_" + document)


def text_label(document: str, language: str) -> str:
    """A policy text by its name in words: "WiFi terms, in Vietnamese"."""
    return t("setting_text_label").format(document=document_label(document), language=t("lang_" + language))


def setting_error(field: str | None) -> str:
    """What is wrong with a rejected setting, with the allowed range."""
    if not field:
        return ""
    rule = store_settings.EDITABLE.get(field)
    lang = _lang()
    if isinstance(rule, tuple):
        scale = SHOWN_IN_MINUTES.get(field, 1)
        return t("err_setting_range").format(label=setting_label(field), low=i18n.format_number(rule[1] // scale, lang),
                                             high=i18n.format_number(rule[2] // scale, lang))
    if field == "logo":
        return t("err_logo")
    if _known("err_setting_" + field):
        return t("err_setting_" + field)
    if field.startswith("text-") and field.count("-") == 2:
        _, document, language = field.split("-")
        return t("err_setting_text").format(document=document_label(document), language=t("lang_" + language),
                                            high=i18n.format_number(TEXT_MAX, lang))
    return t("err_setting_unknown")


def rule_error(field: str) -> str:
    """A rejected segment rule field, with its range."""
    bounds = RULE_FIELDS.get(field)
    lang = _lang()
    if bounds is not None and _known("rule_" + field):
        return t("err_rule_range").format(label=t("rule_" + field), low=i18n.format_number(bounds[0], lang),
                                          high=i18n.format_number(bounds[1], lang))
    return t("err_rule").format(field=t("rule_" + field) if _known("rule_" + field) else field)


def segment_name(segment) -> str:
    """A built-in segment's name in the page's language; an owner's own segment as named."""
    if isinstance(segment, str):
        key = _BUILTIN_NAMES.get(segment)
        return t("segment_" + key) if key else segment
    if getattr(segment, "builtin", False) and segment.key in BUILTIN:
        return t("segment_" + segment.key)
    return segment.name


def day_label(day: str, short: bool = False) -> str:
    """An ISO day ("2026-11-05") as the page's language writes it."""
    try:
        return i18n.format_date(datetime.date.fromisoformat(day), _lang(), short)
    except ValueError:
        return day


def when(value, local: bool = False) -> str:
    """A time from a report (ISO text or datetime; naive means UTC, or the appliance's local time
    with `local`) in the page's language and local time; '-' for none."""
    if not value:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
    if local and value.tzinfo is None:
        value = value.astimezone()
    return i18n.format_datetime(value, _lang(), store_zone(runtime().settings))


def roles_text(roles) -> str:
    return t("list_or").join(t("role_" + r) for r in roles)


@bp.context_processor
def wording() -> dict:
    return {"audit_action": audit_action, "audit_details": audit_details, "audit_subject": audit_subject,
            "audit_actor": audit_actor, "setting_label": setting_label,
            "setting_range": setting_range, "setting_error": setting_error, "rule_error": rule_error,
            "document_label": document_label, "segment_name": segment_name, "roles_text": roles_text,
            "day_label": day_label, "when": when, "text_label": text_label}

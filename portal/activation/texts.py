"""An automation's form and its messages: validation (a bad field changes nothing), placeholders,
rendering and the panel's preview.

Placeholders: {name} (the name as the visitor gave it), {store}, {voucher}, {voucher_expires},
{review_link}, {unsubscribe}. Email gets the unsubscribe link and the RFC 8058 headers added,
SMS a "how to stop" line; a Zalo message is the owner's approved ZNS template, whose parameters
are `key=value` lines that may use the placeholders, one of them {unsubscribe}.
"""
from __future__ import annotations

import datetime
import html
import json
import re
import zoneinfo
from dataclasses import dataclass

from portal.activation.models import KINDS, Automation
from portal.core.numbers import NumberError, parse_int
from portal.core.purposes import LANGUAGES
from portal.messages import CHANNELS
from portal.models import utcnow

PLACEHOLDERS = ("name", "store", "voucher", "voucher_expires", "review_link", "unsubscribe")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[^\x00-\x1f<>]{1,80}\Z")
_URL = re.compile(r"^https?://[^\s<>\"'\x00-\x1f]{3,300}\Z")
_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_PARAM = re.compile(r"^([A-Za-z][A-Za-z0-9_]{0,29})=(.{0,200})\Z")
_SEND_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}\Z")
# A header's value: one line. The panel's forms let line breaks through for the texts, and
# Python's email package refuses CR or LF in a header only when the message is built, so a
# subject with one saved fine and then failed every send of its automation.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LIMITS = {"subject": 150, "email": 4000, "sms": 480}
SEND_YEARS = (2000, 2199)  # a campaign's time: any year a store could mean
# Added to every SMS: how to stop (the link withdraws the consent, like the email's).
STOP = {"vi": "Ngừng nhận: {unsubscribe}", "en": "Stop: {unsubscribe}"}
FOOTER = {"vi": "Không muốn nhận thêm? Hủy đăng ký: {unsubscribe}", "en": "No more of these? Unsubscribe: {unsubscribe}"}
NAME_FALLBACK = {"vi": "bạn", "en": "there"}
# option: (low, high, kinds it applies to)
NUMBERS = {"delay_hours": (0, 168, ("first_visit",)), "nth": (2, 100, ("nth_visit",)),
           "lapsed_days": (7, 365, ("lapsed",)), "voucher_days": (0, 365, KINDS)}


class FormError(ValueError):
    """`field` names the first bad field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class Cleaned:
    kind: str
    name: str
    channels: tuple[str, ...]
    options: dict
    texts: dict


def _placeholders_ok(text: str, field: str, options: dict) -> None:
    for key in _PLACEHOLDER.findall(text):
        if key not in PLACEHOLDERS:
            raise FormError(field)
        if key in ("voucher", "voucher_expires") and not options.get("voucher_days"):
            raise FormError(field + ":voucher")
        if key == "review_link" and not options.get("review_link"):
            raise FormError(field + ":review_link")
    if text.count("{") != text.count("}"):
        raise FormError(field)


def _clean_text(form, key: str, limit: int, options: dict, required: bool = True, one_line: bool = False) -> str:
    value = (form.get(key) or "").replace("\r\n", "\n").strip()
    if not value and required:
        raise FormError(key)
    if len(value) > limit or "\x00" in value or (one_line and _CONTROL.search(value)):
        raise FormError(key)
    _placeholders_ok(value, key, options)
    return value


def clean(form, tz: datetime.tzinfo) -> Cleaned:
    """The automation a submitted form describes, or FormError for its first bad field."""
    kind = form.get("kind", "")
    if kind not in KINDS:
        raise FormError("kind")
    name = " ".join((form.get("name") or "").split())
    if not _NAME.match(name):
        raise FormError("name")
    channels = tuple(c for c in CHANNELS if c in form.getlist("channels"))
    if not channels or set(form.getlist("channels")) - set(CHANNELS):
        raise FormError("channels")
    options: dict = {}
    for option, (low, high, kinds) in NUMBERS.items():
        if kind in kinds:
            try:
                options[option] = parse_int((form.get(option) or "").strip() or ("0" if option == "voucher_days" else ""), low, high)
            except NumberError:
                raise FormError(option) from None
    options["repeat"] = kind in ("lapsed", "review") and form.get("repeat") == "yes"
    review_link = (form.get("review_link") or "").strip()
    if review_link and not _URL.match(review_link):
        raise FormError("review_link")
    if kind == "review" and not review_link:
        raise FormError("review_link")
    options["review_link"] = review_link
    if kind == "campaign":
        options["segment"] = (form.get("segment") or "").strip()[:80]  # checked against the segments by the caller
        send_at = (form.get("send_at") or "").strip()
        if send_at:
            if not _SEND_AT.match(send_at):
                raise FormError("send_at")
            try:
                local = datetime.datetime.fromisoformat(send_at).replace(tzinfo=tz)
                # Year 1 east of UTC, or 9999 west of it, is outside the calendar in UTC; and a
                # time near either edge would overflow on the edit page once the zone changes.
                if not SEND_YEARS[0] <= local.year <= SEND_YEARS[1]:
                    raise ValueError("year")
                options["send_at"] = local.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat(" ")
            except (ValueError, OverflowError):
                raise FormError("send_at") from None
        else:
            options["send_at"] = None
    texts: dict = {}
    for channel in channels:
        texts[channel] = {}
        for lang in LANGUAGES:
            if channel == "email":
                texts[channel][lang] = {"subject": _clean_text(form, f"email_subject_{lang}", LIMITS["subject"], options,
                                                                   one_line=True),
                                        "text": _clean_text(form, f"email_text_{lang}", LIMITS["email"], options)}
            elif channel == "sms":
                texts[channel][lang] = {"text": _clean_text(form, f"sms_text_{lang}", LIMITS["sms"], options)}
            else:
                texts[channel][lang] = {"params": _clean_params(form, f"zalo_params_{lang}", options)}
    if "zalo" in channels:
        template = (form.get("zalo_template") or "").strip()
        if not _TEMPLATE_ID.match(template):
            raise FormError("zalo_template")
        options["zalo_template"] = template
    return Cleaned(kind, name, channels, options, texts)


def _clean_params(form, key: str, options: dict) -> dict:
    raw = (form.get(key) or "").replace("\r\n", "\n").strip()
    params = {}
    for line in [ln.strip() for ln in raw.split("\n") if ln.strip()][:12]:
        match = _PARAM.match(line)
        if not match:
            raise FormError(key)
        _placeholders_ok(match.group(2), key, options)
        params[match.group(1)] = match.group(2)
    if not params or len(raw.split("\n")) > 12:
        raise FormError(key)
    if not any("{unsubscribe}" in v for v in params.values()):
        raise FormError(key + ":unsubscribe")  # a Zalo message says how to stop, too
    return params


def save(cleaned: Cleaned, actor: str, automation: Automation | None = None) -> Automation:
    values = {"kind": cleaned.kind, "name": cleaned.name, "channels": ",".join(cleaned.channels),
              "options": json.dumps(cleaned.options, sort_keys=True, ensure_ascii=False),
              "texts": json.dumps(cleaned.texts, sort_keys=True, ensure_ascii=False), "updated_at": utcnow()}
    if automation is None:
        return Automation.create(created_by=actor, **values)
    for key, value in values.items():
        setattr(automation, key, value)
    automation.save()
    return automation


def fill(text: str, values: dict) -> str:
    """The placeholders replaced (unknown ones were refused when the form was saved)."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    params: dict


def render(automation: Automation, channel: str, language: str, values: dict) -> Rendered:
    """The message for one person: `values` holds every placeholder's value."""
    lang = language if language in LANGUAGES else LANGUAGES[0]
    values = {**values, "name": values.get("name") or NAME_FALLBACK[lang]}
    entry = automation.text_map[channel][lang]
    if channel == "email":
        body = fill(entry["text"], values)
        footer = fill(FOOTER[lang], values)
        text = f"{body}\n\n--\n{footer}\n"
        link = html.escape(values["unsubscribe"], quote=True)
        page = (f'<div lang="{lang}">' + "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in body.split("\n\n"))
                + f'<hr><p style="font-size:small;color:#5b6670">{html.escape(footer.split(": ")[0])}: '
                  f'<a href="{link}">{link}</a></p></div>')
        return Rendered(fill(entry["subject"], values), text, page, {})
    if channel == "sms":
        return Rendered("", f"{fill(entry['text'], values)}\n{fill(STOP[lang], values)}", "", {})
    params = {k: fill(v, values) for k, v in entry["params"].items()}
    params["template_id"] = automation.opts.get("zalo_template", "")
    return Rendered("", " ".join(f"{k}={v}" for k, v in params.items()), "", params)


def sample_values(store: str, options: dict, tz: datetime.tzinfo) -> dict:
    """What the panel's preview fills in."""
    expires = (utcnow() + datetime.timedelta(days=options.get("voucher_days") or 0)).replace(tzinfo=datetime.timezone.utc)
    return {"name": "Lan", "store": store, "voucher": "K7QP-M4XR", "voucher_expires": expires.astimezone(tz).strftime("%d/%m/%Y"),
            "review_link": options.get("review_link") or "", "unsubscribe": "https://…/u/…"}


def store_tz(settings) -> datetime.tzinfo:
    if settings.store_time_zone:
        return zoneinfo.ZoneInfo(settings.store_time_zone)
    return datetime.datetime.now().astimezone().tzinfo

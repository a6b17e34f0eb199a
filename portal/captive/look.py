"""What the visitor pages show beyond the form (issue 16): the owner's look of the sign-in page
(portal/panel/splash.py), times on the store's clock, where the "online" page sends the visitor
next, and the terms sentence's link to the privacy notice. Pure presentation: no request state
but url_for."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from flask import url_for
from markupsafe import Markup, escape

from portal import store_settings
from portal.captive.probes import is_probe
from portal.core import deadlines
from portal.i18n import format_clock, translate
from portal.safeurl import safe_continue


def notice_link(text: str, lang: str) -> Markup:
    """A consent text with its mention of the privacy notice made a link to it (or a link after it)."""
    escaped = str(escape(text))
    href = url_for("captive.privacy")
    phrase = re.search(re.escape(str(escape(translate("notice_phrase", lang)))), escaped, re.IGNORECASE)
    if phrase is None:
        return Markup(f'{escaped} <a href="{href}">{escape(translate("privacy_link", lang))}</a>')
    return Markup(f'{escaped[:phrase.start()]}<a href="{href}">{phrase.group(0)}</a>{escaped[phrase.end():]}')


def store_zone(settings) -> datetime.tzinfo | None:
    """The store's time zone (setting `store_time_zone`, checked at load: portal/core/deadlines.zone); None: the machine's."""
    try:
        return deadlines.zone(getattr(settings, "store_time_zone", ""))
    except ValueError:
        return None


def in_store_time(value: datetime.datetime, settings) -> datetime.datetime:
    """A naive UTC time from the database, in the store's zone."""
    return value.replace(tzinfo=datetime.timezone.utc).astimezone(store_zone(settings))


def until_words(until: datetime.datetime, lang: str, settings) -> str:
    """"You are online until 06:18, 25/11/2026": the store's clock, the day first (both languages)."""
    clock, day = format_clock(in_store_time(until, settings), lang)  # Babel, in the guest's language
    return translate("online_until_words", lang).format(time=clock, date=day)


@dataclass(frozen=True)
class SplashLook:
    """What the owner set for the sign-in page (portal/panel/splash.py), in one language, defaults filled in."""
    headline: str
    subtitle: str
    offer: str
    contact_first: str
    picture: str | None  # its URL, versioned so a new picture is never served from a cache


def _version(stat) -> str:
    """The picture's version in its URL: its inode, size and mtime. Every upload is a new file
    renamed over the old (portal/store_settings.save_picture), so its inode differs from the
    current one's even when the file system's timestamps are too coarse to tell two uploads
    apart (one second on ext4 with small inodes, two on FAT): the mtime alone let a browser keep
    the old picture for max-age after a change. Digits only."""
    return f"{stat.st_ino}{stat.st_size:07d}{stat.st_mtime_ns // 1000:017d}"


def splash_look(settings, lang: str) -> SplashLook:
    picture = store_settings.picture_path(settings.data_dir)
    try:
        version = _version(picture.stat()) if picture else None
    except FileNotFoundError:  # removed in the panel just now
        version = None
    default_subtitle = ("lead_in_just_connect" if settings.just_connect else "lead_in") + (
        "_phone" if settings.splash_contact_first == "phone" else "")
    return SplashLook(
        headline=getattr(settings, f"splash_headline_{lang}") or translate("title", lang),
        subtitle=getattr(settings, f"splash_subtitle_{lang}") or translate(default_subtitle, lang),
        offer=getattr(settings, f"splash_offer_{lang}"),
        contact_first=settings.splash_contact_first,
        picture=url_for("captive.picture", v=version) if version is not None else None)


@dataclass(frozen=True)
class NextStep:
    """Where the "online" page sends the visitor: the owner's page, the page they asked for, or nowhere."""
    link: str | None        # the owner's page (splash_link)
    link_label: str
    browse: str | None      # the page the visitor first asked for, when it was a page and not an OS probe
    close: str | None       # the OS probe's URL: opening it ends the sign-in sheet


def next_step(settings, lang: str, nxt: str | None) -> NextStep:
    link = safe_continue(settings.splash_link) if settings.splash_link else None
    label = getattr(settings, f"splash_link_label_{lang}") or translate("link_label_default", lang)
    probe = bool(nxt) and is_probe(nxt)
    return NextStep(link=link, link_label=label, browse=nxt if nxt and not probe else None,
                    close=nxt if probe else None)

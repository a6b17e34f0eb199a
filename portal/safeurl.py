"""URLs we offer visitors as links: http(s) only, nothing that could run or mislead."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

CONTINUE_MAX = 1024
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\"'\\`]")


def safe_continue(url: str | None) -> str | None:
    """An http(s) URL fit to offer as a link, or None: no scripts, no credentials, no CRLF."""
    if not url or len(url) > CONTINUE_MAX or _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return url

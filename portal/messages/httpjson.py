"""One JSON-over-HTTPS call for the SMS and Zalo providers: bounded time and size, clear errors."""
from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit

from portal.messages import MessageError

MAX_ANSWER = 64 * 1024


def post_json(url: str, payload: dict, headers: dict | None = None, timeout: float = 10.0,
              ca_file: str = "") -> dict:
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                           context=ssl.create_default_context(cafile=ca_file or None))
    elif parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)  # local test servers only
    else:
        raise MessageError("provider_url_not_https")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path or "/", body=json.dumps(payload).encode(),
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read(MAX_ANSWER + 1)
    except (OSError, http.client.HTTPException) as exc:  # timeouts included
        raise MessageError(f"provider_unreachable: {exc.__class__.__name__}", temporary=True) from None
    finally:
        conn.close()
    if response.status >= 500 or response.status == 429:
        raise MessageError(f"provider_http_{response.status}", temporary=True)
    if response.status != 200 or len(raw) > MAX_ANSWER:
        raise MessageError(f"provider_http_{response.status}")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise MessageError("provider_garbage", temporary=True) from None
    if not isinstance(answer, dict):
        raise MessageError("provider_garbage", temporary=True)
    return answer

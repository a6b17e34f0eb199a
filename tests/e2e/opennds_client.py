"""A phone behind openNDS at FAS level 2 or 3, run inside the client namespace; prints one JSON object.

    python opennds_client.py signin PROBE_URL EMAIL [CA_FILE]   probe -> FAS page -> submit -> openNDS
    python opennds_client.py replay PROBE_URL [CA_FILE]         one redirect opened by two browsers

Level 2 ends at openNDS's auth URL (the browser carries the token); level 3 ends on the portal's
wait page, which reloads until the router's authmon has let the client out.
"""
import http.client
import json
import re
import ssl
import sys
import time
from urllib.parse import urlencode, urljoin, urlsplit


def get(url, method="GET", body=None, headers=None, ca=None, timeout=10):
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers={"User-Agent": "ff-e2e", "Accept-Language": "en", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return {"status": response.status, "location": response.getheader("Location"),
                "refresh": response.getheader("Refresh"), "cookie": response.getheader("Set-Cookie"),
                "body": data.decode("utf-8", "replace")[:65536]}
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def signin(probe_url, email, ca=None):
    steps = {"probe": get(probe_url)}
    fas_url = steps["probe"].get("location") or ""
    steps["fas_url"] = fas_url
    if "fas=" not in fas_url:
        return {"error": "no FAS redirect", **steps}
    page = get(fas_url, ca=ca)
    steps["fas_page"] = {k: page.get(k) for k in ("status", "error")}
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("body", ""))
    cookie = (page.get("cookie") or "").split(";", 1)[0]
    body = urlencode({"csrf_token": token.group(1) if token else "", "email": email, "terms": "yes"})
    submit = get(urljoin(fas_url, "/connect"), method="POST", body=body, ca=ca,
                 headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    steps["submit"] = {k: submit.get(k) for k in ("status", "location", "error")}
    cookie = (submit.get("cookie") or cookie).split(";", 1)[0]  # the session now holds the wait
    target = urljoin(fas_url, submit.get("location") or "")
    if urlsplit(target).path == "/fas/wait":
        start, waits = time.monotonic(), []
        while time.monotonic() - start < 60:
            answer = get(target, ca=ca, headers={"Cookie": cookie})
            waits.append(answer.get("status"))
            if answer.get("status") != 200:
                break
            time.sleep(float(answer.get("refresh") or 2))
        steps["wait"] = {"statuses": waits, "location": answer.get("location"),
                         "seconds": round(time.monotonic() - start, 1)}
    elif submit.get("location"):
        auth = get(submit["location"])
        steps["auth"] = {k: auth.get(k) for k in ("status", "location", "error")}
    steps["after"] = {k: v for k, v in get(probe_url).items() if k in ("status", "location", "body")}
    return steps


def replay(probe_url, ca=None):
    """The guest's own browser opens the redirect; a second browser (another cookie jar, or someone
    who sniffed the link) opens the very same URL."""
    fas_url = get(probe_url).get("location") or ""
    first, second = get(fas_url, ca=ca), get(fas_url, ca=ca)
    return {"fas_url": fas_url, "first": first.get("status"), "second": second.get("status"),
            "second_body": second.get("body", "")[:4000]}


if __name__ == "__main__":
    action, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"signin": signin, "replay": replay}[action](*args)))

"""What a phone does, run inside the client namespace; prints one JSON object.

    python client.py http URL [HOST]            one GET, no redirects followed
    python client.py tcp HOST PORT              connect, then close
    python client.py dns SERVER NAME            one UDP A query
    python client.py signin PORTAL EMAIL        splash, then submit the form
    python client.py erase PORTAL               "my data" -> erase everything
    python client.py login-to-online PORTAL URL RUNS   the benchmark loop (signin, reach URL, erase)
"""
import http.client
import json
import re
import socket
import struct
import sys
import time
from urllib.parse import urlencode, urlsplit


def now_ms():
    return time.perf_counter() * 1000


def get(url, host=None, method="GET", body=None, headers=None, timeout=5):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    start = now_ms()
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=body, headers={"Host": host or parts.netloc, "User-Agent": "ff-e2e", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return {"status": response.status, "location": response.getheader("Location"),
                "cookie": response.getheader("Set-Cookie"), "body": data.decode("utf-8", "replace")[:65536],
                "elapsed_ms": now_ms() - start}
    except OSError as exc:
        return {"error": type(exc).__name__, "elapsed_ms": now_ms() - start}
    finally:
        conn.close()


def token_and_cookie(portal, path):
    page = get(portal + path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("body", ""))
    cookie = (page.get("cookie") or "").split(";", 1)[0]
    return (token.group(1) if token else None), cookie, page


def signin(portal, email):
    token, cookie, page = token_and_cookie(portal, "/?form=1")
    if token is None:
        return {"error": "no form", "page": page}
    body = urlencode({"csrf_token": token, "email": email, "terms": "yes"})
    start = now_ms()
    answer = get(portal + "/connect", method="POST", body=body, headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    answer["submit_ms"] = now_ms() - start
    return answer


def fas_signin(probe_url, email, wait_online=""):
    """The openNDS flow as a browser walks it: probe -> FAS page -> submit -> openNDS auth -> landing."""
    steps = {"probe": get(probe_url)}
    fas_url = steps["probe"].get("location")
    if not fas_url or "fas=" not in fas_url:
        return {"error": "no FAS redirect", **steps}
    page = get(fas_url)
    steps["fas_page"] = {k: page.get(k) for k in ("status", "elapsed_ms")}
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("body", ""))
    cookie = (page.get("cookie") or "").split(";", 1)[0]
    body = urlencode({"csrf_token": token.group(1) if token else "", "email": email, "terms": "yes"})
    parts = urlsplit(fas_url)
    start = now_ms()
    submit = get(f"{parts.scheme}://{parts.netloc}/connect", method="POST", body=body,
                 headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    steps["submit"] = {k: submit.get(k) for k in ("status", "location", "elapsed_ms")}
    if not submit.get("location"):
        return {"error": "submit did not redirect", "submit": submit, **steps}
    auth = get(submit["location"])
    steps["auth"] = {k: auth.get(k) for k in ("status", "location", "elapsed_ms")}
    steps["submit_to_auth_ms"] = now_ms() - start
    if wait_online:
        for _ in range(400):
            if get(probe_url, timeout=2).get("status") == 200:
                steps["submit_to_online_ms"] = now_ms() - start
                break
    return steps


def wait_reachable(url, limit_ms="5000"):
    """Poll URL until it answers 2xx from the internet; the time it took (for `ndsctl auth` timing)."""
    start = now_ms()
    while now_ms() - start < float(limit_ms):
        answer = get(url, timeout=2)
        if answer.get("status") in (200, 204):
            return {"reachable_ms": now_ms() - start}
    return {"error": "not reachable"}


def erase(portal):
    token, cookie, page = token_and_cookie(portal, "/my-data")
    if token is None:
        return {"error": "no form", "page": page}
    return get(portal + "/my-data/erase", method="POST", body=urlencode({"csrf_token": token, "confirm": "yes"}),
               headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})


def login_to_online(portal, url, runs):
    timings = []
    for i in range(runs):
        token, cookie, _ = token_and_cookie(portal, "/?form=1")
        body = urlencode({"csrf_token": token, "email": f"bench{i}@example.com", "terms": "yes"})
        start = now_ms()
        answer = get(portal + "/connect", method="POST", body=body, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.get("status") == 303, answer
        for _ in range(200):
            reached = get(url, timeout=2)
            if reached.get("status") == 204:
                break
        else:
            raise SystemExit(json.dumps({"error": "never online", "last": reached}))
        timings.append(now_ms() - start)
        assert erase(portal).get("status") == 303
    return {"runs": runs, "timings_ms": timings}


def dns(server, name):
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    start = now_ms()
    try:
        sock.sendto(query, (server, 53))
        data, _ = sock.recvfrom(4096)
    except OSError as exc:
        return {"error": type(exc).__name__, "elapsed_ms": now_ms() - start}
    finally:
        sock.close()
    # Answer records: TYPE A, CLASS IN, TTL (4 bytes), RDLENGTH 4, then the address.
    answers = [socket.inet_ntoa(data[i + 10:i + 14]) for i in range(len(query), len(data) - 13)
               if data[i:i + 4] == b"\x00\x01\x00\x01" and data[i + 8:i + 10] == b"\x00\x04"]
    return {"answers": answers, "elapsed_ms": now_ms() - start}


def tcp(host, port):
    start = now_ms()
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return {"connected": True, "elapsed_ms": now_ms() - start}
    except OSError as exc:
        return {"error": type(exc).__name__, "elapsed_ms": now_ms() - start}


if __name__ == "__main__":
    action, args = sys.argv[1], sys.argv[2:]
    handlers = {"http": get, "tcp": tcp, "dns": dns, "signin": signin, "erase": erase, "fas-signin": fas_signin, "wait-reachable": wait_reachable,
                "login-to-online": lambda p, u, n: login_to_online(p, u, int(n))}
    print(json.dumps(handlers[action](*args)))

"""The test's app behind a real threaded HTTP server on loopback, and browsers that keep cookies.

Used where a race is the point: real threads, real sockets, the app's real SQLite file.
"""
from __future__ import annotations

import http.client
import re
import threading
import urllib.parse
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "portal.test:8080"


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # a line per request would bury the test's own output
        pass


@contextmanager
def serve(app) -> Iterator[int]:
    """Serve `app` on 127.0.0.1 (a thread per request) until the block ends; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Browser:
    """One browser: its own cookies, a new connection per request (safe to use from one thread)."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.cookies: dict[str, str] = dict(cookies or {})

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict[str, str], str]:
        headers = {"Host": HOST, "Accept-Language": "en"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                cookie_value = rest.split(";", 1)[0]
                if cookie_value and "Max-Age=0" not in value and "Expires=Thu, 01 Jan 1970" not in value:
                    self.cookies[name] = cookie_value
                else:
                    self.cookies.pop(name, None)
            return response.status, dict(response.headers.items()), text
        finally:
            conn.close()

    def token(self, path: str = "/panel/login") -> str:
        status, _, page = self.request("GET", path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {path} ({status})"
        return match.group(1)

    def post(self, path: str, data: dict, token_page: str | None = None) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, {"csrf_token": self.token(token_page or path), **data})

    def ready(self, path: str, data: dict, token_page: str | None = None):
        """A POST to send later (e.g. from in_parallel): its CSRF token is fetched now."""
        form = {"csrf_token": self.token(token_page or path), **data}
        return lambda: self.request("POST", path, form)

    def login(self, username: str, password: str) -> tuple[int, dict[str, str], str]:
        return self.post("/panel/login", {"username": username, "password": password})


def in_parallel(calls: list) -> list:
    """Run the callables at the same moment, each on its own thread; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i]()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a request never finished"
    return results

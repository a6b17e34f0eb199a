"""Visitors on real sockets: each one a loopback source address (a device to the null gateway) with its
own cookie jar, doing what a phone does on the portal. Shared by the soak test and the benchmarks."""
from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

HOST = "portal.test:8080"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def source_ip(n: int) -> str:
    """The n-th visitor's address in 127.0.0.0/8 (every address there is local on Linux)."""
    return f"127.{10 + n // 62500}.{(n // 250) % 250 + 1}.{n % 250 + 1}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


class Visitor:
    """One device. Requests go over a fresh connection bound to the device's address."""

    def __init__(self, port: int, ip: str, timeout: float = 30.0) -> None:
        self.port, self.ip, self.timeout = port, ip, timeout
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | list | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout, source_address=(self.ip, 0))
        headers = {"Host": HOST, "User-Agent": "soak", "Accept-Language": "en", "Connection": "close"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            for value in resp.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, text)
        finally:
            conn.close()

    def token(self, path: str = "/?form=1") -> str:
        page = self.request("GET", path)
        match = _TOKEN.search(page.body)
        if not match:
            raise AssertionError(f"{path} answered {page.status} with no CSRF token")
        return match.group(1)

    def sign_in(self, email: str, marketing: tuple[str, ...] = ()) -> Answer:
        form = [("csrf_token", self.token()), ("email", email), ("terms", "yes"), ("age", "yes"),
                *(("marketing", m) for m in marketing)]
        return self.request("POST", "/connect", form)

    def welcome_back(self) -> Answer:
        return self.request("POST", "/welcome-back", {"csrf_token": self.token("/my-data")})

    def my_data(self) -> Answer:
        return self.request("GET", "/my-data")

    def withdraw(self, purpose: str) -> Answer:
        return self.request("POST", "/my-data/withdraw", {"csrf_token": self.token("/my-data"), "purpose": purpose})


@dataclass
class Tally:
    """What the visitors saw, by status; latencies of sign-ins; every acknowledged sign-in."""
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def timed_sign_in(visitor: Visitor, email: str, tally: Tally, marketing: tuple[str, ...] = ()) -> int:
    """A sign-in as the benchmark and the soak count it: acknowledged means a 303 to the online page."""
    start = time.perf_counter()
    try:
        answer = visitor.sign_in(email, marketing)
    except (OSError, http.client.HTTPException) as exc:
        with tally.lock:
            tally.failures.append(f"{email}: {exc!r}")
        return -1
    elapsed = time.perf_counter() - start
    tally.count(answer.status)
    with tally.lock:
        tally.latencies.append(elapsed)
        if answer.status == 303 and "/online" in answer.headers.get("location", ""):
            tally.acknowledged.append(email)
        elif answer.status >= 500:
            tally.failures.append(f"{email}: {answer.status} {answer.body[:200]!r}")
    return answer.status


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

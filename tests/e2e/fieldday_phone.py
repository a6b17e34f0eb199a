"""One phone of the field day, run inside its namespace; prints one JSON object.

    python fieldday_phone.py arrive PORTAL EMAIL PURPOSES PHONE   OS probes, sign-in form, probes again, browse
    python fieldday_phone.py look PORTAL                     probes and a page, no sign-in
    python fieldday_phone.py backoffice PORTAL OFFICE_URL    a guest trying the manager's panel

PURPOSES: comma-separated marketing purposes ticked on the form ("-" for none); PHONE the number
typed in ("-" for none). Every answer's
status goes into "statuses", so the test can count 5xx over the whole day.
"""
import json
import re
import sys
import time
from urllib.parse import urlencode

from client import get  # tests/e2e/client.py, beside this file

NET = "11.22.33.44"
PROBES = (("connectivitycheck.gstatic.com", "/generate_204"), ("captive.apple.com", "/hotspot-detect.html"))


class Phone:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def get(self, url: str, host: str | None = None, **kw) -> dict:
        answer = get(url, host, **kw)
        if "status" in answer:
            self.statuses.append(answer["status"])
        else:
            self.errors.append(answer["error"])
        return answer

    def probes(self) -> list[int | None]:
        return [self.get(f"http://{NET}{path}", host).get("status") for host, path in PROBES]

    def signin(self, portal: str, email: str, phone: str, purposes: list[str]) -> dict:
        page = self.get(portal + "/?form=1")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("body", ""))
        if token is None:
            return {"error": "no form", "status": page.get("status")}
        cookie = (page.get("cookie") or "").split(";", 1)[0]
        body = urlencode([("csrf_token", token.group(1)), ("email", email), ("phone", phone), ("terms", "yes"),
                          *(("marketing", p) for p in purposes)])
        answer = self.get(portal + "/connect", method="POST", body=body, timeout=30,
                          headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        return {"status": answer.get("status"), "location": answer.get("location"), "error": answer.get("error")}

    def browse(self) -> int | None:
        return self.get(f"http://{NET}/news", "example.com").get("status")

    def online(self, tries: int = 20) -> bool:
        """The gate opens a moment after the answer: a bounded number of probes."""
        for _ in range(tries):
            if self.probes() == [204, 200]:
                return True
            time.sleep(0.25)
        return False


def arrive(portal: str, email: str, purposes: str, number: str = "-") -> dict:
    phone = Phone()
    before = phone.probes()
    signed = phone.signin(portal, email, "" if number == "-" else number, [p for p in purposes.split(",") if p and p != "-"])
    online = signed.get("status") == 303 and phone.online()
    return {"before": before, "signin": signed, "online": online, "browse": phone.browse() if online else None,
            "statuses": phone.statuses, "errors": phone.errors}


def look(portal: str) -> dict:
    phone = Phone()
    probes = phone.probes()
    splash = phone.get(portal + "/").get("status")
    return {"probes": probes, "splash": splash, "browse": phone.browse(), "statuses": phone.statuses, "errors": phone.errors}


def backoffice(portal: str, office: str) -> dict:
    phone = Phone()
    out = {}
    for name, url in (("panel", portal + "/panel/"), ("login", portal + "/panel/login"),
                      ("office_panel", office + "/panel/login"), ("office_splash", office + "/")):
        answer = phone.get(url, timeout=3)
        out[name] = answer.get("status", answer.get("error"))
    return {**out, "statuses": phone.statuses}


if __name__ == "__main__":
    action, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"arrive": arrive, "look": look, "backoffice": backoffice}[action](*args)))

"""One phone of the field day, run inside its namespace; prints one JSON object.

    python fieldday_phone.py arrive PORTAL EMAIL PURPOSES PHONE [LOGDIR]   OS probes, sign-in form, probes again,
        browse; with LOGDIR, the code the portal's console driver printed (in LOGDIR/portal-*.log) is
        entered on the "online" page, as the guest reading the SMS or email would
    python fieldday_phone.py look PORTAL                     probes and a page, no sign-in
    python fieldday_phone.py backoffice PORTAL OFFICE_URL    a guest trying the manager's panel

PURPOSES: comma-separated marketing purposes ticked on the form ("-" for none); PHONE the number
typed in ("-" for none). Every answer's
status goes into "statuses", so the test can count 5xx over the whole day.
"""
import glob
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
                          ("age", "yes"), ("analytics", "visit_analytics"), ("analytics", "chain_sharing"),
                          *(("marketing", p) for p in purposes)])
        answer = self.get(portal + "/connect", method="POST", body=body, timeout=30,
                          headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        self.cookie = (answer.get("cookie") or cookie).split(";", 1)[0]
        return {"status": answer.get("status"), "location": answer.get("location"), "error": answer.get("error")}

    def enter_code(self, portal: str, logdir: str, destination: str, seen: int) -> dict:
        """Wait (bounded) for the code printed for `destination` after `seen` earlier ones, enter it."""
        code = None
        for _ in range(100):
            codes = codes_for(logdir, destination)
            if len(codes) > seen:
                code = codes[-1]
                break
            time.sleep(0.1)
        if code is None:
            return {"error": "no code"}
        page = self.get(portal + "/online", headers={"Cookie": self.cookie})
        claim = re.search(r'name="claim" value="([0-9a-f]+)"', page.get("body", ""))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("body", ""))
        if claim is None or token is None:
            return {"error": "no code form", "status": page.get("status")}
        answer = self.get(portal + "/verify", method="POST", timeout=30,
                          body=urlencode({"csrf_token": token.group(1), "claim": claim.group(1), "code": code}),
                          headers={"Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"})
        return {"status": answer.get("status"), "location": answer.get("location")}


    def browse(self) -> int | None:
        return self.get(f"http://{NET}/news", "example.com").get("status")

    def online(self, tries: int = 20) -> bool:
        """The gate opens a moment after the answer: a bounded number of probes."""
        for _ in range(tries):
            if self.probes() == [204, 200]:
                return True
            time.sleep(0.25)
        return False


def codes_for(logdir: str, destination: str) -> list[str]:
    """Codes the console driver printed for one destination, oldest first."""
    found = []
    marker = re.compile(r"\[message (?:sms|email) to " + re.escape(destination) + r"\] .*?\b(\d{6})\b")
    for path in sorted(glob.glob(f"{logdir}/portal-*.log")):
        with open(path, errors="replace") as log:
            found += marker.findall(log.read())
    return found


def arrive(portal: str, email: str, purposes: str, number: str = "-", logdir: str = "") -> dict:
    phone = Phone()
    before = phone.probes()
    destination = email if number == "-" else number  # the code goes to the phone first
    seen = len(codes_for(logdir, destination)) if logdir else 0
    signed = phone.signin(portal, email, "" if number == "-" else number, [p for p in purposes.split(",") if p and p != "-"])
    online = signed.get("status") == 303 and phone.online()
    verified = phone.enter_code(portal, logdir, destination, seen) if logdir and online else None
    return {"before": before, "signin": signed, "online": online, "verified": verified,
            "browse": phone.browse() if online else None, "statuses": phone.statuses, "errors": phone.errors}


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

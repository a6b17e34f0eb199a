"""The manager in the back office, run inside the office namespace; prints one JSON object.

    python fieldday_manager.py PORTAL USERNAME [glance]   (password on standard input)

Logs in, opens the dashboard and the leads, adds a segment of everyone ("Field day"), recomputes
the segments, downloads the CSV and Meta exports of that segment; every status is reported.
With `glance`: logs in and reads the dashboard's "visitors today" and the figures' age only.
"""
import json
import re
import sys
from urllib.parse import urlencode

from client import get  # tests/e2e/client.py, beside this file

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    def __init__(self, portal: str) -> None:
        self.portal, self.cookies, self.statuses = portal, {}, []

    def request(self, path: str, form: list | None = None) -> dict:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Accept-Language": "en"}
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = get(self.portal + path, method="POST" if form is not None else "GET",
                     body=urlencode(form) if form is not None else None, headers=headers, timeout=30)
        for raw in [answer.get("cookie") or ""]:
            if "=" in raw:
                name, value = raw.split(";", 1)[0].split("=", 1)
                self.cookies[name] = value
        self.statuses.append(answer.get("status", answer.get("error")))
        return answer

    def token(self, path: str) -> str:
        page = self.request(path)
        found = TOKEN.search(page.get("body", ""))
        if found is None:
            raise SystemExit(json.dumps({"no_form": path, "page": {k: page.get(k) for k in ("status", "location", "error")},
                                         "statuses": self.statuses}))
        return found.group(1)


def main(portal: str, username: str, password: str, mode: str = "day") -> dict:
    b = Browser(portal)
    login = b.request("/panel/login", [("csrf_token", b.token("/panel/login")), ("username", username), ("password", password)])
    out = {"login": login.get("status")}
    dash = b.request("/panel/")
    out["dashboard"] = dash.get("status")
    today = re.search(r'id="kpi-today">(\d+)<', dash.get("body", ""))
    age = re.search(r"Figures computed (\d+) s ago", dash.get("body", ""))
    out["visitors_today"] = int(today.group(1)) if today else None
    out["figures_age"] = int(age.group(1)) if age else None
    if mode == "glance":
        out["statuses"] = b.statuses
        return out
    out["leads"] = b.request("/panel/leads").get("status")
    token = b.token("/panel/segments")
    out["segment_new"] = b.request("/panel/segments/new", [("csrf_token", token), ("name", "Field day"),
                                                         ("visits_min", "0"), ("window_days", "90")]).get("status")
    out["recompute"] = b.request("/panel/segments/recompute", [("csrf_token", b.token("/panel/segments"))]).get("status")
    keys = re.findall(r"/panel/segments/(custom-[0-9]+)/export", b.request("/panel/segments").get("body", ""))
    out["segment"] = keys[0] if keys else None
    # Meta is a transfer abroad: the owner records its assessment first (issue 15), else a 409.
    out["meta_before_assessment"] = b.request(f"/panel/segments/{out['segment']}/export/meta").get("status")
    out["transfer"] = b.request("/panel/compliance/transfers", [("csrf_token", b.token("/panel/compliance")),
                                                                ("platform", "meta"), ("assessed_on", "2026-11-01")]).get("status")
    for kind in ("csv", "meta"):
        answer = b.request(f"/panel/segments/{out['segment']}/export/{kind}")
        out[kind] = {"status": answer.get("status"), "rows": answer.get("body", "").splitlines()}
    out["statuses"] = b.statuses
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.stdin.readline().strip(), *sys.argv[3:])))

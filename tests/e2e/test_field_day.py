"""A day in the shop, as one test (issue 13): the appliance's three processes from one config
file, phones arriving in bursts, leaving and coming back, a manager in the back office, the
central store, a kill -9 of the collector and of the scheduler mid-day, and then both ends
compared. Compressed by default (9 phones, well under 3 minutes); FOOTFALL_FIELD_DAY=full
(`make field-day`) runs 12 phones and waits out real visits (about 7 minutes)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from portal.core import audience
from tests.collector.test_anonymous import traces
from tests.conftest import require
from tests.e2e import fieldday as day
from tests.e2e.fieldday_net import FieldNet, random_mac
from tests.e2e.netns import can_run

FULL = os.environ.get("FOOTFALL_FIELD_DAY") == "full"
BURSTS = (6, 5) if FULL else (4, 4)       # the signers, at once (every combination of choices comes up)
PHONES = sum(BURSTS) + 1                  # the last phone never signs in; a passer-by comes on top
MARKETING = ("marketing_email", "ad_audiences", "marketing_sms")


def choices(i: int) -> list[str]:
    """What phone i ticks: every combination comes up."""
    return [p for bit, p in enumerate(MARKETING) if i >> bit & 1]


def phone_macs(rng: random.Random) -> list[str]:
    """Half the phones with a vendor address (Samsung's OUI), half with a private one; the
    passer-by (last) with a private one."""
    return [f"8c:77:12:00:00:{i:02x}" if i % 2 == 0 else random_mac(rng) for i in range(PHONES)] + [random_mac(rng)]


@pytest.fixture
def field(tmp_path, central_settings, central_app):
    """central_app: the central database opened in this process too (the schema fixture closes it)."""
    ok, reason = can_run()
    require(ok, reason)
    net = FieldNet(tmp_path, PHONES + 1)  # + the passer-by
    try:
        yield net, central_settings
    finally:
        net.close()


def start_central(net: FieldNet, central_settings, tmp_path) -> tuple[object, int, object]:
    conf = tmp_path / "central.toml"
    conf.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in {
        "data_dir": central_settings.data_dir, "central_dsn": central_settings.central_dsn,
        "central_schema": central_settings.central_schema, "central_listen_host": "127.0.0.1",
        "central_workers": 2, "log_level": "WARNING"}.items()))
    env = {"PYTHONPATH": str(day.ROOT), "PYTHONUNBUFFERED": "1"}
    proc = net.spawn(sys.executable, "-m", "portal", "central", "serve", "--port", "0", "--config", str(conf),
                     ns=None, log="central.log", env=env)
    net.wait_log("central.log", "central listening on", proc, timeout=60)
    port = int(re.search(r"central listening on http://127.0.0.1:(\d+)", (tmp_path / "central.log").read_text()).group(1))
    return proc, port, conf


def test_a_day_in_the_shop(field, tmp_path):
    net, central_settings = field
    started = time.monotonic()
    rng = random.Random(13)
    macs = phone_macs(rng)
    net.build(macs)
    net.start_dnsmasq()
    net.start_internet()
    central, central_port, central_conf = start_central(net, central_settings, tmp_path)
    net.relay(day.SYNC_PORT, central_port)

    config = tmp_path / "footfall.toml"
    config.write_text(day.config_text(tmp_path, sync_interval=5 if not FULL else 10))
    app = day.Appliance(net, config)
    keys = tmp_path / "store.keys"
    subprocess.run([sys.executable, "-m", "portal", "central", "add-store", day.STORE_ID, "--name", "Field Day",
                    "--keys-file", str(keys), "--config", str(central_conf)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(day.ROOT)}, timeout=60)
    app.cli("sync", "enroll", "--store-id", day.STORE_ID, "--keys-file", str(keys))
    app.cli("manager", "add", day.MANAGER_USER, "--role", "owner", "--password-stdin", stdin=day.MANAGER_PASSWORD + "\n")
    for name in ("portal", "collector", "scheduler"):
        app.start(name)

    signers = net.phones[:sum(BURSTS)]
    never, passer = net.phones[PHONES - 1], net.phones[PHONES]
    mac_of = dict(zip(net.phones, macs))
    emails = {ns: f"guest{i}@example.com" for i, ns in enumerate(signers)}
    phones = {ns: f"+8490123{i:04d}" if "marketing_sms" in choices(i) else "-" for i, ns in enumerate(signers)}
    wanted = {ns: choices(i) for i, ns in enumerate(signers)}
    results: list[dict] = []
    acknowledged: dict[str, list[str]] = {}   # email -> purposes, for every 303
    data = tmp_path / "data"

    def burst(phones_now: list[str]) -> list[dict]:
        leases = {ns: net.dhcp(ns) for ns in phones_now}  # one after another: the sign-ins are the burst
        assert all(leases.values()), leases
        out = day.at_once([(ns, "fieldday_phone.py", "arrive", day.portal_url(), emails[ns], ",".join(wanted[ns]) or "-",
                            phones[ns], str(net.workdir)) for ns in phones_now])
        # Every guest enters the code (SMS or email, printed by the console driver): proved contacts.
        assert all((a.get("verified") or {}).get("status") == 303 for a in out if a.get("online")), out
        for ns, answer in zip(phones_now, out):
            if answer.get("signin", {}).get("status") == 303:
                acknowledged[emails[ns]] = wanted[ns]
        results.extend(out)
        return out

    def look(ns: str) -> dict:
        answer = day.run_in(ns, "fieldday_phone.py", "look", day.portal_url())
        results.append(answer)
        return answer

    # Morning: the first burst, the phone that never signs in, a passer-by (a lease, a probe, gone).
    first = burst(signers[:BURSTS[0]])
    opened = time.monotonic()
    assert [a["before"] for a in first] == [[302, 302]] * len(first), first
    assert all(a["online"] and a["browse"] == 200 for a in first), first
    for ns in (never, passer):
        assert net.dhcp(ns)
        looked = look(ns)
        assert looked["probes"] == [302, 302] and looked["splash"] == 200 and looked["browse"] == 302, looked
    net.link(passer, up=False)

    # The collector dies (kill -9) with the passer-by's run only in its database, and restarts.
    # Neither the passer-by nor the phone that never signs in agreed to visit analytics: their runs
    # are saved under pseudonyms ("anon"); the first burst's are under their MACs once the
    # collector has read their consents (issue 15).
    morning = sorted([*(mac_of[ns] for ns in signers[:BURSTS[0]]), "anon", "anon"])
    assert day.wait_until(lambda: day.open_runs(data) == morning, 30, every=0.5), (day.open_runs(data), morning)
    app.kill9("collector")
    app.start("collector")

    # Guests try the back office.
    guests = [day.run_in(ns, "fieldday_phone.py", "backoffice", day.portal_url(), day.office_url())
              for ns in (signers[0], never)]
    results.extend(guests)

    # The scheduler dies (kill -9) after a push, with the first burst's events on their way, and restarts.
    assert day.wait_until(lambda: "job push" in app.log("scheduler"), 60, every=0.5)
    app.kill9("scheduler")
    app.start("scheduler")

    # Afternoon: the second burst, and the manager at work.
    second = burst(signers[BURSTS[0]:])
    assert all(a["online"] and a["browse"] == 200 for a in second), second
    manager = day.manager_visit(net)
    dashboard = manager.pop("dashboard_body", "")
    assert manager.get("login") == 302, manager  # to the dashboard
    assert (manager["dashboard"], manager["leads"], manager["segment_new"], manager["recompute"]) == (200, 200, 302, 302), manager
    assert manager["segment"] and manager["csv"]["status"] == 200 and manager["meta"]["status"] == 200, manager
    assert manager["meta_before_assessment"] == 409 and manager["transfer"] in (302, 303), manager

    # The passer-by's run closes by the restarted collector's clock: kept apart, not a visit. The
    # phone that never signs in is still here: its run, restored under its pseudonym, is its own
    # again (not closed as a second passer-by).
    assert day.wait_until(lambda: day.visits(data), 100), "the passer-by's run never closed"
    assert day.visits(data) == [("anon", 1)]

    # Two phones leave and come back; one comes back with a new private address (a new device,
    # the same person). Full day: after a real first visit, away for longer than the visit gap.
    leavers, changer = signers[:2], signers[2]
    if FULL:
        day.wait_until(lambda: time.monotonic() - opened > 90, 100)
    for ns in (*leavers, changer):
        net.link(ns, up=False)
    new_mac = random_mac(rng)
    net.link(changer, up=True, mac=new_mac)
    assert net.dhcp(changer)
    again = day.run_in(changer, "fieldday_phone.py", "arrive", day.portal_url(), emails[changer], ",".join(wanted[changer]) or "-",
                       phones[changer], str(net.workdir))
    results.append(again)
    assert again["before"] == [302, 302] and again["online"], again
    # Her code brings the new address into her record (issue 11: recognised only with a proof).
    assert again["verified"]["status"] == 303, again
    acknowledged[emails[changer]] = wanted[changer]
    # She agreed to visit analytics: the collector follows her new address once it has read that
    # (store.FOLLOWED_REFRESH); her run, begun under a pseudonym, carries on under the MAC.
    assert day.wait_until(lambda: new_mac in day.open_runs(data), 30, every=0.5), day.open_runs(data)
    gone = {mac_of[ns] for ns in (*leavers, changer)}
    if FULL:
        assert day.wait_until(lambda: gone <= {m for m, _ in day.visits(data)}, 150), "the leavers' visits never closed"
    else:
        time.sleep(3)
    for ns in leavers:
        net.link(ns, up=True)
        assert net.dhcp(ns)
        back = look(ns)
        assert back["probes"] == [204, 200] and back["browse"] == 200, back  # still signed in: straight online
    if FULL:  # the returners stay well past the minimum dwell (ARP probes see them every 10 s)
        time.sleep(80)
    # The manager glances at the dashboard: the people here for more than the minimum dwell
    # (as of when the figures were computed) count among today's visitors, figures at most 60 s old.
    glance = day.manager_visit(net, "glance")
    assert glance["dashboard"] == 200 and glance["figures_age"] is not None and glance["figures_age"] <= 60, glance
    surely = day.subjects_today(data, here_for=glance["figures_age"] + 60 + 15)
    assert surely <= glance["visitors_today"] <= day.subjects_today(data), (glance, surely)
    # Nothing of the two who never agreed is in the database nor in its WAL while everything runs.
    for mac in (mac_of[never], mac_of[passer]):
        assert not [t for t in traces(mac) if t in day.file_bytes(data)], mac
    if FULL:  # closing time: everyone leaves, every run closes
        for ns in net.phones[:PHONES]:
            net.link(ns, up=False)
        assert day.wait_until(lambda: not day.open_runs(data), 150), day.open_runs(data)
    expected_visits = [("anon", 1)]
    if FULL:
        expected_visits += [(mac_of[ns], 0) for ns in signers] + [("anon", 0)] + [(mac_of[ns], 0) for ns in leavers] + [(new_mac, 0)]
    # In the store now (open runs): every phone (the one that never signed in under its pseudonym),
    # and the changer's old address until its gap is over.
    present = sorted([*(mac_of[ns] for ns in signers), "anon", new_mac])

    # Closing time: every process stops cleanly, then a last push.
    for name in ("portal", "collector", "scheduler"):
        app.stop(name)
    pushed = json.loads(app.cli("sync", "now", ns=net.gw).stdout.strip().splitlines()[-1])
    central.send_signal(signal.SIGTERM)
    central_exit = central.wait(timeout=day.STOP_BOUND)
    elapsed = time.monotonic() - started

    # -- what the day must show ---------------------------------------------------------------------
    statuses = [s for r in results for s in r.get("statuses", [])]
    assert [r for r in results if "crashed" in r] == []
    assert [s for s in statuses if s >= 500] == [], "a visitor saw a 5xx"
    assert [s for s in manager["statuses"] + glance["statuses"] if not isinstance(s, int) or s >= 500] == []
    # Guests never reach the back office's panel.
    for g in guests:
        assert g["panel"] == 404 and g["login"] == 404, g
        # The gateway's back-office address answers guests too (the portal listens on every
        # address), but its panel does not: the panel answers panel_networks only.
        assert g["office_panel"] == 404, g
    assert app.exits == {"portal": [0], "collector": [0], "scheduler": [0]}, app.exits
    assert central_exit == 0

    appliance = day.appliance_rows(tmp_path / "data")
    central_end = day.central_rows(central_settings.central_dsn, central_settings.central_schema)
    # Every acknowledged sign-in, at both ends, with equal consent counts.
    assert appliance["leads"] == len(acknowledged) == len(signers), (appliance, acknowledged)
    assert central_end["persons"] == appliance["leads"]
    assert central_end["consents"] == appliance["consents"] >= sum(1 + len(p) for p in acknowledged.values())
    # Sync exactly once across the scheduler's kill -9: every outbox event applied once, none twice.
    assert "error" not in pushed, pushed
    assert central_end["applied"] == (appliance["outbox"], 0), (central_end["applied"], appliance["outbox"])
    # Devices: every signer's phone seen (the changer twice), randomized exactly when its address is
    # private; the two who never agreed under pseudonyms only (the randomized bit kept), no other
    # pseudonym left (a signer's, from before the collector read the consent, went with its run).
    seen = {m: r for m, r in appliance["devices"].items()}
    expected_macs = {*(mac_of[ns] for ns in signers), new_mac}
    assert set(seen) - expected_macs == {m for m in seen if m.startswith("anon-")}
    for mac in expected_macs:
        assert seen[mac] == bool(int(mac[:2], 16) & 2), (mac, seen[mac])
    assert {r for m, r in seen.items() if m.startswith("anon-")} == {bool(int(mac_of[ns][:2], 16) & 2) for ns in (never, passer)}
    assert len([m for m in seen if m.startswith("anon-")]) == 2, seen  # one pseudonym each (a day)
    for mac in (mac_of[never], mac_of[passer]):  # not in the file, its WAL, nor any log of the day
        assert not [t for t in traces(mac) if t in day.file_bytes(data)], mac
        assert mac not in "".join(app.log(name) for name in ("portal", "collector", "scheduler")), mac
    assert appliance["linked"] == {macs[net.phones.index(ns)] for ns in signers} | {new_mac}
    assert macs[-1] not in appliance["linked"]
    assert {m for m in appliance["linked"]} <= central_end["devices"]
    # Visits: the passer-by kept apart; a full day closes everyone's visits; the rest are in the store now.
    assert day.visits(data) == sorted(expected_visits)
    # The central store keeps no visit of a device nobody agreed to visit analytics for (issue 15):
    # such visits are never events.
    assert central_end["visits"] == [v for v in day.visits(data) if v[0] != "anon"]
    if not FULL:
        assert day.open_runs(data) == present
    # Segments equal at both ends (members of each non-empty segment).
    assert {k: n for k, n in appliance["segments"].items() if n} == central_end["segments"]
    # Exports exactly as consented: CSV carries the email of those with marketing_email and the
    # phone of those with marketing_sms; Meta the hashed identifiers of those with ad_audiences.
    # Double opt-in (issue 11): only proved contacts count. A guest who gave a phone proved the
    # phone (the code goes there first); one who gave only an email proved the email.
    number = {emails[ns]: (phones[ns] if phones[ns] != "-" else "") for ns in signers}
    proved_email = {e: e if not number[e] else "" for e in number}
    csv_rows = [f"{proved_email[e] if 'marketing_email' in p else ''},{number[e] if 'marketing_sms' in p else ''},,vi"
                for e, p in acknowledged.items() if {"marketing_email", "marketing_sms"} & set(p)]
    assert manager["csv"]["rows"][0] == "\ufeffemail,phone,name,language"  # a UTF-8 BOM first, for Excel
    assert sorted(manager["csv"]["rows"][1:]) == sorted(r for r in csv_rows if r != ",,,vi")
    assert manager["meta"]["rows"][0] == "email,phone"
    assert sorted(manager["meta"]["rows"][1:]) == sorted(
        f"{audience.sha256(proved_email[e]) if proved_email[e] else ''},"
        f"{audience.sha256(audience.meta_phone(number[e])) if number[e] else ''}"
        for e, p in acknowledged.items() if "ad_audiences" in p)
    pushes = [int(n) for n in re.findall(r"job push: \{.*'duplicates': (\d+)", app.log("scheduler"))]
    print(json.dumps({"field_day": "full" if FULL else "compressed", "seconds": round(elapsed, 1), "phones": PHONES,
                      "sign_ins": len(acknowledged), "consents": appliance["consents"], "visits": len(expected_visits),
                      "dashboard_visitors_today": glance["visitors_today"], "figures_age": glance["figures_age"],
                      "scheduler_pushes": len(pushes), "duplicates_reported": sum(pushes) + pushed["duplicates"],
                      "last_push": pushed}))

"""A busy minute in a shop (issue 9): 16 visitors at once on a real portal server, signing in,
coming back, reading and changing their data, while collector replays write visits into the same
SQLite file and the scheduler's jobs recompute segments, purge and push to a real central store;
the portal, a collector and a push are each killed with -9 along the way and restarted.

Nothing a visitor was told succeeded may be missing, nothing may be written twice, and no visitor
may ever see a server error."""
from __future__ import annotations

import http.client
import itertools
import random
import sqlite3
import threading
import time

import pytest

from portal.config import key_path
from portal.db import database
from portal.identity import Vault, load_or_create_keys
from tests.soak.harness import ROOT, Background, Portal, run, store_pcap
from tests.visitors_load import Tally, Visitor, source_ip, timed_sign_in

VISITORS = 16
LOAD_SECONDS = 30
PURPOSES = ("marketing_email", "ad_audiences")


@pytest.fixture
def shop(app, central_settings, tmp_path):
    """The appliance's data directory, enrolled at a central store that runs as its own process."""
    from tests.central.test_sync_e2e import enroll_store
    from tests.livecheck import footfall_process

    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema, "FOOTFALL_CENTRAL_WORKERS": "2",
           "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    with footfall_process(["central", "serve", "--port", "0"], env, timeout=60) as (_proc, central_port):
        keys = enroll_store(central_settings, app)
        settings = app.extensions["footfall"].settings
        database.close()
        yield {
            "settings": settings, "keys": keys,
            "env": {"PYTHONPATH": str(ROOT), "FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_GATEWAY": "null",
                    "FOOTFALL_PORTAL_URL": "http://portal.test:8080", "FOOTFALL_LISTEN_HOST": "127.0.0.1",
                    "FOOTFALL_STORE_NAME": settings.store_name, "FOOTFALL_RATE_LIMIT_COUNT": "1000000",
                    "FOOTFALL_LOG_LEVEL": "WARNING", "FOOTFALL_OUI_FILE": "/nonexistent",
                    "FOOTFALL_CENTRAL_URL": f"http://127.0.0.1:{central_port}", "FOOTFALL_SYNC_ALLOW_HTTP": "1",
                    "FOOTFALL_SYNC_BATCH_EVENTS": "200"},
        }


def visitor_loop(port_of, vid: int, stop: threading.Event, tally: Tally, other: Tally) -> None:
    """One visitor after another at this spot in the shop: each a new phone that signs in, reads its
    data, taps "welcome back" and sometimes withdraws a marketing consent."""
    rng = random.Random(vid)
    for i in itertools.count():
        if stop.is_set():
            return
        v = Visitor(port_of(), source_ip(vid + VISITORS * i))
        marketing = tuple(p for p in PURPOSES if rng.random() < 0.5)
        if timed_sign_in(v, f"v{vid}-{i}@example.com", tally, marketing) != 303:
            time.sleep(0.2)  # the portal may be restarting
            continue
        try:
            for answer in (v.my_data(), v.welcome_back(),
                           v.withdraw("marketing_email") if "marketing_email" in marketing else None):
                if answer is not None:
                    other.count(answer.status)
        except (OSError, http.client.HTTPException, AssertionError) as exc:  # the portal was killed under this request
            with other.lock:
                other.failures.append(repr(exc))


def test_a_busy_minute_loses_nothing_and_doubles_nothing(shop, tmp_path):
    env = shop["env"]
    portal = Portal(env)
    portal.start()
    tally, other = Tally(), Tally()
    stop = threading.Event()

    pcaps = []
    for r in range(6):
        path = tmp_path / f"round{r}.pcap"
        store_pcap(path, r, 40, time.time() - 3 * 3600 + r * 600)
        pcaps.append(path)
    collector = Background("collector", lambda: (["collector", "--replay", str(p)] for p in pcaps), env, kill_at=2)
    jobs = ("segments", "purge", "push")
    scheduler = Background("scheduler", lambda: (["jobs", "run", jobs[i % 3]] for i in range(10_000)), env, kill_at=5)

    threads = [threading.Thread(target=visitor_loop, args=(lambda: portal.port, vid, stop, tally, other))
               for vid in range(VISITORS)]
    for t in (*threads, collector, scheduler):
        t.start()
    try:
        time.sleep(LOAD_SECONDS / 2)
        acked_before_kill = len(tally.acknowledged)
        portal.kill9()
        portal.start()
        time.sleep(LOAD_SECONDS / 2)
    finally:
        stop.set()
        scheduler.stop.set()
        for t in threads:
            t.join(60)
        collector.join(120)
        scheduler.join(120)
    portal.stop()  # its exit status on SIGTERM: tests/test_shutdown.py (issue 13)

    # Every visitor answer: never a server error.
    assert tally.server_errors() == 0 and other.server_errors() == 0, (tally.statuses, other.statuses, tally.failures[:5])
    assert len(tally.acknowledged) > acked_before_kill > VISITORS, "the load really ran, on both sides of the kill"
    assert not collector.failures() and not scheduler.failures(), (collector.failures(), scheduler.failures())
    assert collector.killed and scheduler.killed, "a collector and a scheduler job were each killed with -9"

    # Deliver what is left; the push that was killed may have been applied at the central store.
    final = run(["sync", "now"], env)
    assert final.returncode == 0, final.stdout + final.stderr

    db = sqlite3.connect(shop["settings"].data_dir + "/footfall.db")
    vault = Vault(load_or_create_keys(key_path(shop["settings"])))
    held = {row[0] for row in db.execute("SELECT email_index FROM lead WHERE erased_at IS NULL")}
    missing = [e for e in tally.acknowledged if vault.blind_index("email", e) not in held]
    assert not missing, f"acknowledged sign-ins lost: {missing[:5]}"

    # Exactly once on the appliance: one lead per address, one outbox event per consent and per visit.
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert one("SELECT count(*) FROM lead") == one("SELECT count(DISTINCT email_index) FROM lead")
    assert one("SELECT count(*) FROM consent") == one("SELECT count(*) FROM outbox_event WHERE topic = 'consent.recorded'")
    # A visit.closed event for each visit of a followed device (issue 15: the replays' devices never
    # signed in, so theirs are pseudonyms: figures, never events).
    assert one("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE v.source = 'lan' AND d.anonymous = 0") == \
        one("SELECT count(*) FROM outbox_event WHERE topic = 'visit.closed'")
    assert one("SELECT count(*) FROM outbox_event WHERE topic = 'visit.closed' AND payload LIKE '%anon-%'") == 0
    assert one("SELECT count(*) FROM (SELECT device_id, start FROM visit GROUP BY 1, 2 HAVING count(*) > 1)") == 0
    replays_done = len([r for r in collector.results if r[1] == 0])
    assert one("SELECT count(*) FROM visit") >= 40 * replays_done
    assert one("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.anonymous = 1") >= 40 * replays_done
    assert one("SELECT count(*) FROM outbox_event WHERE delivered_at IS NULL") == 0

    # Exactly once at the central store: what the appliance holds, no more.
    from central.db import database as central_db
    with central_db.connection_context():
        counts = {t: central_db.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("person", "consent_event", "visit")}
        # Each event applied once: the stores' counters of applied events (seq high-water mark, issue 18).
        counts["applied"] = central_db.execute_sql("SELECT coalesce(sum(events_applied), 0) FROM store").fetchone()[0]
    assert counts == {"person": one("SELECT count(*) FROM lead"), "consent_event": one("SELECT count(*) FROM consent"),
                      # The central store keeps no visit of a device nobody signed in with (issue 15).
                      "visit": one("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.lead_id IS NOT NULL"),
                      "applied": one("SELECT count(*) FROM outbox_event")}
    db.close()

"""Who the collector may follow (issue 15): a device of a person whose latest visit_analytics
consent is a grant, with no objection or restriction upheld and not erased; anyone else is a
pseudonym. Probe requests heard over the air are aggregate only, whoever sent them."""
import datetime
import json
import sqlite3

import pytest
from scapy.layers.dot11 import Dot11, Dot11ProbeReq, RadioTap
from scapy.utils import wrpcap

from collector.oui import OuiTable
from collector.pipeline import Pipeline
from collector.pseudonyms import PREFIX, Pseudonyms, followed_macs
from collector.service import replay
from collector.store import Store
from portal.db import database, init_db
from tests.collector.test_anonymous import traces
from tests.collector.test_replay import PHONE, T0, arp, capture, follow, rows, settings_for


@pytest.mark.parametrize("how", ["restricted", "withdrew", "erased"])
def test_a_person_under_restriction_or_who_withdrew_is_not_followed(tmp_path, how):
    """The phone's person agreed, then: an objection or restriction upheld by the privacy desk,
    a withdrawal, an erasure. The phone is counted like any device nobody agreed for."""
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    with sqlite3.connect(tmp_path / "data" / "footfall.db") as db:
        if how == "restricted":
            db.execute("UPDATE lead SET restricted_at = '2025-11-23 08:30:00'")
        elif how == "erased":
            db.execute("UPDATE lead SET erased_at = '2025-11-23 08:30:00'")
        else:
            db.execute("INSERT INTO consent (uid, lead_id, purpose, granted, store_id, method, created_at) "
                       "SELECT 'w', id, 'visit_analytics', 0, 'test', 'test', '2025-11-23 08:30:00' FROM lead")
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    stats = replay(settings, pcap)
    db = tmp_path / "data" / "footfall.db"
    assert (stats["visits"], stats["passersby"]) == (3, 1)  # the same figures
    # The phone's own row (written at its sign-in) gained nothing; its visit is a pseudonym's.
    assert rows(db, f"SELECT hostname, dhcp_fingerprint, last_ip FROM device WHERE mac = '{PHONE}'") == [(None, None, None)]
    assert rows(db, "SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.mac LIKE 'anon-%'") == [(4,)]
    assert rows(db, "SELECT count(*) FROM outbox_event WHERE topic = 'visit.closed'") == [(0,)]
    assert b"lan-pixel" not in db.read_bytes()


def test_what_dhcp_said_goes_when_the_person_withdraws(tmp_path):
    """The phone was followed (host name and fingerprint recorded); its person withdraws: the next
    collector run clears them, keeps the row the portal needs (MAC, link) and the visits."""
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    replay(settings, pcap)
    db = tmp_path / "data" / "footfall.db"
    sql = f"SELECT hostname, dhcp_fingerprint, dhcp_vendor, lead_id IS NOT NULL FROM device WHERE mac = '{PHONE}'"
    assert rows(db, sql) == [("lan-pixel", "1,3,6,15,26,28,51,58,59,43", "android-dhcp-14", 1)]
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO consent (uid, lead_id, purpose, granted, store_id, method, created_at) "
                     "SELECT 'w', id, 'visit_analytics', 0, 'test', 'test', '2025-11-24 08:00:00' FROM lead")
    replay(settings, empty_pcap(tmp_path))  # the collector runs again
    assert rows(db, sql) == [(None, None, None, 1)]
    assert rows(db, f"SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.mac = '{PHONE}'") == [(1,)]


def empty_pcap(tmp_path):
    path = tmp_path / "empty.pcap"
    wrpcap(str(path), [arp("3c:22:fb:77:77:77", T0 + 86400)])
    return path


def test_followed_macs_is_the_rule(tmp_path):
    follow(tmp_path, "3c:22:fb:00:00:01", "3c:22:fb:00:00:02", "3c:22:fb:00:00:03")
    follow(tmp_path, "3c:22:fb:00:00:04", granted=False)
    with sqlite3.connect(tmp_path / "footfall.db") as db:
        db.execute("UPDATE lead SET restricted_at = '2025-11-23 09:00:00' WHERE id = 2")
    init_db(tmp_path / "footfall.db")
    try:
        with database.connection_context():
            assert followed_macs(database) == {"3c:22:fb:00:00:01", "3c:22:fb:00:00:03"}
            database.execute_sql("UPDATE lead SET restricted_at = NULL WHERE id = 2")  # lifted
            assert followed_macs(database) == {"3c:22:fb:00:00:01", "3c:22:fb:00:00:02", "3c:22:fb:00:00:03"}
    finally:
        database.close()


def probe(mac, t):
    p = RadioTap(present="dBm_AntSignal", dBm_AntSignal=-70) / Dot11(type=0, subtype=4, addr2=mac) / Dot11ProbeReq()
    p.time = t
    return p


def test_probe_requests_are_counted_under_one_name_a_day_whoever_sent_them(tmp_path):
    """Three phones heard over the air (one of them followed on the guest LAN), one of them twice:
    four passers-by over the air, all under the day's one aggregate name; no MAC, no run saved."""
    macs = ["da:00:00:00:00:01", "da:00:00:00:00:02", PHONE]
    frames = [probe(mac, T0 + i) for i, mac in enumerate(macs)] + [probe(macs[0], T0 + 3600)]
    pcap = tmp_path / "air.pcap"
    wrpcap(str(pcap), frames, linktype=127)
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    stats = replay(settings, pcap)
    assert stats["by_kind"] == {"probe": 4} and stats["passersby"] == 4
    db = tmp_path / "data" / "footfall.db"
    day = datetime.datetime.fromtimestamp(T0).date().isoformat()
    assert rows(db, "SELECT d.mac, d.anonymous, count(*) FROM visit v JOIN device d ON d.id = v.device_id "
                    "WHERE v.source = 'air' GROUP BY d.id") == [(f"{PREFIX}air-{day}", 1, 4)]
    assert rows(db, "SELECT count(*) FROM outbox_event") == [(0,)]
    # The followed phone's own row learned nothing from the air.
    assert rows(db, f"SELECT first_seen, last_seen FROM device WHERE mac = '{PHONE}'") == [
        ("2025-11-23 08:00:00", "2025-11-23 08:00:00")]
    data = db.read_bytes()
    assert not [t for mac in macs[:2] for t in traces(mac) if t in data]


def test_probe_runs_in_progress_are_never_saved(tmp_path):
    """A live flush saves the guest LAN's runs in progress, never one heard over the air."""
    init_db(tmp_path / "footfall.db")
    try:
        names = Pseudonyms(24, tmp_path / "pseudonym.key", wall=lambda: T0)
        store = Store(OuiTable("/nonexistent"), names)
        store.submit = store.write  # the writer thread is only transport: batches written as handed over
        pipeline = Pipeline(store, 900, 300, pseudonyms=names)
        pipeline.feed(T0, bytes(probe("da:00:00:00:00:01", 0)), 127)
        pipeline.feed(T0 + 1, bytes(arp("3c:22:fb:00:00:05", 0)))
        pipeline.flush()
        assert rows(tmp_path / "footfall.db", "SELECT r.source, d.mac LIKE 'anon-%' FROM open_run r "
                                                "JOIN device d ON d.id = r.device_id") == [("lan", 1)]
        pipeline.flush(final=True)
        assert rows(tmp_path / "footfall.db", "SELECT source, passerby FROM visit ORDER BY source") == [("air", 1), ("lan", 1)]
        assert rows(tmp_path / "footfall.db", "SELECT count(*) FROM open_run") == [(0,)]
    finally:
        database.close()


def test_no_log_line_names_a_device_nobody_agreed_for(tmp_path, caplog):
    """Everything the collector logs while replaying at DEBUG: no MAC of the unfollowed devices."""
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    with caplog.at_level("DEBUG"):
        replay(settings, pcap)
    text = "\n".join(r.getMessage() for r in caplog.records) + json.dumps([r.args for r in caplog.records], default=str)
    assert caplog.records  # the log was captured (the missing vendor file is one line)
    assert "3c:22:fb:01:02:03" not in text and "da:a1:19:00:00:01" not in text

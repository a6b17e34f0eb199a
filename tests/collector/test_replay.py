"""`footfall collector --replay`: a capture in, devices and visits out, the same every time."""
import json
import sqlite3
import threading
import uuid
from pathlib import Path

from click.testing import CliRunner
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dot11 import Dot11, Dot11ProbeReq, RadioTap
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from collector.service import replay
from portal.cli import main
from portal.config import load_settings

T0 = 1_763_884_800.0  # 2025-11-23 08:00 UTC
REGULAR, PASSERBY, PHONE = "3c:22:fb:01:02:03", "da:a1:19:00:00:01", "00:1a:11:aa:bb:cc"


def arp(mac, t, ip="10.77.0.42"):
    p = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=mac, psrc=ip, pdst="10.77.0.1")
    p.time = t
    return p


def dhcp(mac, t, hostname=b"lan-pixel"):
    p = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
         / BOOTP(chaddr=bytes.fromhex(mac.replace(":", ""))) / DHCP(options=[
             ("message-type", "request"), ("requested_addr", "10.77.0.77"), ("hostname", hostname),
             ("param_req_list", [1, 3, 6, 15, 26, 28, 51, 58, 59, 43]), ("vendor_class_id", b"android-dhcp-14"), "end"]))
    p.time = t
    return p


def capture(path):
    packets = []
    # The regular: 40 minutes in the morning, then back in the afternoon for 20 minutes.
    packets += [arp(REGULAR, T0 + m * 60) for m in range(0, 41, 2)]
    packets += [arp(REGULAR, T0 + 6 * 3600 + m * 60) for m in range(0, 21, 2)]
    # A passer-by: two minutes.
    packets += [arp(PASSERBY, T0 + 600 + s, "10.77.0.50") for s in (0, 60, 120)]
    # A phone announcing itself over DHCP, then ARPing for 10 minutes.
    packets += [dhcp(PHONE, T0 + 3600)] + [arp(PHONE, T0 + 3600 + m * 60, "10.77.0.77") for m in range(1, 11)]
    packets.sort(key=lambda p: p.time)
    wrpcap(str(path), packets)
    with open(path, "ab") as fh:  # a malformed record: an Ethernet frame cut at 10 bytes
        fh.write((int(T0 + 7 * 3600)).to_bytes(4, "little") + b"\x00" * 4 + (10).to_bytes(4, "little") * 2 + b"\x01" * 10)
    return len(packets) + 1


def rows(db, sql):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def settings_for(tmp_path, name="data"):
    return load_settings(environ={}, data_dir=str(tmp_path / name), oui_file="/nonexistent")


def follow(data_dir, *macs, granted=True, at="2025-11-23 08:00:00"):
    """Devices signed in (at `at`) by people whose latest visit_analytics consent is `granted`: the
    rows the portal writes at a sign-in and the consent the collector's rule reads, written over a
    connection of its own (as the portal's process would, while a collector runs)."""
    path = Path(data_dir) / "footfall.db"
    if not path.exists():
        from portal.db import database, init_db
        init_db(path)
        database.close()
    with sqlite3.connect(path) as db:
        for mac in macs:
            uid = uuid.uuid4().hex
            lead = db.execute("INSERT INTO lead (uid, language, created_at, updated_at) VALUES (?, 'vi', ?, ?)",
                              (uid, at, at)).lastrowid
            db.execute("INSERT INTO device (mac, first_seen, last_seen, randomized, lead_id) VALUES (?, ?, ?, 0, ?)"
                       " ON CONFLICT(mac) DO UPDATE SET lead_id = excluded.lead_id", (mac, at, at, lead))
            db.execute("INSERT INTO consent (uid, lead_id, purpose, granted, store_id, method, created_at) "
                       "VALUES (?, ?, 'visit_analytics', ?, 'test', 'test', ?)", (uuid.uuid4().hex, lead, granted, at))


def test_replay_yields_devices_and_visits(tmp_path):
    """The phone's person agreed to visit analytics: it is stored as it is. The regular and the
    passer-by did not: pseudonyms, and nothing DHCP or ARP said of them."""
    pcap = tmp_path / "store.pcap"
    total = capture(pcap)
    follow(tmp_path / "data", PHONE)
    stats = replay(settings_for(tmp_path), pcap)
    assert stats["frames"] == total and stats["malformed"] == 1
    assert (stats["visits"], stats["passersby"]) == (3, 1)
    db = tmp_path / "data" / "footfall.db"
    visits = rows(db, 'SELECT d.mac, v.start, v."end", v.passerby FROM visit v JOIN device d ON d.id = v.device_id ORDER BY v.start')
    assert [v[1:] for v in visits] == [
        ("2025-11-23 08:00:00", "2025-11-23 08:40:00", 0),
        ("2025-11-23 08:10:00", "2025-11-23 08:12:00", 1),
        ("2025-11-23 09:00:00", "2025-11-23 09:10:00", 0),
        ("2025-11-23 14:00:00", "2025-11-23 14:20:00", 0),
    ]
    regular, passerby, phone, regular_again = (v[0] for v in visits)
    assert phone == PHONE and regular == regular_again  # one key for the day: one pseudonym a device
    assert len({regular, passerby}) == 2 and all(m.startswith("anon-") for m in (regular, passerby))
    phone_row = rows(db, f"SELECT hostname, dhcp_fingerprint, dhcp_vendor, last_ip, randomized, anonymous FROM device WHERE mac = '{PHONE}'")
    assert phone_row == [("lan-pixel", "1,3,6,15,26,28,51,58,59,43", "android-dhcp-14", "10.77.0.77", 0, 0)]
    assert rows(db, f"SELECT hostname, dhcp_fingerprint, dhcp_vendor, last_ip, vendor, randomized, anonymous, lead_id "
                    f"FROM device WHERE mac IN ('{regular}', '{passerby}') ORDER BY randomized") == [
        (None, None, None, None, None, 0, 1, None), (None, None, None, None, None, 1, 1, None)]
    assert rows(db, "SELECT count(*) FROM open_run") == [(0,)]  # a replay closes every run at the end
    events = [json.loads(p) for (p,) in rows(db, "SELECT payload FROM outbox_event WHERE topic = 'visit.closed'")]
    assert [e["device"] for e in events] == [PHONE]  # a pseudonym's visits are figures, never records


def test_the_same_capture_always_yields_the_same_visits(tmp_path):
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    sql = 'SELECT v.start, v."end", v.source, v.passerby FROM visit v ORDER BY 1, 2'
    results = []
    for name in ("a", "b"):
        replay(settings_for(tmp_path, name), pcap)
        results.append((rows(tmp_path / name / "footfall.db", sql), rows(tmp_path / name / "footfall.db", "SELECT count(*) FROM device")))
    assert results[0] == results[1] and len(results[0][0]) == 4 and results[0][1] == [(3,)]


def test_probe_requests_are_passersby_over_the_air(tmp_path):
    frames = []
    for i, mac in enumerate(["da:00:00:00:00:01", "da:00:00:00:00:02"]):
        p = RadioTap(present="dBm_AntSignal", dBm_AntSignal=-70) / Dot11(type=0, subtype=4, addr2=mac) / Dot11ProbeReq()
        p.time = T0 + i
        frames.append(p)
    pcap = tmp_path / "air.pcap"
    wrpcap(str(pcap), frames, linktype=127)
    stats = replay(settings_for(tmp_path), pcap)
    assert stats["by_kind"] == {"probe": 2} and stats["passersby"] == 2
    assert rows(tmp_path / "data" / "footfall.db", "SELECT DISTINCT source FROM visit") == [("air",)]


def test_cli_replay_prints_stats_and_refuses_bad_files(tmp_path):
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    env = {"FOOTFALL_DATA_DIR": str(tmp_path / "cli"), "FOOTFALL_OUI_FILE": "/nonexistent"}
    result = CliRunner().invoke(main, ["collector", "--replay", str(pcap)], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["visits"] == 3
    bad = tmp_path / "bad.pcap"
    bad.write_text("no")
    result = CliRunner().invoke(main, ["collector", "--replay", str(bad)], env=env)
    assert result.exit_code != 0 and "not a pcap file" in result.output and "Traceback" not in result.output


def test_runs_in_progress_survive_a_restart(tmp_path):
    """Two live-style sessions (flush, not close): the visit spans the restart."""
    from collector.oui import OuiTable
    from collector.pipeline import Pipeline
    from collector.pseudonyms import Pseudonyms
    from collector.store import Store, Writer
    from portal.db import database, init_db

    init_db(tmp_path / "f.db")
    # The key of the day is in its file: after a restart the device has the same pseudonym, and
    # the run saved under it is the device's again (wall: the capture's day is "today").
    names = lambda: Pseudonyms(path=tmp_path / "pseudonym.key", wall=lambda: T0)  # noqa: E731
    try:
        for minutes in (range(0, 11), range(12, 25)):
            writer = Writer(Store(OuiTable("/nonexistent")))
            writer.start()
            pipeline = Pipeline(writer, 900, 300, pseudonyms=names())
            pipeline.restore(writer.store.load_runs())
            pipeline.tick(T0)  # the live loop's first flush may come before the device is seen again
            pipeline.flush()
            for m in minutes:
                pipeline.feed(T0 + m * 60, bytes(arp(REGULAR, 0)))
            pipeline.flush()  # SIGTERM path: save, do not close
            writer.stop()
            assert writer.errors == 0
        assert rows(tmp_path / "f.db", "SELECT start, last, sightings FROM open_run") == [
            ("2025-11-23 08:00:00", "2025-11-23 08:24:00", 24)]
        assert rows(tmp_path / "f.db", "SELECT count(*), min(mac) LIKE 'anon-%' FROM device") == [(1, 1)]
        writer = Writer(Store(OuiTable("/nonexistent")))
        writer.start()
        pipeline = Pipeline(writer, 900, 300, pseudonyms=names())
        pipeline.restore(writer.store.load_runs())
        pipeline.sweep(T0 + 3600)
        pipeline.flush()
        writer.stop()
        assert rows(tmp_path / "f.db", 'SELECT start, "end", passerby FROM visit') == [
            ("2025-11-23 08:00:00", "2025-11-23 08:24:00", 0)]
        assert rows(tmp_path / "f.db", "SELECT count(*) FROM open_run") == [(0,)]
    finally:
        database.close()


def test_stop_event_ends_a_replay_early(tmp_path):
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    stop = threading.Event()
    stop.set()
    stats = replay(settings_for(tmp_path), pcap, stop)
    assert stats["frames"] == 1  # stopped at the first check

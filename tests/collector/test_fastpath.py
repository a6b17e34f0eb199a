"""The fast path (Pipeline.feed_many, remembered parses) against the reference path (Pipeline.feed:
every frame parsed into a sighting): the same stored records, the same counts, on the same input."""
import json
import random
import sqlite3
import time
import uuid

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import wrpcap

from collector import pseudonyms
from collector.parse import Malformed, ethernet_fields, parse_ethernet
from collector.pipeline import Pipeline
from collector.pseudonyms import Pseudonyms
from collector.service import replay
from collector.sessions import LAN, Sessionizer
from collector.store import stamp, uuid4_hexes, visit_payload
from portal.config import load_settings
from tests.collector.test_replay import capture, follow
from tests.perf.bench_collector import arp_frame, dhcp_frame, mdns_frame, other_frame, stored, write_capture

T0 = 1_763_884_800.0
MAC = bytes.fromhex("3c22fb010203")
RANDOM_MAC = bytes.fromhex("daa119aabbcc")


def dhcp(mac, hostname=b"pixel", ciaddr="0.0.0.0", requested="10.77.0.77", op=1):
    m = ":".join(f"{b:02x}" for b in mac)
    return bytes(Ether(src=m, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                 / BOOTP(op=op, chaddr=mac, ciaddr=ciaddr, xid=random.getrandbits(32)) / DHCP(options=[
                     ("message-type", "request"), ("requested_addr", requested), ("hostname", hostname),
                     ("param_req_list", [1, 3, 6, 15]), ("vendor_class_id", b"android-dhcp-14"), "end"]))


def odd_frames():
    """Frames the fast path does not remember, or must not confuse with known ones."""
    m = "3c:22:fb:01:02:03"
    return [
        bytes(Ether(src=m) / Dot1Q(vlan=7) / ARP(hwsrc=m, psrc="10.77.0.9")),               # 802.1Q
        bytes(Ether(src=m) / IPv6(src="fe80::1", dst="ff02::fb") / UDP(sport=5353, dport=5353) / (b"\0" * 12)),
        bytes(Ether(src=m) / IP(src="10.77.0.9", dst="224.0.0.251", options=b"\x01\x01\x01\x00")
              / UDP(sport=5353, dport=5353) / (b"\0" * 12)),                                 # IPv4 options
        bytes(Ether(src="01:00:5e:00:00:fb") / IP(src="10.77.0.9") / UDP(dport=5353)),        # multicast source
        bytes(Ether(src=m) / ARP(hwsrc="00:00:00:00:00:00", psrc="10.77.0.9")),               # no sender
        bytes(Ether(src=m) / IP(src="10.77.0.9") / UDP(dport=53)),                            # other UDP
        dhcp(MAC, op=2),                                                                      # a server's reply
        dhcp(MAC)[:200],                                                                      # truncated BOOTP
        dhcp(MAC, ciaddr="10.77.0.5"),                                                        # a renewal
        dhcp(MAC, hostname=b"other\x07name"),
        arp_frame(MAC, 9)[:30],                                                               # truncated ARP
        b"\x00" * 10,                                                                         # runt
        bytes(Ether(src=m, type=0x88CC) / (b"\0" * 40)),                                      # LLDP
    ]


def write_mixed(path, frames_per_device=40, devices=60):
    """Known devices repeating themselves, odd frames among them, gaps that split visits."""
    rng = random.Random(18)
    records = []
    for d in range(devices):
        mac = bytes([0xDA if d % 3 == 0 else 0x3C, 0x22, 0xFB, 0, d >> 8, d & 255])
        t = T0 + rng.uniform(0, 3600)
        for i in range(frames_per_device):
            t += rng.choice((30, 60, 90, 1200))  # now and then a gap longer than a visit's
            kind = rng.random()
            frame = (arp_frame(mac, d) if kind < 0.4 else dhcp_frame(mac, d) if kind < 0.5
                     else mdns_frame(mac, d) if kind < 0.7 else other_frame(mac) if kind < 0.8
                     else dhcp(mac, hostname=b"h%d" % (i % 3)) if kind < 0.85 else rng.choice(odd_frames()))
            records.append((t + rng.random() * 5, frame))  # a little out of order
    records.sort(key=lambda r: r[0])
    for i in range(0, len(records), 97):  # some frames arrive late
        j = min(len(records) - 1, i + 3)
        records[i], records[j] = records[j], records[i]
    with open(path, "wb") as fh:
        fh.write((0xA1B2C3D4).to_bytes(4, "little") + (2).to_bytes(2, "little") + (4).to_bytes(2, "little")
                 + bytes(8) + (65535).to_bytes(4, "little") + (1).to_bytes(4, "little"))
        for ts, frame in records:
            sec = int(ts)
            fh.write(sec.to_bytes(4, "little") + int((ts - sec) * 1e6).to_bytes(4, "little")
                     + len(frame).to_bytes(4, "little") * 2 + frame)
    return len(records)


def both_ways(tmp_path, pcap, followed=(), **overrides):
    results = {}
    for name, fast in (("fast", True), ("reference", False)):
        settings = load_settings(environ={}, data_dir=str(tmp_path / name), **overrides)
        if followed:
            follow(settings.data_dir, *followed)
        stats = replay(settings, pcap, fast=fast)
        for volatile in ("seconds", "frames_per_s"):
            stats.pop(volatile)
        results[name] = (stats, stored(tmp_path / name / "footfall.db"))
    return results["fast"], results["reference"]


def test_the_replay_capture_stores_the_same_records_both_ways(tmp_path):
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(tmp_path, pcap, oui_file="/nonexistent")
    assert fast_stats == ref_stats
    assert fast_rows == ref_rows and len(fast_rows["visits"]) == 4


def test_a_mixed_capture_with_odd_frames_stores_the_same_records_both_ways(tmp_path):
    pcap = tmp_path / "mixed.pcap"
    write_mixed(pcap)
    # Two of the MACs are the appliance's own: ignored, on both paths. Two devices are followed
    # (their person agreed to visit analytics): stored by MAC; the others under pseudonyms.
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(
        tmp_path, pcap, followed=("3c:22:fb:00:00:02", "da:22:fb:00:00:06"), ignore_macs="3c:22:fb:00:00:01, da:22:fb:00:00:03")
    assert fast_stats == ref_stats
    assert fast_stats["malformed"] > 0 and fast_stats["ignored"] > 0 and set(fast_stats["by_kind"]) == {"arp", "dhcp", "mdns"}
    assert fast_rows == ref_rows
    devices = {row[0]: row for row in fast_rows["devices"]}
    assert "3c:22:fb:00:00:01" not in devices and "3c:22:fb:00:00:02" in devices
    assert {row[5] for row in fast_rows["devices"]} == {0, 1}  # randomized flags both ways
    assert sum(1 for v in fast_rows["visits"] if v[0] == "3c:22:fb:00:00:02") > 1  # gaps split visits
    assert {row[9] for row in fast_rows["devices"]} == {0, 1}  # followed and anonymous both ways
    followed_visits = [v for v in fast_rows["visits"] if not v[0].startswith("anon#")]
    assert {v[0] for v in followed_visits} == {"3c:22:fb:00:00:02", "da:22:fb:00:00:06"}
    assert len(fast_rows["events"]) == len(followed_visits)  # only a followed device's visits are synced


def test_the_benchmark_day_stores_the_same_records_both_ways(tmp_path):
    pcap = tmp_path / "day.pcap"
    write_capture(pcap, 40_000, 2_000)
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(tmp_path, pcap)
    assert fast_stats == ref_stats and fast_stats["frames"] == 40_000
    assert fast_rows == ref_rows and len(fast_rows["devices"]) == 2_000


class Collect:
    def __init__(self):
        self.batches = []

    def submit(self, batch):
        self.batches.append(batch)


def run(frames, fast, chunks=None, entries=1 << 18, save_runs=True):
    writer = Collect()
    # The same key bytes for both paths, so that their batches can be compared name for name.
    names = Pseudonyms(random=random.Random(15).randbytes)
    pipeline = Pipeline(writer, 900, 300, frozenset({"3c:22:fb:00:00:09"}), fast_path_entries=entries, pseudonyms=names,
                        save_runs=save_runs)
    if fast:
        i = 0
        for size in chunks or [len(frames)]:
            pipeline.feed_many(frames[i:i + size])
            i += size
            if size % 3 == 0:
                pipeline.flush()
        pipeline.feed_many(frames[i:])
    else:
        i = 0
        for size in chunks or [len(frames)]:
            for ts, frame in frames[i:i + size]:
                pipeline.feed(ts, frame)
            i += size
            if size % 3 == 0:
                pipeline.flush()
        for ts, frame in frames[i:]:
            pipeline.feed(ts, frame)
    pipeline.flush(final=True)
    return pipeline.stats, writer.batches, pipeline


SEEDS = [arp_frame(MAC, 5), arp_frame(RANDOM_MAC, 6), mdns_frame(MAC, 5), dhcp_frame(MAC, 5), dhcp_frame(RANDOM_MAC, 6),
         other_frame(MAC), dhcp(MAC), arp_frame(bytes.fromhex("3c22fb000009"), 1)]


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SEEDS) - 1), st.integers(0, 400), st.integers(0, 255),
                          st.integers(-1, 400), st.floats(0, 2000)), min_size=1, max_size=60),
       st.lists(st.integers(1, 20), max_size=5))
def test_changed_bytes_never_fool_the_fast_path(edits, chunks):
    """Known frames first, then copies with one byte changed and/or cut short: whatever the
    change, the fast path must count and store exactly what parsing every frame does."""
    frames = [(T0 + i, f) for i, f in enumerate(SEEDS)]
    t = T0 + len(SEEDS)
    for seed, pos, value, cut, step in edits:
        frame = bytearray(SEEDS[seed])
        frame[pos % len(frame)] = value
        if cut >= 0:
            frame = frame[:cut]
        t += step
        frames.append((t, bytes(frame)))
        frames.append((t, SEEDS[seed]))
    fast, ref = run(frames, True, chunks), run(frames, False, chunks)
    assert fast[0] == ref[0]
    assert fast[1] == ref[1]
    assert fast[2].clock == ref[2].clock  # the latest sighting: what a replay sweeps by before a batch


def test_a_small_table_limit_changes_nothing_but_memory():
    rng = random.Random(3)
    frames = []
    for i in range(3000):
        mac = bytes([0x3C, 0x22, 0xFB, 0, 0, rng.randrange(40)])
        frames.append((T0 + i * 7.0, rng.choice((arp_frame, dhcp_frame, mdns_frame))(mac, rng.randrange(3))))
    stats, batches, pipeline = run(frames, True, [500] * 5, entries=8)
    ref_stats, ref_batches, _ = run(frames, False, [500] * 5)
    assert (stats, batches) == (ref_stats, ref_batches)
    assert all(len(t) <= 8 for t in (pipeline._arp, pipeline._mdns, pipeline._dhcp))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
def test_a_replay_saves_no_run_in_progress_and_closes_the_same_visits(fast):
    """A replay (save_runs=False) hands the writer no run in progress at any flush, only what a
    run that saves them would hand it besides: the same visits, devices and pseudonyms."""
    rng = random.Random(18)
    frames = []
    for i in range(4000):
        mac = bytes([0x3C if i % 3 else 0xDA, 0x22, 0xFB, 0, 0, rng.randrange(60)])
        frames.append((T0 + i * 4.0, rng.choice((arp_frame, dhcp_frame, mdns_frame))(mac, rng.randrange(3))))
    saving = run(frames, fast, [600] * 6)
    replaying = run(frames, fast, [600] * 6, save_runs=False)
    assert any(b.runs for b in saving[1])  # the flushes in between did save runs in progress
    assert not any(b.runs for b in replaying[1])
    assert replaying[0] == saving[0]
    strip = lambda batches: [(b.devices, b.visits, b.anonymous) for b in batches if b.devices or b.visits]  # noqa: E731
    assert strip(replaying[1]) == strip(saving[1])
    assert sum(len(b.visits) for b in replaying[1]) > 20


def test_runs_that_start_and_end_between_flushes_cost_no_delete():
    s = Sessionizer(900, 300)
    s.observe("aa", LAN, 0.0)  # never taken: no row to delete when it ends
    s.observe("bb", LAN, 0.0)
    assert [mac for _, mac, _ in s.take_dirty()] == ["aa", "bb"]  # both written from now on
    s.observe("cc", LAN, 10.0)
    s.sweep(2000.0)
    assert sorted((mac, run) for _, mac, run in s.take_dirty()) == [("aa", None), ("bb", None)]
    s.restore(LAN, "dd", 0.0, 100.0, 3)
    s.observe("dd", LAN, 1500.0)  # the gap ends the restored run; the next one keeps its row
    s.close_all()
    assert [(mac, run) for _, mac, run in s.take_dirty()] == [("dd", None)]


def test_stamps_as_strftime_writes_them():
    def reference(ts):
        sec = int(ts)
        micro = int((ts - sec) * 1_000_000 + 0.5)
        if micro == 1_000_000:
            sec, micro = sec + 1, 0
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
        return f"{text}.{micro:06d}" if micro else text

    rng = random.Random(1)
    values = [0.0, 86399.9999996, 86400.0, 951782400.5, 4102444799.000001, T0, T0 + 0.9999999]
    values += [rng.uniform(0, 4e9) for _ in range(20000)] + [float(rng.randrange(0, 4_000_000_000)) for _ in range(2000)]
    assert [stamp(v) for v in values] == [reference(v) for v in values]


def test_visit_payload_is_the_json_of_the_visit():
    for passerby in (True, False):
        expected = json.dumps({"device": "da:a1:19:00:00:01", "start": "2025-11-23 08:00:00", "end": "2025-11-23 08:10:00.5",
                               "passerby": passerby, "source": "lan"})
        assert visit_payload("da:a1:19:00:00:01", "2025-11-23 08:00:00", "2025-11-23 08:10:00.5", passerby, "lan") == expected


def test_outbox_uids_are_uuid4():
    uids = uuid4_hexes(2000)
    assert len(set(uids)) == 2000 and uuid4_hexes(0) == []
    for uid in uids:
        parsed = uuid.UUID(hex=uid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == uid


def test_a_stored_device_row_is_as_before(tmp_path):
    """One device through the JSON statements: every column as the row-at-a-time writer gave it."""
    pcap = tmp_path / "one.pcap"
    frames = [dhcp(MAC, hostname=b"pixel")] + [arp_frame(MAC, 9)] * 3
    packets = []
    for i, f in enumerate(frames):
        p = Ether(f)
        p.time = T0 + i * 60
        packets.append(p)
    wrpcap(str(pcap), packets)
    follow(tmp_path / "d", "3c:22:fb:01:02:03", at="2025-11-23 08:01:00")  # signed in a minute after coming in
    replay(load_settings(environ={}, data_dir=str(tmp_path / "d"), oui_file="/nonexistent"), pcap)
    with sqlite3.connect(tmp_path / "d" / "footfall.db") as db:
        assert db.execute("SELECT mac, first_seen, last_seen, last_ip, vendor, randomized, dhcp_fingerprint, dhcp_vendor, "
                          "hostname FROM device").fetchall() == [
            ("3c:22:fb:01:02:03", "2025-11-23 08:00:00", "2025-11-23 08:03:00", "10.77.0.9", "", 0, "1,3,6,15",
             "android-dhcp-14", "pixel")]
        assert db.execute('SELECT start, "end", source, passerby FROM visit').fetchall() == [
            ("2025-11-23 08:00:00", "2025-11-23 08:03:00", "lan", 1)]
        assert json.loads(db.execute("SELECT payload FROM outbox_event").fetchone()[0])["passerby"] is True


def test_a_capture_cut_short_stores_the_same_records_both_ways(tmp_path):
    """Frames read in place from the file: a last record cut short is counted as truncated and
    the rest stored as the reference path stores them; a few stray bytes after the last record
    (less than a record header) are no record at all."""
    pcap = tmp_path / "cut.pcap"
    write_mixed(pcap, frames_per_device=10, devices=12)
    whole = pcap.read_bytes()
    pcap.write_bytes(whole + (20).to_bytes(4, "little") * 2 + (60).to_bytes(4, "little") * 2 + arp_frame(MAC, 3)[:25])
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(tmp_path / "cut", pcap)
    assert fast_stats == ref_stats and fast_stats["truncated_records"] == 1 and fast_stats["frames"] == 120
    assert fast_rows == ref_rows
    pcap.write_bytes(whole + b"\x00" * 15)
    (fast_stats, fast_rows), (ref_stats, ref_rows) = both_ways(tmp_path / "stray", pcap)
    assert fast_stats == ref_stats and fast_stats["truncated_records"] == 0 and fast_stats["frames"] == 120
    assert fast_rows == ref_rows


def test_frames_of_every_size_around_the_checks_both_ways():
    """Each seed cut at every length: the fast path's checks before its keys (42, 282 bytes)
    and the parser's own must agree on each."""
    frames, t = [], T0
    for seed in SEEDS + odd_frames():
        for cut in range(len(seed) + 1):
            t += 7.0
            frames.append((t, seed[:cut]))
            frames.append((t + 1, seed))
    fast, ref = run(frames, True, [50] * 30), run(frames, False, [50] * 30)
    assert fast[0] == ref[0] and fast[0].malformed > 0
    assert fast[1] == ref[1] and fast[2].clock == ref[2].clock


def test_ethernet_fields_say_what_parse_says():
    for frame in SEEDS + odd_frames():
        try:
            sighting = parse_ethernet(frame, T0)
        except Malformed:
            with pytest.raises(Malformed):
                ethernet_fields(frame)
            continue
        fields = ethernet_fields(frame)
        if sighting is None:
            assert fields is None
        else:
            assert (sighting.mac, sighting.kind, sighting.ip) == fields[:3]
            assert fields[3:] == ((sighting.hostname, sighting.prl, sighting.vendor_class, sighting.client_id)
                                  if sighting.kind == "dhcp" else ())


def test_sweeping_once_a_gap_closes_the_same_visits_as_every_minute():
    """A replay sweeps idle runs once a gap of capture time: the visits are the same records as
    with a sweep every minute (a run's last sighting ends it, whenever it is closed)."""
    rng = random.Random(5)
    frames, t = [], T0
    for i in range(4000):
        t += rng.choice((1.0, 5.0, 30.0, 400.0))
        mac = bytes([0x3C, 0x22, 0xFB, 0, 0, rng.randrange(30)])
        frames.append((t, rng.choice((arp_frame, mdns_frame))(mac, 1)))

    def visits(sweep_seconds):
        writer = Collect()
        pipeline = Pipeline(writer, 900, 300, pseudonyms=Pseudonyms(random=random.Random(15).randbytes),
                            sweep_seconds=sweep_seconds)
        for i in range(0, len(frames), 500):
            pipeline.feed_many(frames[i:i + 500])
            pipeline.flush()
        pipeline.flush(final=True)
        closed = [v for batch in writer.batches for v in batch.visits]
        return sorted(closed, key=lambda v: (v.start, v.mac)), pipeline.stats

    minute, gap = visits(60.0), visits(900.0)
    assert minute == gap and len(minute[0]) > 30


def test_remembered_pseudonyms_go_with_their_key(monkeypatch):
    monkeypatch.setattr(pseudonyms, "TEXTS_KEPT", 3)
    names = Pseudonyms(random=random.Random(4).randbytes)
    day = names.period(T0)
    texts = [names.ident(f"3c:22:fb:00:00:{i:02x}", T0) for i in range(5)]
    assert [names.ident(f"3c:22:fb:00:00:{i:02x}", T0) for i in range(5)] == texts  # the same, remembered or not
    assert sum(len(t) for t in names._texts.values()) <= 3
    names.ident("3c:22:fb:00:00:01", T0 + 86400)
    names.rotate(day + 1)
    assert day not in names._texts and list(names._texts) == [day + 1]
    with pytest.raises(ValueError):
        names.text("3c:22:fb:00:00:01", day)  # yesterday's name cannot be given any more

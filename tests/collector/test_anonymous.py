"""Anonymous by default (issue 15): replayed captures leave no trace of a device whose person did
not agree to visit analytics (bytes of the database and its WAL checked), the figures stay those
of the code before, pseudonyms do not survive their day, followed devices keep their records."""
import datetime
import hmac
import json
import os
import re
import sqlite3
import time

from click.testing import CliRunner

from collector.oui import OuiTable
from collector.pipeline import Pipeline
from collector.pseudonyms import PREFIX, Pseudonyms, purge_anonymous
from collector.service import replay
from collector.store import Store, Writer, stamp
from portal.cli import main
from portal.db import database, init_db
from portal.visits import daily_figures
from tests.collector.test_replay import PASSERBY, PHONE, REGULAR, T0, arp, capture, dhcp, follow, rows, settings_for
from tests.perf.bench_collector import mac_of, write_capture

DAY = 86400.0
TRAVELLER = "3c:22:fb:0a:0b:0c"  # seen on both days


def local_midnight(ts):
    """The first local midnight after ts."""
    day = datetime.datetime.fromtimestamp(ts).date() + datetime.timedelta(days=1)
    return datetime.datetime.combine(day, datetime.time()).timestamp()


NIGHT = local_midnight(T0) - 600  # ten to midnight, local time, on day one
DAY_ONE = datetime.date.fromtimestamp(T0)


def two_days(path):
    """Day one and day two of a store: the traveller both days, one visit crossing midnight."""
    from scapy.utils import wrpcap
    night = NIGHT
    packets = [arp(TRAVELLER, T0 + m * 60) for m in range(0, 31, 3)]                # day one, 30 min
    packets += [arp(TRAVELLER, T0 + DAY + m * 60) for m in range(0, 21, 2)]         # day two, 20 min
    packets += [arp(REGULAR, night + m * 60) for m in range(0, 31, 2)]              # 23:50 -> 00:20
    packets += [dhcp(PHONE, T0 + DAY + 3600)] + [arp(PHONE, T0 + DAY + 3600 + m * 60) for m in range(1, 9)]
    packets.sort(key=lambda p: p.time)
    wrpcap(str(path), packets)


def file_bytes(db_path):
    """The database file and its WAL, as they are on disk."""
    data = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def traces(mac):
    """Every way a MAC may be written: text, bare hex, upper case, the six bytes."""
    raw = bytes.fromhex(mac.replace(":", ""))
    return [mac.encode(), mac.upper().encode(), raw.hex().encode(), raw.hex().upper().encode(), raw]


def leaked(data, macs):
    """The MACs of `macs` written in `data` in any form traces() lists. Each form is looked for by
    its first half (a few distinct halves for thousands of MACs), then checked whole where found."""
    wanted: dict[bytes, set[bytes]] = {}
    for mac in macs:
        for t in traces(mac):
            wanted.setdefault(t[:len(t) // 2], set()).add(t)
    found = set()
    for half, whole in wanted.items():
        lengths = {len(t) for t in whole}
        for hit in re.finditer(re.escape(half), data):
            found.update(data[hit.start():hit.start() + n] for n in lengths)
    return [mac for mac in macs if any(t in found for t in traces(mac))]


def replay_holding_wal(settings, pcap, **kwargs):
    """Replay while another connection stays open: the collector's close is not the last, so the
    WAL stays on disk to be read (as it would beside a running portal)."""
    init_db(settings.data_dir + "/footfall.db")
    database.close()
    holder = sqlite3.connect(settings.data_dir + "/footfall.db")
    holder.execute("SELECT count(*) FROM device").fetchone()
    stats = replay(settings, pcap, **kwargs)
    return holder, stats


def test_no_trace_of_a_device_that_did_not_agree_in_the_database_or_its_wal(tmp_path):
    pcap = tmp_path / "store.pcap"
    capture(pcap)
    settings = settings_for(tmp_path)
    follow(settings.data_dir, PHONE)
    holder, stats = replay_holding_wal(settings, pcap)
    try:
        db = tmp_path / "data" / "footfall.db"
        assert db.with_name("footfall.db-wal").stat().st_size > 0  # the WAL is there and was read
        data = file_bytes(db)
        for mac in (REGULAR, PASSERBY):
            assert not [t for t in traces(mac) if t in data], mac
        assert PHONE.encode() in data and b"lan-pixel" in data  # the check sees what is there
        assert b"10.77.0.42" not in data and b"10.77.0.50" not in data  # nor the others' addresses
        assert stats["visits"] == 3 and stats["passersby"] == 1
    finally:
        holder.close()


def test_the_benchmark_day_leaves_no_mac_and_the_same_figures_as_following_everyone(tmp_path):
    """2,000 devices: none agreed in one replay, all agreed in the other (the code before this
    change stored everyone the way a followed device is stored): the same figures per day."""
    pcap = tmp_path / "day.pcap"
    write_capture(pcap, 40_000, 2_000)
    everyone = [mac_of(d, randomized=d % 3 == 0).hex(":") for d in range(2_000)]
    anonymous, followed = settings_for(tmp_path, "anonymous"), settings_for(tmp_path, "followed")
    follow(followed.data_dir, *everyone, at="2025-11-23 08:00:00")
    holder, stats = replay_holding_wal(anonymous, pcap)
    try:
        data = file_bytes(tmp_path / "anonymous" / "footfall.db")
        assert leaked(data, everyone) == [] and b"host0" not in data and b"android-dhcp" not in data
        assert leaked(data + everyone[7].encode(), everyone) == [everyone[7]]  # the search finds what is there
    finally:
        holder.close()
    followed_stats = replay(followed, pcap)
    assert (followed_stats["visits"], followed_stats["passersby"]) == (stats["visits"], stats["passersby"])
    figures = {}
    for name in ("anonymous", "followed"):
        init_db(tmp_path / name / "footfall.db")
        with database.connection_context():
            figures[name] = daily_figures(datetime.date(2025, 11, 22), datetime.date(2025, 11, 24))
        database.close()
    assert figures["anonymous"] == figures["followed"]
    # The figures the code before this change gave on this capture (measured on commit 303c5d1).
    assert figures["anonymous"]["total"] == BENCHMARK_DAY_BEFORE
    with sqlite3.connect(tmp_path / "anonymous" / "footfall.db") as db:
        assert db.execute("SELECT count(*) FROM outbox_event").fetchone() == (0,)
        assert db.execute("SELECT count(*), sum(anonymous), sum(mac LIKE 'anon-%') FROM device").fetchone() == (2000, 2000, 2000)
    with sqlite3.connect(tmp_path / "followed" / "footfall.db") as db:
        assert db.execute("SELECT count(*) FROM outbox_event").fetchone()[0] == figures["followed"]["total"]["visits"] \
            + figures["followed"]["total"]["passersby"]


BENCHMARK_DAY_BEFORE = {"visits": 2000, "passersby": 0, "over_the_air": 0, "device_days": 2000, "dwell_minutes": 27968.49}


class Keys:
    """os.urandom, remembered: the test knows every key the collector drew, to look for it later."""

    def __init__(self):
        self.drawn = []

    def __call__(self, n):
        key = os.urandom(n)
        self.drawn.append(key)
        return key


def run_days(tmp_path, frames, wall, followed=(), refresh=None):
    """Frames through a pipeline and its writer into a real database; `wall` is "now" for the key
    file (the capture's last day: its key is the one a live collector would still hold)."""
    if followed:
        follow(tmp_path, *followed)
    init_db(tmp_path / "footfall.db")
    keys = Keys()
    names = Pseudonyms(24, tmp_path / "pseudonym.key", random=keys, wall=wall)
    store = Store(OuiTable("/nonexistent"), names)
    store.refresh_followed()
    writer = Writer(store)
    writer.start()
    pipeline = Pipeline(writer, 900, 300, pseudonyms=names)
    try:
        for i, (ts, frame) in enumerate(frames):
            pipeline.feed_many([(ts, frame)])
            if refresh is not None:
                refresh(i, ts, pipeline, store)
            if i % 5 == 4:
                pipeline.flush()
        pipeline.flush(final=True)
    finally:
        writer.stop()
    assert writer.errors == 0
    return names, keys


def frames_of(pcap):
    from collector.pcap import PcapReader
    with PcapReader(pcap) as reader:
        return list(reader)


def test_rotation_makes_yesterdays_pseudonym_unlinkable_to_todays(tmp_path):
    pcap = tmp_path / "days.pcap"
    two_days(pcap)
    frames = frames_of(pcap)
    last = frames[-1][0]
    names, keys = run_days(tmp_path, frames, wall=lambda: last)
    try:
        visits = rows(tmp_path / "footfall.db", 'SELECT d.mac, v.start, v."end", v.passerby FROM visit v '
                                         "JOIN device d ON d.id = v.device_id ORDER BY v.start")
        traveller = [v for v in visits if v[1][11:16] in ("08:00",)]
        assert len(traveller) == 2 and traveller[0][0] != traveller[1][0]  # two days, two names
        assert all(v[0].startswith(PREFIX) for v in visits)
        # The visit across midnight is one visit, under the name of the day it began.
        crossing = [v for v in visits if v[1] == stamp(NIGHT)]
        assert len(crossing) == 1 and crossing[0][2] == stamp(NIGHT + 1800)
        assert len({v[0] for v in visits}) == 4  # traveller x2, the night owl, the phone: one name a device a day
        # Only today's key is left, in memory and in the file; yesterday's is nowhere.
        today = names.period(last)
        assert list(names.alive()) == [today] and len(keys.drawn) == 2
        yesterday_key, today_key = keys.drawn
        key_file = (tmp_path / "pseudonym.key").read_bytes()
        assert today_key in key_file and yesterday_key not in key_file
        for blob in (key_file, file_bytes(tmp_path / "footfall.db")):
            assert yesterday_key not in blob
        assert today_key not in file_bytes(tmp_path / "footfall.db")
        # Today's name is today's key's HMAC of the MAC; yesterday's is not, under any key left.
        def named(key, mac):
            return PREFIX + hmac.digest(key, mac.encode(), "sha256")[:16].hex()

        assert traveller[1][0] == named(today_key, TRAVELLER) and traveller[0][0] == named(yesterday_key, TRAVELLER)
        assert crossing[0][0] == named(yesterday_key, REGULAR)
        assert traveller[0][0] not in [text for _, text in names.candidates(TRAVELLER)]
    finally:
        database.close()


def test_a_device_whose_person_agreed_keeps_its_mac_and_visits(tmp_path):
    pcap = tmp_path / "days.pcap"
    two_days(pcap)
    frames = frames_of(pcap)
    try:
        run_days(tmp_path, frames, wall=lambda: frames[-1][0], followed=(TRAVELLER,))
        visits = rows(tmp_path / "footfall.db", 'SELECT v.start, v."end" FROM visit v JOIN device d ON d.id = v.device_id '
                                         f"WHERE d.mac = '{TRAVELLER}' ORDER BY 1")
        assert [v[0][11:] for v in visits] == ["08:00:00", "08:00:00"]  # both days, one device
        events = [json.loads(p)["device"] for (p,) in rows(tmp_path / "footfall.db", "SELECT payload FROM outbox_event")]
        assert events == [TRAVELLER, TRAVELLER]
        assert rows(tmp_path / "footfall.db", f"SELECT anonymous FROM device WHERE mac = '{TRAVELLER}'") == [(0,)]
    finally:
        database.close()


def test_a_consent_given_during_a_visit_moves_the_run_to_the_mac_once(tmp_path):
    """The person agrees while the device is in the store: the run saved under its pseudonym gives
    its row up, the visit is one visit, under the MAC."""
    frames = [(T0 + m * 60, bytes(arp(PHONE, 0))) for m in range(0, 21)]

    def agree(i, ts, pipeline, store):
        if i == 9:
            follow(tmp_path, PHONE)
            store.refresh_followed()
        if i == 14:  # the batch of frame 9 written: one row of the run in progress, under the MAC
            for _ in range(200):
                found = rows(tmp_path / "footfall.db", "SELECT d.mac FROM open_run r JOIN device d ON d.id = r.device_id")
                if found == [(PHONE,)]:
                    break
                time.sleep(0.02)
            assert found == [(PHONE,)]

    try:
        run_days(tmp_path, frames, wall=lambda: T0, refresh=agree)
        assert rows(tmp_path / "footfall.db", 'SELECT d.mac, v.start, v."end" FROM visit v JOIN device d ON d.id = v.device_id') == [
            (PHONE, "2025-11-23 08:00:00", "2025-11-23 08:20:00")]
        assert rows(tmp_path / "footfall.db", "SELECT count(*) FROM open_run") == [(0,)]
    finally:
        database.close()


def test_anonymous_visits_have_their_own_short_retention(tmp_path):
    pcap = tmp_path / "days.pcap"
    two_days(pcap)
    frames = frames_of(pcap)
    try:
        run_days(tmp_path, frames, wall=lambda: frames[-1][0], followed=(PHONE,))
        now = datetime.datetime(2025, 11, 24, 8, 10) + datetime.timedelta(days=30)
        assert purge_anonymous(database, 30, now) == {"anonymous_visits": 2, "anonymous_devices": 2}  # day one's
        assert rows(tmp_path / "footfall.db", "SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id "
                                       "WHERE d.anonymous = 1") == [(1,)]
        result = purge_anonymous(database, 30, now + datetime.timedelta(days=2))
        assert result == {"anonymous_visits": 1, "anonymous_devices": 1}
        assert rows(tmp_path / "footfall.db", "SELECT d.mac, count(v.id) FROM device d LEFT JOIN visit v ON v.device_id = d.id "
                                       "GROUP BY d.id") == [(PHONE, 1)]  # the followed device's, as retention_days says
    finally:
        database.close()


def test_visits_json_reports_the_figures_for_a_range_of_days(tmp_path):
    pcap = tmp_path / "days.pcap"
    two_days(pcap)
    replay(settings_for(tmp_path), pcap)
    env = {"FOOTFALL_DATA_DIR": str(tmp_path / "data"), "FOOTFALL_OUI_FILE": "/nonexistent"}
    days = [(DAY_ONE + datetime.timedelta(days=i)).isoformat() for i in (-1, 0, 1)]
    result = CliRunner().invoke(main, ["visits", "--json", "--since", days[0], "--until", days[2]], env=env)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert [(d["visits"], d["passersby"], d["devices"]) for d in figures["days"]] == [(0, 0, 0), (2, 0, 2), (2, 0, 2)]
    assert [d["day"] for d in figures["days"]] == days
    assert figures["days"][1]["dwell_minutes"] == 60.0 and figures["total"]["device_days"] == 4
    bad = CliRunner().invoke(main, ["visits", "--json", "--since", days[2], "--until", days[0]], env=env)
    assert bad.exit_code == 2 and "ends before it starts" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(main, ["visits", "--since", "2025-11-24"], env=env)
    assert bad.exit_code == 2 and "--json" in bad.output


def test_the_migration_turns_the_records_of_before_into_pseudonyms_of_a_day(tmp_path):
    """Devices nobody signed in with, recorded by the collector before this change: one
    pseudonym per local day, the same visits, no MAC left in the file, no event naming it."""
    from portal.db import migrate_db, migration_runner
    path = tmp_path / "footfall.db"
    init_db(path, migrate=False)
    try:
        with database.connection_context():
            migration_runner().up(target="0010_verified_contacts")
            q = database.execute_sql
            day_one, day_two = stamp(T0), stamp(T0 + DAY)
            for mac, lead in ((REGULAR, None), (PHONE, 1), (PASSERBY, None)):
                if lead:
                    q("INSERT INTO lead (id, uid, language, created_at, updated_at) VALUES (1, 'u1', 'vi', ?, ?)", (day_one, day_one))
                q("INSERT INTO device (mac, first_seen, last_seen, randomized, hostname, dhcp_fingerprint, lead_id) "
                  "VALUES (?, ?, ?, 0, 'lan-pixel', '1,3,6,15', ?)", (mac, day_one, day_two, lead))
            q("INSERT INTO \"authorization\" (device_id, ip, started_at, expires_at, method) VALUES (3, '10.77.0.50', ?, ?, 'form')",
              (day_one, day_two))  # the gateway's: stays as it is
            for device, start in ((1, T0), (1, T0 + 7200), (1, T0 + DAY), (2, T0)):
                q('INSERT INTO visit (device_id, start, "end", source, passerby) VALUES (?, ?, ?, \'lan\', 0)',
                  (device, stamp(start), stamp(start + 1200)))
                q("INSERT INTO outbox_event (uid, topic, payload, created_at, attempts) VALUES (?, 'visit.closed', ?, ?, 0)",
                  (os.urandom(8).hex(), json.dumps({"device": (REGULAR, PHONE)[device - 1]}), day_one))
            q("INSERT INTO open_run (device_id, source, start, last, sightings) VALUES (1, 'lan', ?, ?, 3)",
              (stamp(T0 + DAY + 3600), stamp(T0 + DAY + 3700)))
            assert migrate_db()[0] == "0011_anonymous_devices"  # (and the later ones)
            devices = q("SELECT mac, anonymous, hostname, dhcp_fingerprint, first_seen, last_seen FROM device ORDER BY id").fetchall()
            assert [d[0] for d in devices[:2]] == [PHONE, PASSERBY] and devices[0][2] == "lan-pixel"  # signed in: as it was
            anonymous = devices[2:]
            assert len(anonymous) == 2 and all(d[0].startswith(PREFIX) and d[1:4] == (1, None, None) for d in anonymous)
            per_device = q("SELECT d.mac, count(v.id), min(v.start) FROM device d JOIN visit v ON v.device_id = d.id "
                           "WHERE d.anonymous = 1 GROUP BY d.id ORDER BY 3").fetchall()
            assert [n for _, n, _ in per_device] == [2, 1]  # day one's two visits, day two's one
            run_owner = q("SELECT d.mac FROM open_run r JOIN device d ON d.id = r.device_id").fetchone()[0]
            assert run_owner == per_device[1][0]  # the run in progress on day two: day two's pseudonym
            assert [json.loads(p)["device"] for (p,) in q("SELECT payload FROM outbox_event")] == [PHONE]
            assert q("SELECT count(*) FROM visit").fetchone() == (4,)
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        database.close()
    data = file_bytes(path)
    assert not [t for t in traces(REGULAR) if t in data]  # secure_delete: not in a free page either
    assert PHONE.encode() in data


def test_the_dashboard_and_visitor_figures_read_pseudonymous_devices(tmp_path):
    from portal.metrics import dashboard
    from portal.visits import summarize, visitor_stats
    pcap = tmp_path / "days.pcap"
    two_days(pcap)
    replay(settings_for(tmp_path), pcap)
    init_db(tmp_path / "data" / "footfall.db")
    try:
        with database.connection_context():
            now = datetime.datetime.utcfromtimestamp(T0 + DAY + 4 * 3600)
            board = dashboard(now)
            stats = visitor_stats(30, now)
            figures = daily_figures(DAY_ONE, DAY_ONE + datetime.timedelta(days=1))
        assert board.visits_30 == figures["total"]["visits"] == 4
        assert sum(n for _, n in board.per_day) == 4 and sum(n for _, n in board.dwell) == 4
        # One name a device a day: the traveller counts once each day, as devices per day say.
        assert board.visitors_30 == figures["total"]["device_days"] == 4
        summary = summarize(stats, 30)
        assert summary.people == 0 and summary.anonymous_devices == 4 and summary.visits == 4
        assert all(s.subject.startswith("device:" + PREFIX) for s in stats)
    finally:
        database.close()


def test_the_migration_also_runs_after_the_later_ones(tmp_path):
    """A box that ran main while this change was reverted has the later migrations (their triggers
    on visit and device among them) and not this one: it applies all the same."""
    from portal.db import migrate_db
    path = tmp_path / "footfall.db"
    init_db(path)
    try:
        with database.connection_context():
            q = database.execute_sql
            q("DROP INDEX device_anonymous_last_seen")
            q("ALTER TABLE device DROP COLUMN anonymous")
            q("DELETE FROM schema_migration WHERE name = '0011_anonymous_devices'")
            q("INSERT INTO device (mac, first_seen, last_seen, randomized, hostname) VALUES (?, ?, ?, 0, 'lan-pixel')",
              (REGULAR, stamp(T0), stamp(T0 + 1800)))
            q('INSERT INTO visit (device_id, start, "end", source, passerby) VALUES (1, ?, ?, \'lan\', 0)',
              (stamp(T0), stamp(T0 + 1800)))
        assert migrate_db() == ["0011_anonymous_devices"]
        with database.connection_context():
            assert [(m.startswith(PREFIX), a, h) for m, a, h in database.execute_sql(
                "SELECT mac, anonymous, hostname FROM device").fetchall()] == [(True, 1, None)]
            assert database.execute_sql("SELECT count(*) FROM visit").fetchone() == (1,)
    finally:
        database.close()

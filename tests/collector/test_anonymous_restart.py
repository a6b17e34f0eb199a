"""Anonymous by default across a restart (issue 15; the bug that got the first version reverted):
the collector is killed mid-run with runs saved under pseudonyms; after the restart a device seen
again carries its run on (adopted: one visit, its true start), a device whose person signed in
meanwhile, or signs in later, carries it on under its MAC, and a run whose device never comes back
is swept and closed. Live-style sessions: feed_many, ticks and flushes, never a final close."""
import json

from collector.oui import OuiTable
from collector.pipeline import Pipeline
from collector.pseudonyms import PREFIX, Pseudonyms
from collector.store import Store, stamp
from portal.db import database, init_db
from tests.collector.test_replay import T0, arp, follow, rows

STAYS, SIGNED, LATER, PASSER = "3c:22:fb:0a:00:01", "3c:22:fb:0a:00:02", "da:22:fb:0a:00:03", "da:22:fb:0a:00:04"
GAP, DWELL = 300.0, 180.0


class Session:
    """One run of the collector, as service.run_live builds it: the key file beside the database,
    who is followed read at start (and by the store after its batches), the runs saved in progress
    restored. Batches are written as they are handed over (the writer thread is only transport)."""

    def __init__(self, tmp_path, wall=T0):
        self.names = Pseudonyms(24, tmp_path / "pseudonym.key", wall=lambda: wall)
        self.store = Store(OuiTable("/nonexistent"), self.names)
        self.store.refresh_followed()
        self.submit = self.store.write  # the pipeline's writer: submit(batch)
        self.pipeline = Pipeline(self, GAP, DWELL, flush_seconds=3600, pseudonyms=self.names)
        self.pipeline.restore(self.store.load_runs())

    def frames(self, ts, *macs):
        """The live loop's turn: a batch of frames, a tick, a flush."""
        self.pipeline.feed_many([(ts, bytes(arp(mac, 0))) for mac in macs])
        self.pipeline.tick(ts)
        self.pipeline.flush()


def named(mac):
    return "anon" if mac.startswith(PREFIX) else mac


def open_runs(db):
    return sorted((named(mac), start, n) for mac, start, n in rows(
        db, "SELECT d.mac, r.start, r.sightings FROM open_run r JOIN device d ON d.id = r.device_id"))


def test_runs_saved_under_pseudonyms_are_adopted_after_a_restart_and_swept_when_their_device_is_gone(tmp_path):
    db = tmp_path / "footfall.db"
    init_db(db)
    try:
        first = Session(tmp_path)
        for m in range(0, 3):  # three minutes: everyone is here, nobody agreed to anything yet
            first.frames(T0 + m * 60, STAYS, SIGNED, LATER, PASSER)
        before = rows(db, "SELECT d.mac, r.start FROM open_run r JOIN device d ON d.id = r.device_id ORDER BY d.mac")
        assert len(before) == 4 and all(mac.startswith(PREFIX) for mac, _ in before)
        assert {start for _, start in before} == {stamp(T0)}
        keys = first.names.alive()
        # kill -9: nothing closed, nothing saved after the last flush.

        follow(tmp_path, SIGNED, at=stamp(T0 + 150))  # signed in while the collector was down
        second = Session(tmp_path)
        assert second.names.alive() == keys  # the key of the day came back from its file
        assert second.pipeline.sessions.open_count() == 4
        second.frames(T0 + 200)  # the first tick and flush come before any device is seen again
        for m in range(4, 8):  # the passer-by is gone; the three others are still here
            second.frames(T0 + m * 60, STAYS, SIGNED, LATER)
        # Each run carried on from where it was (one row each, its true start), the signer's under its MAC.
        assert open_runs(db) == sorted([("anon", stamp(T0), 3), ("anon", stamp(T0), 7), ("anon", stamp(T0), 7),
                                        (SIGNED, stamp(T0), 7)])

        follow(tmp_path, LATER, at=stamp(T0 + 8 * 60))  # signs in after the restart, in the store
        second.store.refresh_followed()
        for m in range(8, 10):
            second.frames(T0 + m * 60, STAYS, SIGNED, LATER)
        # The passer-by's restored run was swept (its device never came back: silent for longer than the gap).
        assert open_runs(db) == sorted([("anon", stamp(T0), 9), (SIGNED, stamp(T0), 9), (LATER, stamp(T0), 9)])
        assert [(named(m), p) for m, p in rows(db, "SELECT d.mac, v.passerby FROM visit v JOIN device d ON d.id = v.device_id")] \
            == [("anon", 1)]

        # Later the others leave: one visit each, from its start before the restart.
        second.frames(T0 + 9 * 60 + GAP + 61)
        visits = rows(db, 'SELECT d.mac, v.start, v."end", v.passerby FROM visit v JOIN device d ON d.id = v.device_id '
                          "ORDER BY d.mac")
        assert sorted((named(mac), start, end, p) for mac, start, end, p in visits) == sorted([
            ("anon", stamp(T0), stamp(T0 + 120), 1),  # the passer-by: two minutes
            ("anon", stamp(T0), stamp(T0 + 540), 0),  # stayed, never agreed
            (SIGNED, stamp(T0), stamp(T0 + 540), 0), (LATER, stamp(T0), stamp(T0 + 540), 0)])
        assert rows(db, "SELECT count(*) FROM open_run") == [(0,)]
        # Only the signed-in devices' visits are events; the pseudonyms their runs had are gone
        # (no row left without a visit), and no MAC of the others is anywhere.
        events = sorted(json.loads(p)["device"] for (p,) in rows(db, "SELECT payload FROM outbox_event"))
        assert events == sorted([SIGNED, LATER])
        assert rows(db, "SELECT count(*) FROM device WHERE anonymous = 1") == [(2,)]
        macs = {m for (m,) in rows(db, "SELECT mac FROM device")}
        assert STAYS not in macs and PASSER not in macs
    finally:
        database.close()


def test_after_a_restart_on_the_next_day_yesterdays_runs_are_swept_under_yesterdays_pseudonyms(tmp_path):
    """Stopped before midnight, started after: yesterday's key is gone (the file never keeps a past
    period's key), so no device can be recognized as the owner of a run saved under it. Those runs
    are swept and closed as they were; the devices seen today start runs of their own."""
    from tests.collector.test_anonymous import local_midnight
    db = tmp_path / "footfall.db"
    init_db(db)
    night = local_midnight(T0) - 300  # five to midnight
    try:
        first = Session(tmp_path, wall=night)
        for m in range(0, 4):
            first.frames(night + m * 60, STAYS, PASSER)  # then the collector stops, before midnight
        keys = first.names.alive()
        second = Session(tmp_path, wall=night + 600)
        assert second.pipeline.sessions.open_count() == 2 and not set(second.names.alive()) & set(keys)
        for m in range(10, 20):
            second.frames(night + m * 60, STAYS)
        second.frames(night + 20 * 60 + GAP + 61)
        visits = rows(db, 'SELECT d.mac, v.start, v."end", v.passerby FROM visit v JOIN device d ON d.id = v.device_id')
        assert sorted((v[1], v[2], v[3]) for v in visits) == [
            (stamp(night), stamp(night + 180), 0), (stamp(night), stamp(night + 180), 0),  # yesterday's two runs
            (stamp(night + 600), stamp(night + 1140), 0)]  # today's
        assert len({v[0] for v in visits}) == 3 and all(v[0].startswith(PREFIX) for v in visits)
        assert rows(db, "SELECT count(*) FROM open_run") == [(0,)]
    finally:
        database.close()

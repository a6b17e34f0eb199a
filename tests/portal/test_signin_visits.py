"""Figures from day one (issue 16): sign-ins become visits where no collector saw the device,
never counted twice, per person only for people whose visits may be followed. Time is simulated:
every step of the job is given its `now`."""
import datetime

import pytest

from portal import consent, metrics, segments, signin_visits
from portal.db import database
from portal.gateway.nftables import parse_neighbours
from portal.gateway.opennds import parse_ndsctl_clients
from portal.models import Authorization, Device, Lead, OpenRun, OutboxEvent, SigninRun, Visit

T0 = datetime.datetime(2026, 11, 23, 8, 0)
MIN = datetime.timedelta(minutes=1)
GAP = 15


@pytest.fixture
def db(domain_db):
    """A real SQLite file of its own (no app: these are domain functions)."""
    return database


def person(followed: bool = True) -> Lead:
    lead = Lead.create()
    consent.record(lead, "visit_analytics", followed, consent.Where("store-1", None, None, "portal_form"))
    return lead


def device(n: int, lead: Lead | None = None) -> Device:
    return Device.create(mac=f"02:00:00:00:16:{n:02x}", lead=lead)


def sign_in(dev: Device, at: datetime.datetime, method: str = "form") -> None:
    Authorization.create(device=dev, lead=dev.lead_id, ip=f"10.0.0.{dev.id}", started_at=at,
                         expires_at=at + datetime.timedelta(hours=24), method=method)


def job(at: datetime.datetime, activity: dict | None = None, gateway: str = "null") -> signin_visits.Tally:
    return signin_visits.run(GAP, now=at, activity=activity, gateway=gateway)


def signin_rows() -> list[tuple[str, datetime.datetime, datetime.datetime]]:
    return [(v.device.mac, v.start, v.end) for v in Visit.select().where(Visit.origin == "signin").order_by(Visit.start)]


def test_a_sign_in_alone_is_one_visit_from_the_sign_in_to_the_last_sign_of_life(db):
    dev = device(1, person())
    job(T0 - MIN)                                   # the first run: nothing yet
    sign_in(dev, T0)
    job(T0 + 5 * MIN, {dev.mac: T0 + 4 * MIN})     # the job polls every 5 minutes
    job(T0 + 10 * MIN, {dev.mac: T0 + 9 * MIN})
    job(T0 + 20 * MIN, {dev.mac: T0 + 18 * MIN})   # the gateway saw it 18 minutes in
    assert signin_rows() == []                      # still here (silent less than the gap)
    tally = job(T0 + 40 * MIN)
    assert (tally.visits, tally.followed) == (1, 1)
    assert signin_rows() == [(dev.mac, T0, T0 + 18 * MIN)]
    assert SigninRun.select().count() == 0
    assert job(T0 + 60 * MIN).visits == 0           # idempotent: nothing written twice


def test_a_sign_in_without_any_later_sign_of_life_is_never_of_zero_length(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 30 * MIN)
    assert signin_rows() == [(dev.mac, T0, T0 + signin_visits.SIGNIN_FLOOR)]
    assert Visit.get().passerby is False


def test_a_collector_visit_first_means_the_sign_in_is_not_counted_again(db):
    dev = device(1, person())
    job(T0 - MIN)
    Visit.create(device=dev, start=T0 - 5 * MIN, end=T0 + 25 * MIN)   # the collector's
    sign_in(dev, T0)
    tally = job(T0 + 60 * MIN)
    assert (tally.visits, tally.covered) == (0, 1)
    assert Visit.select().count() == 1


def test_a_collector_run_in_progress_means_the_sign_in_is_not_counted(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    OpenRun.create(device=dev, source="lan", start=T0 - 2 * MIN, last=T0 + 50 * MIN)
    assert job(T0 + 60 * MIN).covered == 1
    assert signin_rows() == []


def test_a_collector_visit_that_arrives_later_replaces_the_sign_in_visit(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 30 * MIN)
    assert len(signin_rows()) == 1
    assert OutboxEvent.select().where(OutboxEvent.topic == "visit.closed").count() == 1
    Visit.create(device=dev, start=T0 - 3 * MIN, end=T0 + 22 * MIN)   # a replay, a late collector
    assert job(T0 + 35 * MIN).withdrawn == 1
    assert [(v.origin, v.start) for v in Visit.select()] == [("collector", T0 - 3 * MIN)]
    assert OutboxEvent.select().where(OutboxEvent.topic == "visit.closed").count() == 0   # not sent yet: gone too


def test_a_reconnection_after_the_gap_is_a_second_visit(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 10 * MIN, {dev.mac: T0 + 10 * MIN})
    job(T0 + 30 * MIN)                                          # left at +10: first visit closed
    sign_in(dev, T0 + 90 * MIN, method="welcome_back")          # back, welcomed
    job(T0 + 100 * MIN, {dev.mac: T0 + 100 * MIN})
    job(T0 + 200 * MIN, {dev.mac: T0 + 100 * MIN})              # a stale report opens nothing
    assert signin_rows() == [(dev.mac, T0, T0 + 10 * MIN), (dev.mac, T0 + 90 * MIN, T0 + 100 * MIN)]


def test_a_device_back_within_its_authorization_without_signing_in_is_a_new_visit(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 5 * MIN, {dev.mac: T0 + 5 * MIN})
    job(T0 + 60 * MIN, {dev.mac: T0 + 58 * MIN})   # gone at +5, back at +58: two visits
    job(T0 + 120 * MIN)
    assert signin_rows() == [(dev.mac, T0, T0 + 5 * MIN), (dev.mac, T0 + 58 * MIN, T0 + 58 * MIN + MIN)]


def test_a_renewal_within_the_gap_extends_the_same_visit(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    sign_in(dev, T0 + 10 * MIN, method="renew")
    job(T0 + 60 * MIN)
    assert signin_rows() == [(dev.mac, T0, T0 + 10 * MIN)]


def test_someone_not_followed_counts_in_totals_under_a_pseudonym_never_per_person(db):
    lead = person(followed=False)
    dev = device(1, lead)
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 10 * MIN, {dev.mac: T0 + 10 * MIN})
    job(T0 + 20 * MIN, {dev.mac: T0 + 20 * MIN})
    tally = job(T0 + 60 * MIN)
    assert (tally.visits, tally.followed) == (1, 0)
    (visit,) = Visit.select()
    assert visit.device_id != dev.id and visit.device.lead_id is None
    assert visit.device.mac.startswith("anon-") and len(visit.device.mac) == 37
    assert (visit.start, visit.end) == (T0, T0 + 20 * MIN)
    assert Visit.select().where(Visit.device == dev).count() == 0       # nothing on the MAC's row
    assert OutboxEvent.select().where(OutboxEvent.topic == "visit.closed").count() == 0
    figures = metrics.dashboard(T0 + 60 * MIN)
    assert (figures.visitors_today, figures.visits_30) == (1, 1)
    assert (figures.new_30, figures.returning_30, sum(n for _, n in figures.frequency)) == (0, 0, 0)
    assert all(n == 0 for n in segments.recompute(T0 + 60 * MIN).values())


def test_a_followed_person_is_in_segments_and_the_central_store_learns_the_visit(db):
    lead = person()
    dev = device(1, lead)
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + 60 * MIN, {dev.mac: T0 + 30 * MIN})
    figures = metrics.dashboard(T0 + 60 * MIN)
    assert (figures.visitors_today, figures.new_30) == (1, 1)
    assert segments.recompute(T0 + 60 * MIN)["new"] == 1
    (event,) = OutboxEvent.select().where(OutboxEvent.topic == "visit.closed")
    assert dev.mac in event.payload and '"passerby": false' in event.payload


def test_on_the_appliance_lan_a_pseudonym_seen_by_the_collector_stands_for_someone_not_followed(db):
    dev = device(1, person(followed=False))
    job(T0 - MIN)
    sign_in(dev, T0)
    anon = Device.create(mac="anon-" + "ab" * 16)
    Visit.create(device=anon, start=T0 - 2 * MIN, end=T0 + 30 * MIN)
    assert job(T0 + 60 * MIN, gateway="nftables").covered == 1
    assert signin_rows() == []


def test_behind_an_opennds_router_sign_ins_count_whatever_the_collector_saw_elsewhere(db):
    dev = device(1, person(followed=False))
    job(T0 - MIN)
    sign_in(dev, T0)
    Visit.create(device=Device.create(mac="anon-" + "cd" * 16), start=T0 - 2 * MIN, end=T0 + 30 * MIN)
    assert job(T0 + 60 * MIN, gateway="opennds").visits == 1


def test_the_first_run_reads_the_last_day_of_sign_ins_only(db):
    old, new = device(1, person()), device(2, person())
    sign_in(old, T0 - datetime.timedelta(days=3))
    sign_in(new, T0 - 2 * datetime.timedelta(hours=1))
    assert job(T0).visits == 1
    assert [mac for mac, *_ in signin_rows()] == [new.mac]


def test_an_erased_device_leaves_no_run_behind(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + MIN)
    dev.delete_instance(recursive=True)
    assert job(T0 + 60 * MIN).visits == 0
    assert SigninRun.select().count() == 0


def test_probes_of_an_online_device_are_its_signs_of_life(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + MIN)
    seen = signin_visits.LastSeen(every=3600, gap_minutes=GAP)
    seen.touch(f"10.0.0.{dev.id}", at=T0 + 12 * MIN)
    seen.touch("10.9.9.9", at=T0 + 12 * MIN)                 # nobody's authorization
    assert seen.flush(now=T0 + 13 * MIN) == 1
    job(T0 + 60 * MIN)
    assert signin_rows() == [(dev.mac, T0, T0 + 12 * MIN)]


OPENNDS_JSON = """{
  "client_list_length":"2",
  "clients":{
    "02:00:00:00:16:01":{ "gatewayname":"shop", "mac":"02:00:00:00:16:01", "ip":"10.0.0.5",
      "session_start":"1763884800", "session_end":"null", "last_active":"1763885700",
      "state":"Authenticated" },
    "02:00:00:00:16:02":{ "mac":"02:00:00:00:16:02\\n", "last_active":"1763885700" },
    "x":{ "mac":"02:00:00:00:16:03", "last_active":"-1" }
  }
}"""


def test_opennds_last_active_is_read_from_ndsctl_json():
    assert parse_ndsctl_clients(OPENNDS_JSON) == {"02:00:00:00:16:01": datetime.datetime(2025, 11, 23, 8, 15)}
    assert parse_ndsctl_clients("ndsctl: opennds is probably not started") == {}
    trailing = OPENNDS_JSON + "\npgrep: pattern that searches for process name longer than 15 characters\n"
    assert parse_ndsctl_clients(trailing) == parse_ndsctl_clients(OPENNDS_JSON)   # as the real daemon's host prints


@pytest.mark.parametrize("text", ["", "[]", "{}", "not json"])
def test_no_neighbours_from_what_ip_cannot_say(text):
    assert parse_neighbours(text, T0) == {}


def test_neighbours_confirmed_reachable_are_signs_of_life():
    text = ('[{"dst":"10.0.0.5","lladdr":"02:00:00:00:16:01","used":5,"confirmed":30,"state":["REACHABLE"]},'
            '{"dst":"fe80::1","lladdr":"02:00:00:00:16:01","used":5,"confirmed":90,"state":["STALE"]},'
            '{"dst":"10.0.0.6","lladdr":"02:00:00:00:16:02","confirmed":3,"state":["FAILED"]},'
            '{"dst":"10.0.0.7","confirmed":3,"state":["INCOMPLETE"]}]')
    assert parse_neighbours(text, T0) == {"02:00:00:00:16:01": T0 - datetime.timedelta(seconds=30)}


def test_someone_signed_in_now_counts_as_a_visitor_today_once(db):
    dev = device(1, person())
    job(T0 - MIN)
    sign_in(dev, T0)
    job(T0 + MIN)
    assert metrics.dashboard(T0 + 2 * MIN).visitors_today == 1
    OpenRun.create(device=dev, source="lan", start=T0 - 8 * MIN, last=T0 + 2 * MIN)   # the collector sees it too
    assert metrics.dashboard(T0 + 2 * MIN).visitors_today == 1
    assert metrics.dashboard(T0 + 30 * MIN).visitors_today == 0                       # gone, no visit closed yet


def test_migration_0022_keeps_the_visit_tables_triggers_and_indexes(db):
    """Adding visit.origin must not rebuild the table: the segment triggers (0021) would go with it."""
    triggers = {row[0] for row in db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'visit'")}
    assert {"segment_dirty_visit_ins", "segment_dirty_visit_del", "segment_dirty_visit_upd"} <= triggers
    indexes = {row[0] for row in db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'visit'")}
    assert {"visit_start_passerby_source_device_id_end", "visit_device_id_passerby_source_start_end",
            "visit_end_followed"} <= indexes

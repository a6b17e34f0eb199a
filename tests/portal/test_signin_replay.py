"""Figures from day one (issue 16), end to end: a shop's capture replayed by the real collector,
and sign-ins of some of the same phones and of others it never saw; every presence counts once."""
import datetime
import time

from portal import consent, metrics, signin_visits
from portal.db import database
from portal.models import Authorization, Device, Lead, Visit, utcnow
from tests.soak.harness import store_pcap

MIN = datetime.timedelta(minutes=1)


def signed_in(mac: str, at: datetime.datetime, followed: bool) -> Device:
    lead = Lead.create()
    consent.record(lead, "visit_analytics", followed, consent.Where("store-1", mac, None, "portal_form"))
    dev, _ = Device.get_or_create(mac=mac)
    dev.lead = lead
    dev.save()
    Authorization.create(device=dev, lead=lead, started_at=at, expires_at=at + datetime.timedelta(hours=4))
    return dev


def test_a_replayed_capture_and_sign_ins_count_every_presence_once(app, tmp_path):
    from collector.service import replay

    settings = app.extensions["footfall"].settings
    start = time.time() - 3 * 3600
    t0 = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).replace(tzinfo=None)
    pcap = tmp_path / "shop.pcap"
    assert store_pcap(pcap, 1, 6, start) == 6           # six phones, one 20-minute visit each
    with database.connection_context():
        # Three of them signed in a few minutes into their visit (two agreed to visit analytics)...
        for d, followed in ((0, True), (1, True), (2, False)):
            signed_in(f"3c:22:fb:01:00:{d:02x}", t0 + d * 7 * datetime.timedelta(seconds=1) + 2 * MIN, followed)
        # ...and two phones the collector never saw signed in two hours later.
        others = [signed_in(f"02:00:00:00:16:{n:02x}", t0 + 120 * MIN, followed) for n, followed in ((1, True), (2, False))]
    assert replay(settings, pcap)["visits"] == 6
    with database.connection_context():
        seen = {dev.mac: t0 + 130 * MIN for dev in others}   # the gateway's last sign of life: 10 minutes in
        tally = signin_visits.run(settings.visit_gap_minutes, activity=seen, gateway=settings.gateway)
        assert (tally.signins, tally.covered, tally.visits, tally.followed) == (5, 3, 2, 1)
        lan = Visit.select().where((Visit.source == "lan") & (Visit.passerby == False))  # noqa: E712
        assert sorted(v.origin for v in lan) == ["collector"] * 6 + ["signin"] * 2
        mine = Visit.get((Visit.origin == "signin") & (Visit.device == others[0]))
        assert (mine.start, mine.end) == (t0 + 120 * MIN, t0 + 130 * MIN)
        assert Visit.select().where(Visit.device == others[1]).count() == 0   # under a pseudonym
        figures = metrics.dashboard(utcnow())
        assert (figures.visits_30, figures.visitors_30) == (8, 8)
        # The job again, later: nothing is counted twice.
        assert signin_visits.run(settings.visit_gap_minutes, now=utcnow() + 60 * MIN).visits == 0
        assert metrics.dashboard(utcnow()).visits_30 == 8


def test_a_capture_replayed_after_the_sign_in_was_counted_replaces_it(app, tmp_path):
    from collector.service import replay

    settings = app.extensions["footfall"].settings
    start = time.time() - 80 * 60
    t0 = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).replace(tzinfo=None)
    pcap = tmp_path / "later.pcap"
    store_pcap(pcap, 2, 2, start)
    with database.connection_context():
        signin_visits.run(settings.visit_gap_minutes, now=t0 - MIN)
        phone = signed_in("3c:22:fb:02:00:00", t0 + 2 * MIN, True)
        assert signin_visits.run(settings.visit_gap_minutes).visits == 1   # no collector yet: the sign-in counts
    assert replay(settings, pcap)["visits"] == 2                           # the collector's record arrives
    with database.connection_context():
        assert signin_visits.run(settings.visit_gap_minutes).withdrawn == 1
        assert [v.origin for v in Visit.select().where(Visit.device == phone)] == ["collector"]
        assert metrics.dashboard(utcnow()).visits_30 == 2


def test_a_gateway_that_cannot_tell_leaves_sign_ins_counted_from_their_own_time(app, settings):
    import dataclasses

    from portal import jobs

    broken = dataclasses.replace(settings, gateway="opennds", opennds_faskey="")   # cannot even be built
    with database.connection_context():
        signin_visits.run(settings.visit_gap_minutes, now=utcnow() - 120 * MIN)
        signed_in("02:00:00:00:16:07", utcnow() - 60 * MIN, True)
    database.close()
    result = jobs.run_job("signin_visits", broken)
    assert result["gateway_error"].startswith("ValueError: the opennds gateway needs opennds_faskey")
    assert (result["signins"], result["visits"]) == (1, 1)

"""The dashboard's figures: people in the store now count, and figures are never older than promised."""
import dataclasses
import datetime
import time

from portal import consent, metrics
from portal.models import Device, Lead, OpenRun, Visit, utcnow

# 15:00 on the appliance's local clock, as the naive UTC the database holds.
NOW = datetime.datetime(2026, 11, 23, 15, 0).astimezone().astimezone(datetime.timezone.utc).replace(tzinfo=None)
MIN = datetime.timedelta(minutes=1)


def device(n: int, lead=None) -> Device:
    return Device.create(mac=f"02:00:00:00:05:{n:02x}", lead=lead)


def run(dev: Device, started: int, last: int, source: str = "lan") -> None:
    """A run still open: started and last seen that many minutes before NOW."""
    OpenRun.create(device=dev, source=source, start=NOW - started * MIN, last=NOW - last * MIN, sightings=5)


def closed(dev: Device, started_min: int, minutes: int, at=NOW) -> None:
    Visit.create(device=dev, start=at - started_min * MIN, end=at - started_min * MIN + minutes * MIN)


def followed(lead: Lead) -> Lead:
    """A person who agreed to visit analytics: the dashboard's per-person figures count only them."""
    consent.record(lead, "visit_analytics", True, consent.Where("store-1", None, None, "portal_form"))
    return lead


def test_people_in_the_store_now_count_as_visitors_today(app):
    run(device(1, lead=followed(Lead.create())), 20, 1)   # here 20 minutes: a visit already, whatever comes next
    run(device(2), 3, 1)                     # here 3 minutes: not yet a visit (min_dwell 5)
    run(device(3), 60, 30)                   # silent for 30 min (> visit gap): the collector is not running
    run(device(4), 40, 0, source="air")      # heard over the air: never a visitor
    person = followed(Lead.create())
    phone = device(5, lead=person)
    closed(phone, 180, 30)                   # came this morning...
    run(device(6, lead=person), 10, 0)       # ...and is back now, with another device
    figures = metrics.dashboard(NOW)
    assert (figures.visitors_today, figures.visitors_7, figures.visitors_30) == (2, 2, 2)
    assert (figures.new_30, figures.returning_30) == (1, 1)   # the newcomer; the person back today
    assert figures.visits_30 == 1                              # closed visits (charts show those)
    assert dict(figures.frequency)["1"] == 1 and dict(figures.frequency)["2"] == 1
    assert sum(n for _, n in figures.per_day) == 1


def test_thresholds_come_from_the_settings(app):
    run(device(1), 8, 1)
    assert metrics.dashboard(NOW).visitors_today == 1
    assert metrics.dashboard(NOW, min_dwell_minutes=10).visitors_today == 0
    run(device(2), 30, 20)
    assert metrics.dashboard(NOW, gap_minutes=25).visitors_today == 2


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def wait_for_refresh(cache: metrics.DashboardCache) -> None:
    deadline = time.monotonic() + 20
    while cache._refreshing.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cache._refreshing.is_set()


def test_after_an_idle_period_the_first_view_waits_for_fresh_figures(app, settings):
    clock = Clock()
    cache = metrics.DashboardCache(max_age=60, settings=settings, clock=clock)
    now = utcnow()
    closed(device(1), 120, 30, at=now)
    with app.app_context():
        figures, age = cache.get()
        assert (figures.visitors_30, age) == (1, 0)

        closed(device(2), 90, 30, at=now)
        clock.t += 20                              # fresh enough: served as it is
        figures, age = cache.get()
        assert (figures.visitors_30, age) == (1, 20)
        assert not cache._refreshing.is_set()

        clock.t += 241                             # the manager's first look after closing
        figures, age = cache.get()
        assert (figures.visitors_30, age) == (2, 0)    # waited for the figures, never 261 s old


def test_a_watched_dashboard_refreshes_in_the_background(app, settings):
    clock = Clock()
    cache = metrics.DashboardCache(max_age=60, settings=settings, clock=clock)
    now = utcnow()
    closed(device(1), 120, 30, at=now)
    with app.app_context():
        assert cache.get()[0].visitors_30 == 1
        closed(device(2), 90, 30, at=now)
        clock.t += 40                              # past half of max_age: still served...
        figures, age = cache.get()
        assert (figures.visitors_30, age) == (1, 40)
        wait_for_refresh(cache)                    # ...while the next is computed
        clock.t += 1
        figures, age = cache.get()
        assert (figures.visitors_30, age) == (2, 1)


def test_the_cache_uses_the_portals_thresholds(settings, gateway):
    from portal import create_app
    from portal.db import database

    app = create_app(dataclasses.replace(settings, visit_gap_minutes=25, min_dwell_minutes=10), gateway=gateway)
    try:
        run(device(1), 8, 1)      # 8 minutes: a visit with min_dwell 5, not with 10
        run(device(2), 30, 20)    # silent 20 minutes: gone with a 15-minute gap, here with 25
        cache = metrics.DashboardCache(max_age=60)
        with app.app_context():   # as in a request: the runtime's settings
            assert cache._thresholds() == (25.0, 10.0)
        assert metrics.DashboardCache(settings=settings)._thresholds() == (15.0, 5.0)
        assert metrics.dashboard(NOW, *cache_thresholds(app)).visitors_today == 1
    finally:
        database.close()


def cache_thresholds(app) -> tuple[float, float]:
    with app.app_context():
        return metrics.DashboardCache()._thresholds()

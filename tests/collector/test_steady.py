"""A wall clock that steps (NTP at a Pi's boot, a manual change) neither ends nor merges visits."""
from __future__ import annotations

from collector.sessions import Sessionizer
from collector.steady import SteadyClock

GAP, DWELL = 15 * 60.0, 5 * 60.0
BOOT = 86_400.0  # a Pi's clock at boot: 2 January 1970
NTP = 1_795_000_000.0  # the real time, November 2026


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = BOOT, 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def run_with_step(step_to: float) -> list:
    clocks = Clocks()
    steady = SteadyClock(wall=lambda: clocks.wall, mono=lambda: clocks.mono)
    sessions = Sessionizer(GAP, DWELL)
    closed = []
    for minute in range(60):  # one phone seen every minute for an hour
        if minute == 20:
            clocks.wall = step_to + (clocks.wall - BOOT)  # NTP answers (or someone sets the clock)
        now, step = steady.now()
        if step:
            sessions.shift(step)
        closed += [v for v in [sessions.observe("3c:22:fb:00:00:01", "lan", now)] if v]
        closed += sessions.sweep(now)
        clocks.advance(60)
    return closed + sessions.close_all()


def test_a_step_forward_keeps_one_visit_with_its_true_length_on_the_corrected_clock():
    visits = run_with_step(NTP)
    assert len(visits) == 1
    visit = visits[0]
    assert visit.end - visit.start == 59 * 60  # not 20 minutes, then a new visit
    assert visit.start == NTP  # dated on the corrected clock (minute 0 of the real day)
    assert not visit.passerby


def test_a_step_back_does_not_merge_or_stretch():
    visits = run_with_step(BOOT - 5 * 3600)
    assert len(visits) == 1 and visits[0].end - visits[0].start == 59 * 60


def test_small_drift_is_not_a_step():
    clocks = Clocks()
    steady = SteadyClock(wall=lambda: clocks.wall, mono=lambda: clocks.mono)
    clocks.advance(10)
    clocks.wall += 0.5  # NTP slewing, not stepping
    now, step = steady.now()
    assert step == 0.0 and now == BOOT + 10 and steady.steps == 0


def test_a_clock_behind_the_last_good_time_starts_from_it_and_follows_ntp():
    clocks = Clocks()
    last_good = NTP - 3600.0
    steady = SteadyClock(wall=lambda: clocks.wall, mono=lambda: clocks.mono, floor=last_good)
    sessions = Sessionizer(GAP, DWELL)
    first, _ = steady.now()
    assert first == last_good  # never dated in 1970
    for minute in range(40):
        if minute == 20:
            clocks.wall = NTP + 20 * 60  # NTP answers: the real time
        now, step = steady.now()
        if step:
            sessions.shift(step)
        sessions.observe("3c:22:fb:00:00:02", "lan", now)
        clocks.advance(60)
    (visit,) = sessions.close_all()
    assert visit.start == NTP and visit.end - visit.start == 39 * 60

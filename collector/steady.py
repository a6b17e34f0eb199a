"""Wall time for live capture that never jumps on its own.

A Raspberry Pi boots with an old clock; NTP then steps it forward by hours or years, and anyone
may set it back. Frame times taken straight from the wall clock would then close every visit in
progress (a gap of years) or merge separate ones (a step back). Here time advances with the
monotonic clock; a step of the wall clock is detected and returned, so that the runs in progress
can be moved by the same amount: a visit that began before the step keeps its true length and
is dated on the corrected clock.
"""
from __future__ import annotations

import time
from typing import Callable


class SteadyClock:
    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 tolerance: float = 2.0, floor: float | None = None) -> None:
        """`floor`: the last good time (portal/clock.py). A wall clock behind it is known wrong:
        time starts from the floor instead and waits for the real clock to step past it."""
        self.wall, self.mono, self.tolerance, self.floor = wall, mono, tolerance, floor
        self.anchor_wall, self.anchor_mono = max(wall(), floor or 0.0), mono()
        self.steps = 0

    def now(self) -> tuple[float, float]:
        """(time for frames now, how far the wall clock stepped since the last call: 0.0 if not)."""
        expected = self.anchor_wall + (self.mono() - self.anchor_mono)
        wall = self.wall()
        step = wall - expected
        if abs(step) <= self.tolerance or (self.floor is not None and wall < self.floor):
            return expected, 0.0
        self.anchor_wall += step
        self.steps += 1
        return expected + step, step

"""The portal funnel per local day: probe (a captive request), splash (the form shown),
submit (a form sent), online (a device let out). Counted in memory on the hot path and added to
the database at most every `every` seconds by whichever request comes next."""
from __future__ import annotations

import datetime
import logging
import threading
import time

from peewee import OperationalError

from portal.db import database, is_busy, is_storage_fault

logger = logging.getLogger(__name__)

STAGES = ("probe", "splash", "submit", "online")
_UPSERT = ("INSERT INTO funnel_day (day, stage, count) VALUES (?, ?, ?) "
           "ON CONFLICT(day, stage) DO UPDATE SET count = count + excluded.count")


class Funnel:
    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._counts: dict[tuple[str, str], int] = {}
        self._next = time.monotonic() + every
        self._lock = threading.Lock()

    def hit(self, stage: str) -> None:
        key = (datetime.date.today().isoformat(), stage)  # the appliance's local day
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        if time.monotonic() >= self._next:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            self._next = time.monotonic() + self.every
        if counts:
            try:
                with database.atomic():
                    database.cursor().executemany(_UPSERT, [(day, stage, n) for (day, stage), n in counts.items()])
            except OperationalError as exc:
                if not (is_busy(exc) or is_storage_fault(exc)):
                    raise
                # A busy or full database: keep the counts for the next flush; a probe never fails for them.
                with self._lock:
                    for key, n in counts.items():
                        self._counts[key] = self._counts.get(key, 0) + n
                logger.warning("funnel counts kept in memory: %s", exc)


def totals(days: int, today: datetime.date | None = None) -> dict[str, int]:
    today = today or datetime.date.today()
    since = (today - datetime.timedelta(days=days - 1)).isoformat()
    rows = dict(database.execute_sql("SELECT stage, sum(count) FROM funnel_day WHERE day >= ? GROUP BY stage", (since,)))
    return {stage: rows.get(stage, 0) or 0 for stage in STAGES}

"""The scheduler's job table. Jobs are plain idempotent functions, also run from the CLI
(`footfall jobs run NAME`); the scheduler runs in exactly one process (`footfall scheduler`)."""
from __future__ import annotations

import datetime
import logging
import signal
from dataclasses import dataclass
from typing import Callable

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from portal import privacy, segments, store_settings
from portal.config import database_path
from portal.db import database, init_db
from portal.gateway.null import NullGateway

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[object], dict]
    trigger: Callable[[], object]
    help: str


def _segments(settings) -> dict:
    return segments.recompute()


def _purge(settings) -> dict:
    # People not seen within the retention period hold no live authorization: nothing to revoke.
    return privacy.purge(settings.retention_days, NullGateway(), settings.store_id)


JOBS = {job.name: job for job in (
    Job("segments", _segments, lambda: IntervalTrigger(minutes=15), "Recompute every segment's members."),
    Job("purge", _purge, lambda: CronTrigger(hour=3, minute=30), "Delete what is older than retention_days."),
)}


def run_job(name: str, settings) -> dict:
    init_db(database_path(settings))
    with database.connection_context():
        return JOBS[name].run(store_settings.apply(settings))


def next_run(name: str, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """When the scheduler runs this job next (local time of the appliance)."""
    now = now or datetime.datetime.now().astimezone()
    return JOBS[name].trigger().get_next_fire_time(None, now)


def run_scheduler(settings) -> None:
    scheduler = BlockingScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    for job in JOBS.values():
        scheduler.add_job(_logged, job.trigger(), args=(job.name, settings), id=job.name, name=job.help)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: scheduler.shutdown(wait=False))
    logger.info("scheduler started: %s", ", ".join(JOBS))
    scheduler.start()


def _logged(name: str, settings) -> None:
    try:
        logger.info("job %s: %s", name, run_job(name, settings))
    except Exception:
        logger.exception("job %s failed", name)

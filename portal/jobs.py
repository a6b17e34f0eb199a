"""The scheduler's job table. Jobs are plain idempotent functions, also run from the CLI
(`footfall jobs run NAME`); `footfall scheduler` (portal/scheduler.py) keeps their timers in one
process and runs each job in a child process of its own, the way `footfall jobs run` does.

This module is what the scheduler's own process imports: the job table and its triggers, nothing
of the database, the web app or the keys. Each job imports what it needs when it runs."""
from __future__ import annotations

import datetime
import logging
import shutil
from dataclasses import dataclass
from typing import Callable

from portal.config import backups_dir, database_path

logger = logging.getLogger(__name__)


def every(seconds: float):
    """An APScheduler interval trigger (imported when a trigger is made: the portal, which only
    asks for the next run of a job now and then, does not load APScheduler at start)."""
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=seconds)


def daily(hour: int, minute: int, day_of_week: str | None = None):
    """An APScheduler cron trigger at a local time of the appliance (its summer time included)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(hour=hour, minute=minute, **({"day_of_week": day_of_week} if day_of_week else {}))


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[object], dict]
    trigger: Callable[[object], object]  # settings -> an APScheduler trigger (every, daily)
    help: str
    limit_seconds: int = 900  # a run still going after this is stopped (portal/scheduler.py)
    # settings -> why the scheduler need not run it at all (None: it must); read once, at start.
    idle_because: Callable[[object], str | None] = lambda s: None


def _segments(settings) -> dict:
    from portal import segments

    result = segments.refresh()
    return {"mode": result["mode"], "people": result["people"], **result["counts"]}


def _segments_full(settings) -> dict:
    from portal import segments

    return segments.recompute()


def _signin_visits(settings) -> dict:
    """Sign-ins and the gateway's signs of life into visits where no collector saw the device."""
    from portal import signin_visits
    from portal.gateway import load_gateway

    activity, error = {}, None
    try:
        activity = load_gateway(settings).last_activity()
    except Exception as exc:  # a gateway that cannot tell: sign-ins still count, from their own time
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("no signs of life from the %s gateway: %s", settings.gateway, error)
    result = signin_visits.run(settings.visit_gap_minutes, activity=activity, gateway=settings.gateway).as_dict()
    if error:
        result["gateway_error"] = error
    return result


def _purge(settings) -> dict:
    from collector.pseudonyms import purge_anonymous
    from portal import erasure_ledger, retention
    from portal.contacts import Contacts
    from portal.db import database
    from portal.gateway.null import NullGateway
    from portal.models import OutboxEvent, utcnow

    # People not seen within the retention period hold no live authorization: nothing to revoke.
    result = retention.purge(settings.retention_days, NullGateway(), settings.store_id)
    # Devices counted under a pseudonym: their own, shorter retention (collector/pseudonyms.py).
    result.update(purge_anonymous(database, settings.anonymous_retention_days, utcnow()))
    # What the central store confirmed a week ago need not wait here any longer.
    week_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=7)).replace(tzinfo=None)
    # ...once the webhooks' fan-out has read them too (portal/webhooks/queue.py).
    from portal.webhooks import queue
    result["outbox_delivered"] = OutboxEvent.delete().where(
        (OutboxEvent.delivered_at < week_ago) & (OutboxEvent.id <= queue.mark())).execute()
    result["webhooks_delivered"] = queue.purge_delivered()
    # Contacts named and never proved go a day after, with their codes (portal/contacts.py).
    result["claims_and_codes"] = Contacts.purge()
    from portal.activation import send  # the send log of erased people and past the retention period
    result["activation"] = send.purge(settings.retention_days)
    result["exports_logged"] = retention.purge_export_log(settings.export_log_retention_days)
    result["erasure_ledger_lines"] = erasure_ledger.trim_past(settings.retention_days, backups_dir(settings))
    return result


def _activation(settings) -> dict:
    """Automated and campaign messages (portal/activation/send.py): here, never in a web worker."""
    from portal.activation import send
    from portal.config import key_path
    from portal.identity import Vault, load_or_create_keys
    from portal.messages import load_drivers

    vault = Vault(load_or_create_keys(key_path(settings)))
    return send.run(send.context(settings, vault, load_drivers(settings)))


def _forget(settings) -> dict:
    from portal import retention

    # Just connect: the device is kept only as long as its session (portal/retention.py).
    return retention.forget_just_connect(settings.session_seconds)


def _push(settings) -> dict:
    from portal import sync
    from portal.config import key_path
    from portal.gateway.null import NullGateway
    from portal.identity import Vault, load_or_create_keys

    keys = load_or_create_keys(key_path(settings))
    if not settings.central_url or not keys.store_id:
        return {"skipped": "not enrolled (central_url and `footfall sync enroll`)"}
    target = sync.Target(settings.central_url, keys.store_id, keys.sync_key, settings.sync_ca_file, settings.sync_allow_http)
    # Erasures from the central store cannot revoke at the gateway from here (no CAP_NET_ADMIN):
    # the portal's authorization expires on its own, and the erased device is gone from the database.
    return sync.drain(target, Vault(keys), NullGateway(), keys.store_id, settings.sync_batch_events)


def _webhooks(settings) -> dict:
    """Queue the webhook messages of new outbox events, then send what is due (portal/webhooks/)."""
    import hashlib
    import hmac

    from portal.config import key_path
    from portal.identity import Vault, load_or_create_keys
    from portal.webhooks import queue

    keys = load_or_create_keys(key_path(settings))
    queued, read = 0, queue.FAN_OUT_BATCH
    while read == queue.FAN_OUT_BATCH:  # the outbox past the mark, a transaction per batch
        read, batch = queue.fan_out()
        queued += batch
    # The people's pseudonyms: keyed with this box's own secret (kept across a chain enrollment).
    person_key = hmac.new(keys.secret, b"webhook.person", hashlib.sha256).digest()
    sender = queue.Sender(Vault(keys), person_key, settings.store_id, float(settings.webhook_timeout_seconds),
                          settings.webhook_max_attempts, settings.webhook_allow_loopback)
    return {"queued": queued, **queue.deliver_due(sender)}


def _vault(settings):
    from portal.config import key_path
    from portal.identity import Vault, load_or_create_keys

    return Vault(load_or_create_keys(key_path(settings)))


def _name_index(settings) -> dict:
    """Name words for the people without any yet (the leads of before issue 16; portal/name_index.py)."""
    from portal import name_index

    return name_index.backfill(_vault(settings))


_DISPATCHER: list = []  # the scheduler's one message layer, made on first use


def _weekly_summary(settings) -> dict:
    """The week's figures by email to the owners, when the owner turned it on (portal/weekly_summary.py)."""
    from portal import weekly_summary
    from portal.messages import Dispatcher, load_drivers

    if settings.weekly_summary == "off":
        return {"skipped": "off"}
    if not _DISPATCHER:
        _DISPATCHER.append(Dispatcher(load_drivers(settings), workers=1, depth=20))
    return weekly_summary.send(settings, _vault(settings), _DISPATCHER[0])


def _backup(settings) -> dict:
    """An online copy of the SQLite file (consistent while others write), the last 7 kept.

    The free-space floor comes first: old backups are pruned to stay above it, and a backup that
    would cross it is not written (the owner sees why in the health view). A copy is written under
    a temporary name and renamed, so a half-written backup never looks like a sound one."""
    import contextlib
    import os
    import sqlite3

    from portal.db import database

    folder = backups_dir(settings)
    folder.mkdir(mode=0o700, exist_ok=True)
    floor = settings.disk_floor_mb * 1024 * 1024
    need = database_path(settings).stat().st_size
    old = sorted(folder.glob("footfall-*.db"))
    for stale in folder.glob("footfall-*.db.partial"):
        stale.unlink()
    pruned = 0
    while len(old) > 1 and shutil.disk_usage(folder).free - need < floor:
        old.pop(0).unlink()
        pruned += 1
    free = shutil.disk_usage(folder).free
    if free - need < floor:
        logger.error("backup skipped: %d MB free, a copy needs %d MB, the floor is %d MB",
                     free // 2**20, need // 2**20, settings.disk_floor_mb)
        return {"skipped": "free-space floor", "free_bytes": free, "needed_bytes": need, "pruned": pruned}
    target = folder / f"footfall-{datetime.datetime.now():%Y%m%d-%H%M%S}.db"
    partial = target.with_name(target.name + ".partial")
    with contextlib.closing(sqlite3.connect(partial)) as copy:
        database.connection().backup(copy)
    partial.chmod(0o600)
    os.replace(partial, target)
    removed = sorted(folder.glob("footfall-*.db"))[:-7]
    for path in removed:
        path.unlink()
    return {"backup": target.name, "bytes": target.stat().st_size, "removed": len(removed) + pruned}


def _checkpoint(settings) -> dict:
    """Fold the WAL into the database and cut it back, so it never grows into the card's free space."""
    from portal.db import checkpoint

    busy, log, copied = checkpoint()
    return {"busy": busy, "wal_frames": log, "copied": copied,
            "free_bytes": shutil.disk_usage(database_path(settings).parent).free}


JOBS = {job.name: job for job in (
    Job("push", _push, lambda s: every(s.sync_interval_seconds), "Push the outbox to the central store.",
        idle_because=lambda s: None if s.central_url else "no central_url: this appliance is on its own"),
    Job("backup", _backup, lambda s: daily(2, 45), "Online backup of the SQLite file.",
        3600),
    Job("segments", _segments, lambda s: every(15 * 60),
        "Bring segment members up to date: the people who may have moved since the last run."),
    Job("segments-full", _segments_full, lambda s: daily(3, 45),
        "Recompute every segment's members from all the visits (the incremental runs' check).", 3600),
    Job("checkpoint", _checkpoint, lambda s: every(10 * 60), "Fold the WAL into the database."),
    Job("forget", _forget, lambda s: every(10 * 60), "Forget just-connect devices whose session ended."),
    Job("name_index", _name_index, lambda s: every(10 * 60), "Index the words of names not yet searchable."),
    Job("weekly_summary", _weekly_summary, lambda s: daily(8, 15, "mon"),
        "Email the week's summary to the owners (when turned on)."),
    Job("activation", _activation, lambda s: every(5 * 60), "Plan and send automated and campaign messages."),
    Job("purge", _purge, lambda s: daily(3, 30), "Delete what is older than retention_days (anonymous visits: anonymous_retention_days).", 3600),
    Job("webhooks", _webhooks, lambda s: every(s.webhook_interval_seconds),
        "Queue and send signed webhooks to the store's CRM endpoints."),
    Job("signin_visits", _signin_visits, lambda s: every(5 * 60),
        "Count sign-ins as visits where no collector saw the device."),
)}


def run_job(name: str, settings) -> dict:
    from portal import store_settings
    from portal.db import database, init_db

    init_db(database_path(settings), busy_timeout=settings.db_lock_wait_ms)
    with database.connection_context():
        return JOBS[name].run(store_settings.apply(settings))


def prepare(settings) -> dict:
    """What comes before any job: a damaged database restored from a backup, then the erasure
    ledger's lines redone on it (`footfall jobs prepare`, which `footfall scheduler` runs first)."""
    from portal import erasure_ledger
    from portal.db import init_db
    from portal.recovery import ensure_sound

    recovery = ensure_sound(database_path(settings), backups_dir(settings))
    init_db(database_path(settings), busy_timeout=settings.db_lock_wait_ms)
    import dataclasses

    return {"recovery": dataclasses.asdict(recovery) if recovery else None, "erasures_redone": erasure_ledger.replay()}


def next_run(name: str, settings, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """When the scheduler runs this job next (local time of the appliance)."""
    now = now or datetime.datetime.now().astimezone()
    return JOBS[name].trigger(settings).get_next_fire_time(None, now)

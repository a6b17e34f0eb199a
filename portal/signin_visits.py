"""Figures from day one (issue 16): visits made of sign-ins, where no collector saw the device.

A sign-in (the form, a welcome back, a renewed authorization: any `authorization` row) opens a
sign-in run for its device (`signin_run`); every later sign of life the gateway reports (openNDS:
`ndsctl json` last_active; nftables: the kernel's neighbour table; the null gateway: the device's
own captive probes, counted in memory by `LastSeen`) moves its end on. A run silent for longer
than the visit gap becomes a visit like the collector's (source 'lan', origin 'signin'), from the
sign-in to the last sign of life and never shorter than SIGNIN_FLOOR; a sign of life after the gap
starts another visit (a reconnection). Signing in is being there, so a sign-in visit is never a
passer-by.

Never counted twice: a run is written only when no collector visit or run in progress of the same
device lies within the gap of it, and a sign-in visit that a collector visit of its device later
overlaps is deleted (`withdraw_covered`). Where the collector watches the same LAN (the null and
nftables gateways) it names a device without visit_analytics consent by a pseudonym
(collector/pseudonyms.py) that cannot be matched: there a collector visit of any pseudonym
overlapping the run stands for it. openNDS routers are elsewhere: sign-ins count always.

Privacy: the visit of a person whose visits may be followed (visit_analytics consent counts, not
restricted, not erased) is theirs, with the visit.closed event the collector would emit; anyone
else's is written under a new random pseudonym ('anon-'), one per visit, with only the randomized
bit: it counts in the totals, never in segments or per-person figures, and no MAC is written for it.
"""
from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from portal.core.macs import PSEUDONYM_PREFIX
from portal.db import database
from portal.models import Device, OutboxEvent, SigninRun, StoreSetting, Visit, utcnow
# People whose visits may be followed: the one rule of issue 15, restriction and erasure included.
from portal.visits import FOLLOWED_PEOPLE_SQL

logger = logging.getLogger(__name__)

SIGNIN_FLOOR = datetime.timedelta(minutes=1)  # a sign-in visit is never of zero length
BACKFILL = datetime.timedelta(days=1)          # the first run reads the last day's sign-ins
RECHECK = datetime.timedelta(days=7)           # sign-in visits a late collector record may still replace
DAY = datetime.timedelta(days=1)
MARK_KEY = "signin_visits.mark"                # the last authorization read (StoreSetting)
LOCAL_LAN_GATEWAYS = frozenset({"null", "nftables"})  # the collector may watch the same LAN


# A collector visit (or run in progress) of the device within the gap of [start, end].
_COLLECTOR_SAW_DEVICE = """
SELECT EXISTS(SELECT 1 FROM visit v WHERE v.device_id = ?1 AND v.source = 'lan' AND v.origin = 'collector'
                AND v.start <= ?3 AND v."end" >= ?2)
    OR EXISTS(SELECT 1 FROM open_run r WHERE r.device_id = ?1 AND r.source = 'lan' AND r.last >= ?2 AND r.start <= ?3)
"""
# A collector visit or run of any pseudonym overlapping [start, end]: the collector watched the LAN.
# (?3: a day before the start, so the time index bounds the search; no visit lasts a day.)
_COLLECTOR_SAW_PSEUDONYMS = f"""
SELECT EXISTS(SELECT 1 FROM visit v JOIN device d ON d.id = v.device_id WHERE v.start BETWEEN ?3 AND ?2
                AND v.source = 'lan' AND v.origin = 'collector' AND v."end" >= ?1 AND d.mac LIKE '{PSEUDONYM_PREFIX}%')
    OR EXISTS(SELECT 1 FROM open_run r JOIN device d ON d.id = r.device_id WHERE r.source = 'lan'
                AND r.start <= ?2 AND r.last >= ?1 AND d.mac LIKE '{PSEUDONYM_PREFIX}%')
"""
# Sign-in visits of the last RECHECK a collector visit of the same device now overlaps (within the gap).
_COVERED = """
SELECT s.id FROM visit s WHERE s.start >= ?2 AND s.origin = 'signin' AND EXISTS(
  SELECT 1 FROM visit v WHERE v.device_id = s.device_id AND v.source = 'lan' AND v.origin = 'collector'
    AND julianday(v.start) <= julianday(s."end") + ?1 AND julianday(v."end") >= julianday(s.start) - ?1)
"""


@dataclass(frozen=True)
class Tally:
    signins: int = 0       # authorizations read
    activity: int = 0      # signs of life applied
    visits: int = 0        # sign-in visits written
    followed: int = 0      # of which a followed person's (with a visit.closed event)
    covered: int = 0       # runs the collector had already counted
    withdrawn: int = 0     # sign-in visits deleted for a collector visit that came later

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Counter:
    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def add(self, key: str, k: int = 1) -> None:
        self.n[key] = self.n.get(key, 0) + k


def _run(device_id: int) -> SigninRun | None:
    return SigninRun.get_or_none(SigninRun.device == device_id)


def _see(device_id: int, at: datetime.datetime, gap: datetime.timedelta, opens: bool, local_lan: bool,
         count: _Counter) -> None:
    """A sign of the device at `at`: extend its run, or end it and open another after the gap.
    `opens`: this sign may open a run (a sign-in, or a sign of life within the gap of now)."""
    run = _run(device_id)
    if run is not None and at - run.last > gap:
        _close(run, gap, local_lan, count)
        run = None
    if run is None:
        if opens:
            SigninRun.create(device=device_id, start=at, last=at)
        return
    if at > run.last or at < run.start:
        SigninRun.update(last=max(run.last, at), start=min(run.start, at)).where(
            SigninRun.device == device_id).execute()


def _close(run: SigninRun, gap: datetime.timedelta, local_lan: bool, count: _Counter) -> None:
    """Write the run as a visit unless the collector counted it; the run goes either way."""
    SigninRun.delete().where(SigninRun.device == run.device_id).execute()
    start, end = run.start, max(run.last, run.start + SIGNIN_FLOOR)
    device = Device.get_or_none(Device.id == run.device_id)
    if device is None:
        return
    text = lambda t: t.isoformat(" ")  # noqa: E731 - the stamps as SQLite compares them
    if database.execute_sql(_COLLECTOR_SAW_DEVICE, (device.id, text(start - gap), text(end + gap))).fetchone()[0]:
        count.add("covered")
        return
    followed = device.lead_id is not None and database.execute_sql(
        f"SELECT ? IN ({FOLLOWED_PEOPLE_SQL})", (device.lead_id,)).fetchone()[0]
    if not followed and local_lan and database.execute_sql(
            _COLLECTOR_SAW_PSEUDONYMS, (text(start), text(end), text(start - DAY))).fetchone()[0]:
        count.add("covered")
        return
    if followed:
        Visit.create(device=device, start=start, end=end, source="lan", passerby=False, origin="signin")
        # What the collector emits for a followed device's visit (collector/store.py visit_payload).
        OutboxEvent.create(topic="visit.closed", payload=_payload(device.mac, start, end))
        count.add("followed")
    else:
        Visit.create(device=_pseudonym(device.randomized, start, end), start=start, end=end, source="lan",
                     passerby=False, origin="signin")
    count.add("visits")


def _pseudonym(randomized: bool, start: datetime.datetime, end: datetime.datetime) -> Device:
    """A new anonymous device standing for one visit: a random name, only the randomized bit."""
    fields = {"mac": PSEUDONYM_PREFIX + secrets.token_hex(16), "first_seen": start, "last_seen": end,
              "randomized": randomized}
    if "anonymous" in Device._meta.fields:  # the collector's anonymous-by-default schema
        fields["anonymous"] = True
    return Device.create(**fields)


def read_signins(gap: datetime.timedelta, now: datetime.datetime, local_lan: bool, count: _Counter) -> None:
    """Every authorization since the last one read opens or extends its device's run.

    The mark is the last id read and the latest start read: SQLite numbers a new row max(id) + 1,
    so once the newest authorizations go (an erasure, retention's just-connect sweep) the next
    sign-ins take their ids again. Those are the table's top ids, started after the mark (the
    floored clock never goes back): read from the top down to the first row read before."""
    row = StoreSetting.get_or_none(StoreSetting.key == MARK_KEY)
    if row is None:
        mark = database.execute_sql('SELECT coalesce(max(id), 0) FROM "authorization" WHERE started_at < ?',
                                    ((now - BACKFILL).isoformat(" "),)).fetchone()[0]
        mark_at = None
    else:
        mark, _, mark_at = row.value.partition(" ")  # "id start", or "id" as kept before the start was
        mark, mark_at = int(mark), mark_at or None
    if mark_at is None:
        mark_at = database.execute_sql('SELECT coalesce(max(started_at), \'\') FROM "authorization" WHERE id <= ?',
                                       (mark,)).fetchone()[0]
    rows = database.execute_sql('SELECT id, device_id, started_at FROM "authorization" WHERE id > ?', (mark,)).fetchall()
    for found in database.execute_sql('SELECT id, device_id, started_at FROM "authorization" WHERE id <= ? '
                                      "ORDER BY id DESC", (mark,)):
        if found[2] <= mark_at:
            break
        rows.append(found)  # an id taken again
    parse = SigninRun.start.python_value
    for auth_id, device_id, started in sorted(rows, key=lambda r: (r[2], r[0])):
        _see(device_id, parse(started), gap, True, local_lan, count)
        count.add("signins")
        mark, mark_at = max(mark, auth_id), max(mark_at, started)
    value = f"{mark} {mark_at}" if mark_at else str(mark)
    StoreSetting.insert(key=MARK_KEY, value=value).on_conflict(
        conflict_target=[StoreSetting.key], update={StoreSetting.value: value}).execute()


def apply_activity(by_device: Mapping[int, datetime.datetime], gap: datetime.timedelta, now: datetime.datetime,
                   local_lan: bool, count: _Counter) -> None:
    """Signs of life per device id. One extends the device's run; one within the gap of `now` of a
    device whose authorization is still valid opens a run (it came back without signing in again)."""
    if not by_device:
        return
    valid = {row[0] for row in database.execute_sql(
        'SELECT DISTINCT device_id FROM "authorization" WHERE revoked_at IS NULL AND expires_at > ?',
        (now.isoformat(" "),))}
    for device_id, at in sorted(by_device.items(), key=lambda kv: kv[1]):
        at = min(at, now)
        _see(device_id, at, gap, device_id in valid and now - at <= gap, local_lan, count)
        count.add("activity")


def by_mac(activity: Mapping[str, datetime.datetime]) -> dict[int, datetime.datetime]:
    """Gateway activity (MAC -> time) as device ids; unknown MACs are nobody's sign-in."""
    out: dict[int, datetime.datetime] = {}
    macs = list(activity)
    for i in range(0, len(macs), 500):
        chunk = macs[i:i + 500]
        for device_id, mac in database.execute_sql(
                f"SELECT id, mac FROM device WHERE mac IN ({','.join('?' * len(chunk))})", chunk):
            out[device_id] = activity[mac]
    return out


def close_idle(gap: datetime.timedelta, now: datetime.datetime, local_lan: bool, count: _Counter) -> None:
    for run in list(SigninRun.select().where(SigninRun.last < now - gap)):
        _close(run, gap, local_lan, count)


def withdraw_covered(gap: datetime.timedelta, now: datetime.datetime, count: _Counter) -> None:
    """Delete the recent sign-in visits a collector visit of the same device came to overlap."""
    ids = [row[0] for row in database.execute_sql(_COVERED, (gap.total_seconds() / 86400,
                                                             (now - RECHECK).isoformat(" ")))]
    if ids:
        # Its visit.closed event goes too while the central store has not been sent it.
        for visit in Visit.select(Visit, Device).join(Device).where(Visit.id.in_(ids)):
            OutboxEvent.delete().where((OutboxEvent.topic == "visit.closed") & OutboxEvent.delivered_at.is_null()
                                       & (OutboxEvent.payload == _payload(visit.device.mac, visit.start, visit.end))
                                       ).execute()
        Visit.delete().where(Visit.id.in_(ids)).execute()
        count.add("withdrawn", len(ids))


def _payload(mac: str, start: datetime.datetime, end: datetime.datetime) -> str:
    """A followed device's visit.closed payload, as the collector writes it (collector/store.py)."""
    return json.dumps({"device": mac, "start": start.isoformat(" "), "end": end.isoformat(" "), "passerby": False,
                       "source": "lan"}, sort_keys=True)


def run(gap_minutes: float, now: datetime.datetime | None = None,
        activity: Mapping[str, datetime.datetime] | None = None, gateway: str = "null") -> Tally:
    """The job: read new sign-ins and the gateway's signs of life, write the visits of the runs
    silent for the gap, drop sign-in visits the collector covers. Idempotent; time from `now`."""
    now = now or utcnow()
    gap = datetime.timedelta(minutes=float(gap_minutes))
    local_lan = gateway in LOCAL_LAN_GATEWAYS
    count = _Counter()
    with database.atomic():
        read_signins(gap, now, local_lan, count)
        apply_activity(by_mac(activity or {}), gap, now, local_lan, count)
        close_idle(gap, now, local_lan, count)
        withdraw_covered(gap, now, count)
    return Tally(**count.n)


class LastSeen:
    """Signs of life the portal itself sees (an online device's captive probes, with the null
    gateway), kept in memory per client IP on the hot path and applied to the sign-in runs at
    most every `every` seconds by whichever request comes next (like portal/funnel.py)."""

    def __init__(self, every: float = 60.0, gap_minutes: float = 15, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.gap_minutes, self.clock = every, gap_minutes, clock
        self._seen: dict[str, datetime.datetime] = {}
        self._next = clock() + every
        self._lock = threading.Lock()

    def touch(self, ip: str, at: datetime.datetime | None = None) -> None:
        if ip:
            self._seen[ip] = at or utcnow()
            if self.clock() >= self._next:
                self.flush()

    def flush(self, now: datetime.datetime | None = None) -> int:
        """Apply what was seen; how many devices. A busy database keeps it for the next flush."""
        from peewee import OperationalError
        from portal.db import is_busy, is_storage_fault

        with self._lock:
            seen, self._seen = self._seen, {}
            self._next = self.clock() + self.every
        if not seen:
            return 0
        now = now or utcnow()
        try:
            with database.atomic():
                rows = database.execute_sql(
                    'SELECT ip, device_id FROM "authorization" WHERE revoked_at IS NULL AND expires_at > ? '
                    f"AND ip IN ({','.join('?' * len(seen))}) ORDER BY id", (now.isoformat(" "), *seen))
                by_device = {device_id: seen[ip] for ip, device_id in rows}
                count = _Counter()
                apply_activity(by_device, datetime.timedelta(minutes=self.gap_minutes), now, True, count)
            return len(by_device)
        except OperationalError as exc:
            if not (is_busy(exc) or is_storage_fault(exc)):
                raise
            with self._lock:
                for ip, at in seen.items():
                    if ip not in self._seen or self._seen[ip] < at:
                        self._seen[ip] = at
            logger.warning("signs of life kept in memory: %s", exc)
            return 0

"""Erasures and withdrawals outlive a restore from backup.

A backup holds the people as they were when it was taken. Restored (by hand, or automatically when
the database is damaged: portal/recovery.py), it would bring back a person erased since, and the
consents withdrawn since. So each erasure and withdrawal is also appended to a ledger file beside
the database (`erasures.jsonl`, which a restore leaves in place), and the database remembers, in
the same transaction, the number of the last ledger line it applied (`ledger_mark`). At start
(`replay`, called after init_db by the portal, the collector, the scheduler and `footfall
init-db`), every line above the database's mark is applied again: a restored database is erased
and withdrawn again before any page, capture or job uses it; a database that is not restored has
nothing above its mark.

A line names the record by its random uid and device row ids, never an email, phone or MAC, and
names its database (`_identity`: row ids mean other devices in another database). A line above
the mark may also be one whose transaction rolled back: what the database holds newer than the
line (a grant, a device seen) is left alone, so a replay never undoes what came after. Numbers
only grow (microseconds on the floored clock, and above the mark), so a clock set back cannot
hide a line. Lines older than the oldest backup are of no more use and are dropped by the purge
(`trim`). Copy the ledger with the backups when you keep them off the appliance (docs/operations.md).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import secrets
from pathlib import Path

from portal import clock
from portal.db import database
from portal.models import LedgerMark

logger = logging.getLogger(__name__)

FILE = "erasures.jsonl"


def path() -> Path:
    return Path(database.database).with_name(FILE)


def _mark() -> int:
    return LedgerMark.select(LedgerMark.seq).where(LedgerMark.id == 1).scalar() or 0


def _set_mark(seq: int) -> None:
    LedgerMark.insert(id=1, seq=seq).on_conflict(conflict_target=[LedgerMark.id],
                                                 update={LedgerMark.seq: seq}).execute()


def _identity() -> int:
    """This database's lineage: a number in its file header (PRAGMA application_id), which a
    backup copies with the pages and nothing else uses. Each line names it, so a ledger copied
    from another appliance, or another database's in the same directory, erases nothing here by
    row ids that mean other devices there."""
    return database.execute_sql("PRAGMA application_id").fetchone()[0]


def _adopt_identity(text: str) -> int:
    """The identity, given at the first start under this ledger if the database has none: the one
    the ledger's last lines name (a backup taken before its database had one is of that lineage;
    a new, empty database beside it has nothing a line could name), else a new one."""
    ident = _identity()
    if ident:
        return ident
    with database.atomic():  # the write lock first: two services starting at once agree
        ident = _identity()
        if ident == 0:
            named = [e["db"] for e in map(_parse, text.splitlines()) if _valid(e) and type(e.get("db")) is int]
            ident = named[-1] if named else secrets.randbelow(2 ** 31 - 1) + 1
            database.execute_sql(f"PRAGMA application_id = {int(ident)}")
        return ident


@contextlib.contextmanager
def _locked():
    """The ledger open for appending, under an exclusive lock; reopened if `trim` replaced the
    file while this process waited (an append to the old file would be lost)."""
    while True:
        fd = os.open(path(), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(path()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield fd
                return
        finally:
            os.close(fd)  # closing also releases the lock


def note(kind: str, store_id: str, **fields) -> int:
    """Append one line and move the database's mark to it (call inside the transaction that
    erases or withdraws). A ledger that cannot be written (a full card) is logged, never blocks
    the erasure itself: the person's request is carried out either way."""
    seq = max(clock.seq_now(), _mark() + 1)
    line = json.dumps({"seq": seq, "kind": kind, "store": store_id, "db": _identity() or None, **fields},
                      separators=(",", ":")) + "\n"
    try:
        with _locked() as fd:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut short (a power cut): not glued to it
                line = "\n" + line
            os.write(fd, line.encode())
            os.fsync(fd)
    except OSError:
        logger.exception("the erasure ledger could not be written: a restore from backup would not redo this %s", kind)
    _set_mark(seq)
    return seq


SEQ_MAX = 2 ** 63 - 1  # SQLite's largest integer: a mark above it could never be stored


def _valid(entry) -> bool:
    """A line this module could have written: anything else (a hand edit, another program's file)
    is skipped with an error in the log, never stops a start (every service replays at start)."""
    if not isinstance(entry, dict):
        return False
    seq, devices = entry.get("seq"), entry.get("devices", [])
    if type(seq) is not int or not 0 < seq <= SEQ_MAX:
        return False
    if entry.get("kind") == "erase":
        return isinstance(devices, list) and all(type(i) is int for i in devices)
    return entry.get("kind") == "withdraw" and isinstance(entry.get("purpose"), str)


def _parse(raw: str):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _text() -> str:
    try:
        return path().read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def pending() -> list[dict]:
    """The ledger's lines of this database above its mark (what a restore lost), oldest first.
    A line naming no database is from before lines named one: taken as this database's."""
    text, ident, mark = _text(), _identity(), _mark()
    out = []
    for entry in map(_parse, text.splitlines()):
        if not _valid(entry):
            logger.error("the erasure ledger has an unreadable line (a write cut short?): skipped")
        elif entry["seq"] > mark and entry.get("db") in (None, ident or entry.get("db")):
            out.append(entry)
    return sorted(out, key=lambda e: e["seq"])


def _written_at(entry: dict) -> datetime.datetime:
    """When the line was written, on the floored clock the database's own times use."""
    return clock._EPOCH + datetime.timedelta(microseconds=min(entry["seq"], _MAX_MICROSECONDS))


_MAX_MICROSECONDS = (datetime.datetime.max - clock._EPOCH) // datetime.timedelta(microseconds=1)


def replay(gateway=None) -> dict:
    """Apply every line above the database's mark again; returns what was redone."""
    done = {"erased": 0, "devices": 0, "withdrawn": 0}
    with database.connection_context():
        _adopt_identity(_text())
        entries = pending()
        if not entries:
            return done
        from portal import consent, privacy  # only when a restore left something to redo
        from portal.gateway.null import NullGateway
        from portal.models import Consent, Device, Lead
        gateway = gateway or NullGateway()
        for entry in entries:
            # A line above the mark is a restore's loss, or the line of a transaction that rolled
            # back (the append is not undone with it). What the database holds newer than the line
            # is not from before a backup: a grant given, a device seen, after it was written.
            # Left alone, a person who came back, or a device row id given again, keeps its data.
            at = _written_at(entry)
            with database.atomic():
                store = str(entry.get("store") or "")
                lead_uid = entry.get("lead") if isinstance(entry.get("lead"), str) else None
                lead = Lead.get_or_none((Lead.uid == lead_uid) & Lead.erased_at.is_null()) if lead_uid else None
                if lead is not None:
                    newer = Consent.select().where((Consent.lead == lead) & (Consent.created_at > at))
                    if entry["kind"] == "withdraw":
                        newer = newer.where(Consent.purpose == entry["purpose"])
                    else:
                        newer = newer.where(Consent.granted == True)  # noqa: E712 (SQL)
                    if newer.exists():
                        lead = None
                if entry["kind"] == "erase":
                    devices = list(Device.select().where(Device.id.in_(entry.get("devices", [])) & (Device.last_seen <= at)))
                    if lead is not None or devices:
                        privacy.erase_person(lead, devices, gateway, store, "restore", ledger=False)
                        done["erased"] += lead is not None
                        done["devices"] += len(devices)
                elif entry["kind"] == "withdraw":
                    if lead is not None and entry["purpose"] in consent.granted_purposes(lead):
                        consent.record(lead, entry["purpose"], False, consent.Where(store, None, None, "restore"),
                                       ledger=False)
                        done["withdrawn"] += 1
                _set_mark(max(entry["seq"], _mark()))
    logger.warning("after a restore from backup, redone from the erasure ledger: %s", done)
    return done


def trim(before_seq: int) -> int:
    """Drop the lines below `before_seq` (older than every backup): how many were dropped."""
    target = path()
    if not target.exists():
        return 0
    with _locked():
        return _trim_locked(target, before_seq)


def _trim_locked(target: Path, before_seq: int) -> int:
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = []
    for raw in lines:
        try:
            if int(json.loads(raw)["seq"]) >= before_seq:
                keep.append(raw)
        except (ValueError, KeyError, TypeError):
            continue
    if len(keep) == len(lines):
        return 0
    tmp = target.with_name(FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, even briefly
    try:
        os.fchmod(fd, 0o600)  # a tmp left by a cut-short trim keeps its mode: set it again
        os.write(fd, "".join(keep).encode("utf-8"))
        os.fsync(fd)  # on the card before it replaces the ledger: a power cut leaves one or the other
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return len(lines) - len(keep)


def trim_past(retention_days: int, backups: Path) -> int:
    """Drop the lines older than both the retention period and the oldest backup on the appliance
    (no backup that could still be restored predates them). A backup kept elsewhere and older than
    the retention period must not be restored (docs/operations.md)."""
    from portal.recovery import BACKUP_GLOB, backup_time
    now = datetime.datetime.now(datetime.timezone.utc)
    cutoff = now - datetime.timedelta(days=retention_days)
    for backup in backups.glob(BACKUP_GLOB) if backups.is_dir() else ():
        taken = backup_time(backup)  # the appliance's local time
        if taken is not None:
            cutoff = min(cutoff, taken.astimezone(datetime.timezone.utc))
    return trim((cutoff.replace(tzinfo=None) - datetime.datetime(1970, 1, 1)) // datetime.timedelta(microseconds=1))

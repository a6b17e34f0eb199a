"""Anonymous by default: who the collector may follow, and the rotating pseudonyms of everyone else.

A device is followed (stored under its MAC, with its hostname and DHCP fingerprint, its visits
synced as records) only when it is linked to a person whose visits may be followed (the latest
word on visit analytics is a grant, no restriction or objection upheld, not erased:
portal/visits.py FOLLOWED_PEOPLE_SQL): `followed_macs()`, the one rule. Any other device is counted under a keyed pseudonym,
HMAC-SHA256(key of the period, MAC), where a period is `pseudonym_rotation_hours` of local time
(24: a local day, the dashboard's day, so devices per day stay exact). When a period is over its
key is destroyed: the bytes are zeroed in memory and overwritten in the key file, which never
holds a past period's key (a restart within the period keeps its pseudonyms; the key file lives
beside the database, never inside it nor in its backups). What the database then holds of such a
device, a pseudonym, first and last seen, the randomized bit and its visits, cannot be linked to
the device's MAC, nor to the same device's pseudonym of another period. Probe requests heard over
the air (off unless `probe_interface` is set) are aggregate only: every run closed on a local day
is counted under that day's one name, `aggregate()`, whoever sent it.
"""
from __future__ import annotations

import datetime
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Callable

from collector.sessions import LAN
from portal.core.macs import PSEUDONYM_PREFIX
from portal.visits import FOLLOWED_PEOPLE_SQL

logger = logging.getLogger(__name__)
PREFIX = PSEUDONYM_PREFIX  # never a MAC, so a pseudonym cannot meet a signed-in device's row
KEY_FILE = "pseudonym.key"
_SLOT = 8 + 32  # the period (signed 64-bit) and its key
_SLOTS = 2  # the current period's key, and the next one's when a run starts just after a rotation
TEXTS_KEPT = 16384  # pseudonyms remembered per period (about 2 MB), see Pseudonyms.text

# The rule, in one place: a device linked to a person whose visits may be followed.
FOLLOWED_SQL = f"SELECT d.mac FROM device d WHERE d.lead_id IN ({FOLLOWED_PEOPLE_SQL})"


# What DHCP said of a device is kept while its person agrees: when they withdraw (or a restriction
# is upheld, or they never agreed: records from before), it goes. The MAC stays on a device linked
# to a person or authorized at the gateway: the portal's record, not the collector's.
FORGET_SQL = f"""
UPDATE device SET hostname = NULL, dhcp_fingerprint = NULL, dhcp_vendor = NULL
WHERE anonymous = 0 AND (hostname IS NOT NULL OR dhcp_fingerprint IS NOT NULL OR dhcp_vendor IS NOT NULL)
  AND mac NOT IN ({FOLLOWED_SQL})
"""


def followed_macs(database) -> frozenset[str]:
    """The MACs the collector may store as they are (see FOLLOWED_SQL)."""
    return frozenset(row[0] for row in database.execute_sql(FOLLOWED_SQL))


def forget_unfollowed(database) -> int:
    """Clear what DHCP said of devices no longer followed (see FORGET_SQL); how many rows."""
    with database.atomic():
        return database.execute_sql(FORGET_SQL).rowcount


def is_pseudonym(ident: str) -> bool:
    return ident.startswith(PREFIX)


class Pseudonyms:
    """The keys of the current (and next) period, and the set of followed MACs.

    Used by the capture thread (ident, rotate); the writer thread only swaps `followed` for a
    fresh frozenset. `random` gives key bytes (os.urandom; a test may seed it to compare two runs),
    `wall` the real time, which decides what the key file may keep."""

    def __init__(self, hours: float = 24, path: str | Path | None = None,
                 random: Callable[[int], bytes] = os.urandom, wall: Callable[[], float] = time.time) -> None:
        if not hours > 0:
            raise ValueError("pseudonym_rotation_hours must be positive")
        self.seconds = float(hours) * 3600
        self.path = Path(path) if path is not None else None
        self.random, self.wall = random, wall
        self.followed: frozenset[str] = frozenset()
        self.floor: int | None = None  # periods before it have no key any more
        self._keys: dict[int, bytearray] = {}
        self._bucket = self._bucket_period = None
        self._interned: dict[int, int] = {}
        self._texts: dict[int, dict[str, str]] = {}  # period -> MAC -> pseudonym, see text()
        self._load()

    # -- periods ---------------------------------------------------------------------------------

    def period(self, ts: float) -> int:
        """The period of a time: local time (DST included) in steps of the rotation."""
        bucket = int(ts // 900)  # every UTC offset is a multiple of 15 minutes
        if bucket != self._bucket:
            self._bucket = bucket
            period = int((ts + time.localtime(ts).tm_gmtoff) // self.seconds)
            self._bucket_period = self._interned.setdefault(period, period)  # one int object per period
        return self._bucket_period

    # -- names -----------------------------------------------------------------------------------

    def name(self, mac: str, ts: float, source: str = LAN) -> str | int:
        """What the device seen at `ts` is named: its MAC when followed (on the guest LAN; probe
        requests over the air stay aggregate), else the period whose key names it (see text())."""
        if source == LAN and mac in self.followed:
            return mac
        period = self.period(ts)
        if self.floor is not None and period < self.floor:
            return self.floor  # a late frame after its period's key went: the current key
        return period

    def text(self, mac: str, name: str | int) -> str:
        """A name as the database holds it: a MAC, or the pseudonym under the period's key.

        A device is named at every flush while it is around: its pseudonyms are remembered
        (TEXTS_KEPT at most, in memory only, forgotten with their period's key)."""
        if name.__class__ is str:
            return name
        texts = self._texts.get(name)
        if texts is not None:
            text = texts.get(mac)
            if text is not None:
                return text
        key = self._keys.get(name)
        if key is None:
            if self.floor is not None and name < self.floor:
                raise ValueError(f"period {name}: its key was destroyed")
            key = self._new_key(name)
        text = PREFIX + hmac.digest(key, mac.encode(), "sha256")[:16].hex()
        if texts is None or len(texts) >= TEXTS_KEPT:
            texts = self._texts[name] = {}
        texts[mac] = text
        return text

    def aggregate(self, ts: float) -> str:
        """The name every run heard over the air shares on the local day of `ts`: no device's own."""
        return f"{PREFIX}air-{time.strftime('%Y-%m-%d', time.localtime(ts))}"

    def ident(self, mac: str, ts: float, source: str = LAN) -> str:
        return self.text(mac, self.name(mac, ts, source))

    def candidates(self, mac: str) -> list[tuple[int, str]]:
        """The pseudonyms of `mac` under every key alive (runs restored after a restart)."""
        return [(p, PREFIX + hmac.digest(key, mac.encode(), "sha256")[:16].hex()) for p, key in self._keys.items()]

    def due(self, now: float) -> int | None:
        """The period to rotate to, when `now` has left the floor's."""
        period = self.period(now)
        return period if self.floor is None or period > self.floor else None

    def rotate(self, period: int) -> int:
        """Destroy the keys of the periods before `period`; returns how many went."""
        self.floor = period
        self._interned = {p: p for p in self._interned if p >= period}
        self._texts = {p: texts for p, texts in self._texts.items() if p >= period}
        gone = [p for p in self._keys if p < period]
        for p in gone:
            key = self._keys.pop(p)
            key[:] = bytes(len(key))  # best effort: no copy of ours outlives the rotation
        if gone:
            self._save()
            logger.info("pseudonym key rotated: %d key(s) destroyed", len(gone))
        return len(gone)

    def alive(self) -> dict[int, bytes]:
        """The periods with a key, and the keys (tests: the old key is gone)."""
        return {p: bytes(k) for p, k in self._keys.items()}

    # -- the key file ----------------------------------------------------------------------------

    def _new_key(self, period: int) -> bytearray:
        key = self._keys[period] = bytearray(self.random(32))
        self._save()
        return key

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        data = self.path.read_bytes()
        current = self.period(self.wall())
        for i in range(0, len(data) - _SLOT + 1, _SLOT):
            period = int.from_bytes(data[i:i + 8], "little", signed=True)
            key = bytearray(data[i + 8:i + _SLOT])
            if any(key) and period >= current:
                self._keys[period] = key
        self._save()  # a past period's key in the file is overwritten now

    def _save(self) -> None:
        """Overwrite the file in place, always the same size: the old key's bytes are written
        over, not left in a freed block as a new file and a rename would leave them."""
        if self.path is None:
            return
        current = self.period(self.wall())
        # The nearest periods: a key made for a time far ahead (a replay of a capture dated ahead)
        # never pushes the current period's key out of the file.
        keep = sorted((p, k) for p, k in self._keys.items() if p >= current)[:_SLOTS]
        data = b"".join(p.to_bytes(8, "little", signed=True) + bytes(k) for p, k in keep)
        data = data.ljust(_SLOT * _SLOTS, b"\0")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)


def key_path(settings) -> Path:
    return Path(settings.data_dir) / KEY_FILE


# -- retention -------------------------------------------------------------------------------------

PURGE_CHUNK = 5000


def purge_anonymous(database, retention_days: int, now: datetime.datetime) -> dict[str, int]:
    """Anonymous visits older than `anonymous_retention_days`, then the pseudonyms left with
    neither a visit nor a run in progress (secure_delete zeroes what they held)."""
    cutoff = (now - datetime.timedelta(days=retention_days)).isoformat(" ")
    visits = 0
    while True:
        with database.atomic():
            deleted = database.execute_sql(
                'DELETE FROM visit WHERE id IN (SELECT v.id FROM visit v JOIN device d ON d.id = v.device_id '
                'WHERE d.anonymous = 1 AND v."end" < ? LIMIT ?)', (cutoff, PURGE_CHUNK)).rowcount
        visits += deleted
        if deleted < PURGE_CHUNK:
            break
    with database.atomic():
        devices = database.execute_sql(
            "DELETE FROM device WHERE anonymous = 1 AND last_seen < ? "
            "AND NOT EXISTS (SELECT 1 FROM visit v WHERE v.device_id = device.id) "
            "AND NOT EXISTS (SELECT 1 FROM open_run r WHERE r.device_id = device.id)", (cutoff,)).rowcount
    return {"anonymous_visits": visits, "anonymous_devices": devices}

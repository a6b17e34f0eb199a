"""Vendor names from the IEEE registry (Debian's ieee-data package keeps it up to date).

Prefixes are held in a sorted array (4 bytes each) with the offset of their line in the file;
a name is read from the file only when a new device needs it, so 30,000+ vendors cost ~250 KB.
The prefixes themselves are read at the first lookup (a tenth of a second): a collector that
only ever sees anonymous devices never asks for a vendor, and starts without it.
"""
from __future__ import annotations

import bisect
import csv
import io
import logging
from array import array
from pathlib import Path

from portal.core.macs import randomized

logger = logging.getLogger(__name__)
DEFAULT_FILE = Path("/usr/share/ieee-data/oui.csv")
NAMES_KEPT = 2048  # vendor names held in memory, by prefix


class OuiTable:
    def __init__(self, path: str | Path = DEFAULT_FILE) -> None:
        self.path = Path(path)
        self._prefixes = array("I")
        self._offsets = array("I")
        self._names: dict[int, str | None] = {}  # prefixes already read (a store sees few makers)
        self._loaded = False

    def _load(self) -> None:
        self._loaded = True
        try:
            self._read_prefixes()
        except OSError as exc:
            logger.warning("no vendor names: cannot read %s (%s); install Debian's ieee-data", self.path, exc.strerror)

    def _read_prefixes(self) -> None:
        pairs = []
        with open(self.path, "rb") as fh:
            fh.readline()  # header
            offset = fh.tell()
            for line in fh:
                parts = line.split(b",", 2)
                if len(parts) == 3 and parts[0] == b"MA-L" and len(parts[1]) == 6:
                    try:
                        pairs.append((int(parts[1], 16), offset))
                    except ValueError:
                        pass
                offset += len(line)
        pairs.sort()
        self._prefixes = array("I", (p for p, _ in pairs))
        self._offsets = array("I", (o for _, o in pairs))

    def __len__(self) -> int:
        if not self._loaded:
            self._load()
        return len(self._prefixes)

    def vendor(self, mac: str) -> str | None:
        """The organisation that owns the MAC's prefix; None for randomized or unknown ones."""
        try:
            if randomized(mac):
                return None  # locally administered: no vendor behind it
            prefix = int(mac[0:2] + mac[3:5] + mac[6:8], 16)
        except ValueError:
            return None
        try:
            return self._names[prefix]
        except KeyError:
            pass
        if not self._loaded:
            self._load()
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        name = self._names[prefix] = self._read(prefix)
        return name

    def _read(self, prefix: int) -> str | None:
        i = bisect.bisect_left(self._prefixes, prefix)
        if i == len(self._prefixes) or self._prefixes[i] != prefix:
            return None
        with open(self.path, "rb") as fh:
            fh.seek(self._offsets[i])
            line = fh.readline().decode("utf-8", "replace")
        row = next(csv.reader(io.StringIO(line)), None)
        return row[2].strip()[:120] if row and len(row) > 2 else None


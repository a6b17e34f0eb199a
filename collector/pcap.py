"""Classic pcap files, read with struct over mmap (scapy's per-packet path is far too slow here)."""
from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Iterator

MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG = b"\x0a\x0d\x0d\x0a"


class PcapError(ValueError):
    """Not a pcap file we can read; the message says what to do."""


class PcapReader:
    """Iterate (timestamp, frame bytes) of a pcap file; .linktype says how to parse the frames."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise PcapError(f"cannot open {path}: {exc.strerror}") from None
        try:
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            self._fh.close()
            raise PcapError(f"{path} is empty") from None
        head = self._map[:24]
        if head[:4] == PCAPNG:
            self.close()
            raise PcapError(f"{path} is pcapng; convert it with: tcpdump -r {path} -w out.pcap")
        if len(head) < 24 or head[:4] not in MAGICS:
            self.close()
            raise PcapError(f"{path} is not a pcap file")
        endian, self.unit = MAGICS[head[:4]]
        self.linktype = struct.unpack(endian + "I", head[20:24])[0] & 0x0FFFFFFF
        # Records may also be read in place (Pipeline.feed_records, then finish): `data` from
        # `offset` on, each behind a header `record` gives as (seconds, fraction in `unit`s, length);
        # the original length, last, is skipped.
        self.record = struct.Struct(endian + "III4x")
        self.offset = 24
        self.truncated = 0

    @property
    def data(self) -> mmap.mmap:
        return self._map

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        unpack, size, data, unit = self.record.unpack_from, self.record.size, self._map, self.unit
        end = len(data)
        off = self.offset
        while off + size <= end:
            sec, frac, incl = unpack(data, off)
            off += size
            if off + incl > end:
                self.truncated += 1  # a capture cut short: the last record is incomplete
                return
            yield sec + frac * unit, data[off:off + incl]
            off += incl

    def finish(self, offset: int) -> None:
        """Records were read in place up to `offset`, where reading stopped short of a whole
        record: one cut short by the end of the file is counted in `truncated`, as above."""
        self.offset = offset
        if offset + self.record.size <= len(self._map):
            self.truncated += 1

    def close(self) -> None:
        if getattr(self, "_map", None) is not None:
            self._map.close()
            self._map = None
        self._fh.close()

    def __enter__(self) -> "PcapReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

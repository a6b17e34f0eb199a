"""A small reserved journal for sign-ins the database could not take (a full SD card).

The file is allocated once, when there is room (posix_fallocate: the blocks are the file's own),
and then only overwritten in place, so writing to it needs no free space. Each slot holds one
sign-in, encrypted with the store's key like every other personal field, and is zeroed once the
sign-in has been replayed into the database. Only the portal writes it (one process), under a lock.

Slot layout: 4-byte magic, 4-byte big-endian length, then the AES-GCM ciphertext.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import struct
import threading
from pathlib import Path
from typing import Iterator

from cryptography.exceptions import InvalidTag

from portal.identity import Vault

logger = logging.getLogger(__name__)

MAGIC = b"FFJ1"
SLOT = 2048
SLOTS = 128  # 256 KiB: a busy afternoon's sign-ins while the owner clears the card
_HEAD = struct.Struct(">4sI")
_CONTEXT = "journal.sign_in"


class Journal:
    def __init__(self, path: str | os.PathLike, vault: Vault, slots: int = SLOTS) -> None:
        self.path, self.vault, self.slots = Path(path), vault, slots
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._used: set[int] = set()
        self.open()

    @property
    def available(self) -> bool:
        return self._fd is not None

    def open(self) -> bool:
        """Create or reopen the file and make sure its blocks are reserved; False without room."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            logger.error("cannot open the sign-in journal %s: %s", self.path, exc.strerror)
            return False
        try:
            size = SLOT * self.slots
            if os.fstat(fd).st_size < size:
                os.posix_fallocate(fd, 0, size)
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.ENOSPC:
                logger.error("no room to reserve the sign-in journal (%d KiB)", SLOT * self.slots // 1024)
            else:
                logger.error("cannot reserve the sign-in journal: %s", exc.strerror)
            return False
        self._fd = fd
        self._used = {slot for slot, _ in self._scan()}
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _scan(self) -> Iterator[tuple[int, bytes]]:
        for slot in range(self.slots):
            raw = os.pread(self._fd, SLOT, slot * SLOT)
            magic, length = _HEAD.unpack_from(raw)
            if magic == MAGIC and 0 < length <= SLOT - _HEAD.size:
                yield slot, raw[_HEAD.size:_HEAD.size + length]

    def append(self, record: dict) -> bool:
        """Keep one sign-in durably; False when the journal is full or unavailable."""
        blob = self.vault.encrypt(json.dumps(record, separators=(",", ":")), _CONTEXT)
        if len(blob) > SLOT - _HEAD.size:
            logger.error("a sign-in does not fit a journal slot (%d bytes)", len(blob))
            return False
        with self._lock:
            if self._fd is None and not self.open():
                return False
            free = next((s for s in range(self.slots) if s not in self._used), None)
            if free is None:
                return False
            data = _HEAD.pack(MAGIC, len(blob)) + blob
            os.pwrite(self._fd, data + b"\0" * (SLOT - len(data)), free * SLOT)
            os.fdatasync(self._fd)
            self._used.add(free)
            return True

    def pending(self) -> list[tuple[int, dict]]:
        """The sign-ins waiting for the database, oldest slot first (unreadable slots are skipped)."""
        with self._lock:
            if self._fd is None:
                return []
            out = []
            for slot, blob in self._scan():
                try:
                    text = self.vault.decrypt(blob, _CONTEXT)
                except (InvalidTag, ValueError):
                    text = None
                if text is None:
                    logger.error("journal slot %d cannot be decrypted (another key?): left as it is", slot)
                    continue
                out.append((slot, json.loads(text)))
            return out

    def __len__(self) -> int:
        return len(self._used)

    def release(self, slot: int) -> None:
        """The sign-in of `slot` is in the database now: forget it (zeroed, never reused unseen)."""
        with self._lock:
            if self._fd is None:
                return
            os.pwrite(self._fd, b"\0" * SLOT, slot * SLOT)
            os.fdatasync(self._fd)
            self._used.discard(slot)

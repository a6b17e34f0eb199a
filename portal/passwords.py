"""Password hashing sized for the box: argon2id at OWASP's 19 MiB, with few hashes at once.

The appliance may be a Raspberry Pi Zero 2 W: 512 MB for the OS, the portal, the collector and
the scheduler together. argon2-cffi's defaults (RFC 9106's second choice: 64 MiB, t=3, p=4) took
the portal from about 72 MB to 140 MB per manager login, and a few logins at once could push the
box into swap or the OOM killer. OWASP's password storage cheat sheet lists argon2id with 19 MiB,
t=2, p=1 as equivalent to its other settings; on a Cortex-A53 a hash costs about 10x this laptop's
time, still well under a second (tests/perf/bench_login.py prints the figures here).

Every hash and verification holds one of AT_ONCE slots, so N simultaneous logins need
AT_ONCE x 19 MiB, not N x 19 MiB; the others wait their turn (the login throttle bounds how many).

libargon2 takes its memory from malloc. glibc raises its mmap threshold to the size of the first
large block freed, so from the second hash on, each 19 MiB block came from the arena of the thread
that hashed and stayed there: the portal's RSS grew by 19 MiB for every waitress thread that ever
checked a password (61 MB to 138 MB after eight logins one at a time). Pinning the threshold
(mallopt M_MMAP_THRESHOLD, which also turns the dynamic raise off) keeps such blocks in mmap,
returned to the system when the hash ends.
Hashes made with other parameters (the old defaults) still verify, and `needs_rehash` tells the
caller to store a new one after the next right password.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import secrets
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

TIME_COST = 2
MEMORY_KIB = 19 * 1024
PARALLELISM = 1
AT_ONCE = 2
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_MMAP_THRESHOLD = 128 * 1024  # glibc's default, made fixed

logger = logging.getLogger(__name__)


@functools.cache
def return_big_blocks_to_the_system() -> bool:
    """Once per process: large allocations always mmap'd (see the module's docstring)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc: musl, for one, already unmaps large blocks
        return False
    if not done:
        logger.warning("mallopt(M_MMAP_THRESHOLD) refused: password hashes may stay in the heap")
    return done


class BoundedHasher:
    """argon2id hashing and verification with at most `at_once` of them running together."""

    def __init__(self, hasher: PasswordHasher, at_once: int = AT_ONCE) -> None:
        self.hasher = hasher
        self.at_once = at_once
        self.slots = threading.BoundedSemaphore(at_once)

    def hash(self, password: str) -> str:
        return_big_blocks_to_the_system()
        with self.slots:
            return self.hasher.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        """True when `password` matches; False for a wrong one or a hash that is not argon2."""
        return_big_blocks_to_the_system()
        with self.slots:
            try:
                return self.hasher.verify(hashed, password)
            except (VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, hashed: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    @functools.cached_property
    def dummy(self) -> str:
        """A hash to verify against when no account matches: the same time as a real check.
        Made on first use, not at import."""
        return self.hash(secrets.token_hex(16))


def production_hasher() -> BoundedHasher:
    return BoundedHasher(PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM,
                                        hash_len=32, salt_len=16, type=Type.ID), AT_ONCE)


# The one hasher of every process (portal, CLI): accounts.py reads it at each call.
HASHER = production_hasher()

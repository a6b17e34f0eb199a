"""The app's one rate limiter: named buckets, each a bounded sliding-window store of its own.

The portal runs as one multi-threaded process, so the limiter lives in memory. Each purpose gets
its own bucket (its own limit, window and table): a flood of keys in one bucket (forged captive
identities, say) never touches another (the panel's login throttle). Inside a bucket, memory is
bounded by `max_keys`, and the eviction that keeps it bounded forgets keys that are *not*
blocked first: a flood of new keys never unblocks anyone. Only when every slot holds a blocked
key does the bucket's policy decide: `fail_closed` refuses new keys until a blocked one expires
(the panel's login: a few management addresses could never fill it, so only an attack does);
otherwise the key blocked longest ago makes room (the visitor forms: refusing every newcomer
would turn an attacker's 20,000 blocked identities into a sign-in outage for the shop).

Keys must be what a client cannot choose: the peer address, a gateway-vouched MAC, a blind index
of a verified contact; never a request parameter, or one client holds as many keys as it likes.

    limiter.bucket("panel-login", limit=10, window=600, fail_closed=True).allow(peer_ip)
    limiter.bucket("code-send", limit=3, window=3600).allow(peer_ip, contact_index)  # both keys count
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Bucket:
    """One sliding-window store: at most `limit` attempts per key within `window` seconds."""

    def __init__(self, limit: int, window: float, max_keys: int = 20_000, clock: Clock = time.monotonic,
                 fail_closed: bool = True) -> None:
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self.fail_closed = fail_closed
        # Keys under their limit, stalest first: the only ones eviction may forget.
        self._open: OrderedDict[str, deque[float]] = OrderedDict()
        # Keys at their limit, in the order they were blocked: kept until their window passes.
        self._blocked: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.refused_full = 0  # new keys refused because every slot held a blocked key (fail_closed)
        self.evicted_blocked = 0  # blocked keys forgotten to make room (not fail_closed)

    def __len__(self) -> int:
        return len(self._open) + len(self._blocked)

    def allow(self, *keys: str) -> bool:
        """Count one attempt against every key; False (nothing counted) when any key is over its limit."""
        now = self.clock()
        with self._lock:
            queues = []
            for key in keys:
                hits = self._hits(key, now)
                if hits is None:
                    self.refused_full += 1
                    if self.refused_full == 1 or self.refused_full % 1000 == 0:
                        logger.warning("rate limiter full of blocked keys: refusing new ones (%d so far)",
                                       self.refused_full)
                    return False
                queues.append((key, hits))
            if any(len(hits) >= self.limit for _, hits in queues):
                return False
            for key, hits in queues:
                hits.append(now)
                if len(hits) >= self.limit:
                    self._open.pop(key, None)
                    self._blocked[key] = hits
            return True

    def blocked(self, key: str) -> bool:
        """Whether the next attempt for `key` would be refused (counts nothing)."""
        now = self.clock()
        with self._lock:
            hits = self._blocked.get(key)
            if hits is None:
                return False
            self._expire(hits, now)
            return len(hits) >= self.limit

    def _hits(self, key: str, now: float) -> deque[float] | None:
        """The key's recent attempts (created if new); None when there is no room for a new key."""
        hits = self._blocked.get(key)
        if hits is not None:
            self._expire(hits, now)
            if len(hits) < self.limit:  # its window has passed: open again
                del self._blocked[key]
                self._open[key] = hits
            return hits
        hits = self._open.get(key)
        if hits is not None:
            self._open.move_to_end(key)
            self._expire(hits, now)
            return hits
        if len(self) >= self.max_keys and not self._make_room(now):
            return None
        hits = self._open[key] = deque()
        return hits

    def _make_room(self, now: float) -> bool:
        if self._open:
            self._open.popitem(last=False)  # the stalest key under its limit: forgetting it frees no one
            return True
        # Only blocked keys: the one blocked longest ago goes if its window has passed, or if
        # this bucket prefers letting one blocked key go to refusing everyone new.
        if self._blocked:
            key, hits = next(iter(self._blocked.items()))
            self._expire(hits, now)
            if len(hits) < self.limit or not self.fail_closed:
                if len(hits) >= self.limit:
                    self.evicted_blocked += 1
                del self._blocked[key]
                return True
        return False

    def _expire(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()


class RateLimiter:
    """The app's one limiter. `allow(*keys)` is the visitor forms' bucket; other purposes ask for
    their own with `bucket(name, ...)`."""

    def __init__(self, limit: int, window: float, max_keys: int = 20_000, clock: Clock = time.monotonic) -> None:
        self.clock, self.max_keys = clock, max_keys
        self._buckets: dict[str, Bucket] = {"forms": Bucket(limit, window, max_keys, clock, fail_closed=False)}
        self._lock = threading.Lock()

    def bucket(self, name: str, limit: int | None = None, window: float | None = None,
               max_keys: int | None = None, fail_closed: bool = True) -> Bucket:
        """The bucket called `name`, created on first use with these limits (later calls get the same
        one; pass limits to change them, e.g. after the owner edits settings)."""
        with self._lock:
            found = self._buckets.get(name)
            if found is None:
                if limit is None or window is None:
                    raise KeyError(f"rate-limit bucket {name!r} has no limits yet")
                found = self._buckets[name] = Bucket(limit, window, max_keys or self.max_keys, self.clock,
                                                     fail_closed)
            else:
                if limit is not None:
                    found.limit = limit
                if window is not None:
                    found.window = window
            return found

    def allow(self, *keys: str) -> bool:
        """The visitor forms' bucket (sign-in, welcome back, erasure)."""
        return self._buckets["forms"].allow(*keys)

    @property
    def limit(self) -> int:
        return self._buckets["forms"].limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._buckets["forms"].limit = value

"""A bounded, in-process sliding-window limiter (the portal runs as one multi-threaded process)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable


class RateLimiter:
    def __init__(self, limit: int, window: float, max_keys: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, *keys: str) -> bool:
        """Count one attempt against every key; False when any key is over its limit."""
        now = self.clock()
        with self._lock:
            queues = []
            for key in keys:
                hits = self._hits.get(key)
                if hits is None:
                    hits = self._hits[key] = deque()
                    if len(self._hits) > self.max_keys:
                        self._hits.popitem(last=False)  # forget the stalest key, bounded memory
                else:
                    self._hits.move_to_end(key)
                while hits and hits[0] <= now - self.window:
                    hits.popleft()
                queues.append(hits)
            if any(len(q) >= self.limit for q in queues):
                return False
            for q in queues:
                q.append(now)
            return True

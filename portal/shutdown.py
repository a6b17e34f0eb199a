"""Serve a waitress server until SIGTERM or SIGINT, then stop the way systemd expects.

waitress's own `run()` leaves SIGTERM to Python's default, which kills the process at once:
requests in flight are cut and whatever the app holds in memory (the funnel's counts) is lost.
Here a signal starts a drain instead:

1. connections already in the listen backlog are accepted, then the listening socket is
   closed (new connections are refused);
2. connections with a request being received, queued or served are left to finish, and
   their responses are sent; idle keep-alive connections are closed;
3. when none is left, or after `drain_seconds`, the worker threads are stopped and
   `on_stopped` runs (flush what the app holds), and the call returns: the process exits 0.

A second signal during the drain stops waiting (an impatient operator, or systemd's final
SIGKILL comes anyway after TimeoutStopSec).
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Callable

from waitress import wasyncore

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 8.0   # systemd's TimeoutStopSec (15 s in systemd/footfall-portal.service) leaves room to flush
IDLE_GRACE = 0.5      # seconds of quiet before an idle connection is closed during the drain
_TICK = 0.05          # the drain's poll timeout: it checks its connections this often


def _close_if_idle(channel, now: float) -> None:
    """Close a connection that has nothing to do: no request being received, queued or served,
    no response left to send, no bytes waiting to be read, and quiet for IDLE_GRACE (a phone that
    has just connected sends its request a moment later: closing then would reset it)."""
    if now - channel.last_activity < IDLE_GRACE:
        return
    try:
        if channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
            return  # a request has arrived: the loop reads it next
    except BlockingIOError:
        pass
    except OSError:
        pass  # broken: closing it is right
    with channel.requests_lock:
        if not (channel.requests or channel.request is not None or channel.total_outbufs_len):
            # received() checks this flag under the same lock: no new request starts on it.
            channel.will_close = True


def serve_until_stopped(server, on_stopped: Callable[[], None] = lambda: None,
                        drain_seconds: float = DRAIN_SECONDS,
                        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> dict:
    """Run `server` (a waitress server from create_server) until one of `signals`; drain; return
    what the drain saw: {"drained": bool, "left": connections cut at the deadline}."""
    stop = threading.Event()
    hurry = threading.Event()

    def handler(signum, frame):
        (hurry if stop.is_set() else stop).set()
        server.pull_trigger()  # wake poll() now rather than at its next timeout

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    socket_map = server._map
    use_poll = server.adj.asyncore_use_poll
    try:
        while not stop.is_set():
            # The handler pulls the trigger: poll() wakes at once, not at its timeout.
            wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=socket_map, use_poll=use_poll, count=1)
        # 1. Stop accepting. Connections the kernel has already completed (in the listen backlog,
        #    their requests likely sent) are taken first: closing the socket would reset them.
        for _ in range(server.adj.backlog):
            before = len(server.active_channels)
            server.handle_accept()
            if len(server.active_channels) == before:
                break
        wasyncore.dispatcher.close(server)  # the listening socket goes; channels and trigger stay
        deadline = time.monotonic() + drain_seconds
        # 2. Finish what is in flight.
        while server.active_channels and time.monotonic() < deadline and not hurry.is_set():
            now = time.time()  # waitress stamps last_activity with time.time()
            for channel in list(server.active_channels.values()):
                _close_if_idle(channel, now)
            wasyncore.loop(timeout=_TICK, map=socket_map, use_poll=use_poll, count=1)
        left = len(server.active_channels)
        if left:
            logger.warning("stopping with %d connection(s) still open after %.0f s", left, drain_seconds)
        # 3. Threads, sockets, then what the app holds in memory.
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
        wasyncore.close_all(socket_map)
        on_stopped()
        return {"drained": not left, "left": left}
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def flush_app(app) -> None:
    """Write what the portal holds in memory: the funnel's counts since the last flush. (The
    online index, the dashboard snapshot and the rate limiter are caches of the database or
    deliberately short-lived: nothing there is owed to the database.)"""
    from portal.db import database

    with database.connection_context():
        app.extensions["footfall"].funnel.flush()

"""The demo's driver: each message, code included, on the process's standard output."""
from __future__ import annotations

import sys
import threading

from portal.messages import Message


class ConsoleDriver:
    name = "console"
    _lock = threading.Lock()

    def __init__(self, stream=None) -> None:
        self.stream = stream

    def send(self, message: Message) -> str:
        out = self.stream or sys.stdout
        with self._lock:
            out.write(f"[message {message.channel} to {message.to}] {message.subject + ': ' if message.subject else ''}"
                      f"{message.text}\n")
            out.flush()
        return message.id

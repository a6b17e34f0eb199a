"""Another process's long write (a backup restore, a stuck job) holding a database's write lock."""
from __future__ import annotations

import sqlite3
import threading
import time


def hold_lock_in_file(path, seconds: float) -> threading.Thread:
    ready = threading.Event()

    def hold():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(5)
    return thread

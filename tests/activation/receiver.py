"""A CRM's webhook receiver on loopback, checking every request with the reference
`standardwebhooks` library (the code a CRM such as Getfly would run: nothing Footfall-specific)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    """mode: "ok" (204), "500", "garbage" (not HTTP), "slow" (answers after `slow` seconds), "drip"
    (a byte every 0.05 s, for 5 s),
    "redirect" (302 elsewhere). Keeps every request and whether its signature verified."""

    def __init__(self, tls=None):
        self.mode, self.slow, self.secret = "ok", 3.0, None
        self.requests: list[dict] = []  # {"headers", "body", "verified", "payload"}
        self.redirected = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # a followed redirect would land here
                receiver.redirected += 1
                self.send_response(200)
                self.end_headers()

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = {"headers": headers, "body": raw, "verified": False, "payload": None, "path": self.path}
                if receiver.secret:
                    try:
                        entry["payload"] = Webhook(receiver.secret).verify(raw, headers)
                        entry["verified"] = True
                    except WebhookVerificationError as exc:
                        entry["error"] = str(exc)
                receiver.requests.append(entry)
                mode = receiver.mode
                if mode == "garbage":
                    self.wfile.write(b"\x00\x01garbage, not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                if mode == "slow":
                    time.sleep(receiver.slow)
                if mode == "drip":  # an answer a byte at a time: never a timeout, never complete
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                        for _ in range(100):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 500 if mode == "500" else 204
                self.send_response(status)
                body = b"x" * 100_000 if status == 500 else b""  # a large error page: read bounded
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/footfall"
        if tls is not None:  # an ssl.SSLContext holding the server's certificate
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hooks/footfall"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def payloads(self, kind: str | None = None) -> list[dict]:
        return [r["payload"] for r in self.requests if r["verified"] and (kind is None or r["payload"]["type"] == kind)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def decoded(entry: dict) -> dict:
    return json.loads(entry["body"])

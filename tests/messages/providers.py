"""Local HTTP servers that speak the SMS and Zalo providers' documented APIs, with their error
answers, slow answers and garbage, for the message drivers' tests."""
from __future__ import annotations

import email
import json
import re
import socket
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Inbox:
    """aiosmtpd's handler: every email received, as (recipients, parsed message)."""

    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def codes(self, to: str) -> list[str]:
        found = []
        for rcpt, message in list(self.messages):
            if to in rcpt:
                found += re.findall(r"\b(\d{6})\b", message.get_body(("plain",)).get_content())[:1]
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Provider:
    """`mode` picks the answer: ok, an error code, slow (seconds), garbage, http500."""

    def __init__(self, kind: str) -> None:
        self.kind, self.mode, self.received, self.slow = kind, "ok", [], 0.0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                provider.received.append({"body": body, "headers": dict(self.headers), "path": self.path})
                if provider.slow:
                    time.sleep(provider.slow)
                status, answer = provider.answer(body, self.headers)
                raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        path = "/MainService.svc/json/SendMultipleMessage_V4_post_json/" if kind == "esms" else "/message/template"
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, body: dict, headers) -> tuple[int, object]:
        if self.mode == "garbage":
            return 200, b"<html>maintenance</html>"
        if self.mode == "http500":
            return 500, {"error": "internal"}
        if self.kind == "esms":
            if self.mode == "ok":
                return 200, {"CodeResult": "100", "CountRegenerate": 0, "SMSID": f"sms-{len(self.received)}"}
            return 200, {"CodeResult": self.mode, "CountRegenerate": 0, "ErrorMessage": "Authorize Failed"}
        if headers.get("access_token") != "oa-token":
            return 200, {"error": -124, "message": "Access token is invalid"}
        if self.mode == "ok":
            return 200, {"error": 0, "message": "Success", "data": {"msg_id": f"zns-{len(self.received)}",
                                                                    "sent_time": str(int(time.time() * 1000))}}
        return 200, {"error": int(self.mode), "message": "Phone number is invalid"}

    def codes(self, phone: str) -> list[str]:
        """The codes this provider was asked to deliver to a phone (E.164 without '+'), oldest first."""
        digits = phone.lstrip("+")
        found = []
        for item in list(self.received):
            body = item["body"]
            if self.kind == "esms" and body.get("Phone") == digits:
                found += re.findall(r"\b(\d{6})\b", body.get("Content", ""))[:1]
            elif self.kind == "zns" and body.get("phone") == digits:
                found.append(str(body.get("template_data", {}).get("otp")))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

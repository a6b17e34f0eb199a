"""The central's answers carry erase commands: a store applies none unless the answer is the
central's, to this very batch, and fresh (issue 12, item 7). Fake centrals on loopback answer
unsigned, with another key, stale, replayed from another batch, or signed as a request."""
from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from portal import sync
from portal.core import wire
from portal.models import Lead, OutboxEvent
from portal.visitors import Client, SignInForm
from tests.central.fixtures import post_batch

KEY = secrets.token_bytes(32)


def forge(mode: str, request_signature: str, body: bytes) -> dict[str, str]:
    """The headers a fake central puts on its answer."""
    now = int(time.time())
    signatures = {
        "good": (now, wire.sign_answer(KEY, now, request_signature, body)),
        "other_key": (now, wire.sign_answer(secrets.token_bytes(32), now, request_signature, body)),
        "stale": (now - 3600, wire.sign_answer(KEY, now - 3600, request_signature, body)),
        "replayed": (now, wire.sign_answer(KEY, now, "0" * 64, body)),  # recorded from another batch
        "request_style": (now, wire.sign(KEY, now, body)),  # a request's MAC is no answer's
        "garbled": (now, "zz" * 32),
    }
    if mode == "unsigned":
        return {}
    stamp, signature = signatures[mode]
    return {wire.TIMESTAMP_HEADER: str(stamp), wire.SIGNATURE_HEADER: signature}


@pytest.fixture
def fake_central():
    """Answers 200, the first batch with an erase command for the lead in `state["erase"]`."""
    state: dict = {"mode": "unsigned", "erase": "", "requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            state["requests"] += 1
            commands = [{"erase_lead": state["erase"]}] if state["requests"] == 1 else []
            body = json.dumps({"applied": 0, "duplicates": 0, "commands": commands}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in forge(state["mode"], self.headers[wire.SIGNATURE_HEADER], body).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["target"] = sync.Target(f"http://127.0.0.1:{server.server_address[1]}", "hcm-01", KEY, allow_http=True)
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def a_lead(visitors) -> Lead:
    assert visitors.sign_in(SignInForm(email="lan@example.com", terms=True), Client("10.1.0.7", "3c:22:fb:00:00:07")).ok
    return Lead.get(Lead.email_index.is_null(False))


@pytest.mark.parametrize("mode", ["unsigned", "other_key", "stale", "replayed", "request_style", "garbled"])
def test_an_erase_command_in_an_answer_not_the_centrals_is_never_applied(visitors, fake_central, mode):
    lead = a_lead(visitors)
    fake_central.update(mode=mode, erase=lead.uid)
    waiting = sync.pending()
    result = sync.drain(fake_central["target"], visitors.vault, visitors.gateway, "hcm-01", 100)
    assert fake_central["requests"] == 1
    assert "refused the central store's answer" in result["error"]
    assert Lead.get_by_id(lead.id).erased_at is None
    assert sync.pending() == waiting  # not marked delivered either: sent again, deduplicated there
    assert not OutboxEvent.select().where(OutboxEvent.topic == "erase.ack").exists()


def test_the_same_command_signed_by_the_central_is_applied(visitors, fake_central):
    """The control: the fake central above is refused for its signature, nothing else."""
    lead = a_lead(visitors)
    fake_central.update(mode="good", erase=lead.uid)
    result = sync.drain(fake_central["target"], visitors.vault, visitors.gateway, "hcm-01", 100)
    assert "error" not in result and result["commands"] == 1
    assert Lead.get_by_id(lead.id).erased_at is not None


def test_the_real_central_signs_its_answers_to_the_batch_they_answer(central_app, stores):
    client = central_app.test_client()
    response = post_batch(client, "hcm-01", stores["hcm-01"], [])
    request_signature = response.request.headers[wire.SIGNATURE_HEADER]
    assert response.status_code == 200
    assert wire.check_answer(stores["hcm-01"], request_signature, response.headers, response.data, time.time()) is None
    assert wire.check_answer(stores["hn-02"], request_signature, response.headers, response.data, time.time()) is not None
    refused = post_batch(client, "hcm-01", stores["hcm-01"], None, body=b"\x1f\x8b not really gzip")
    assert refused.status_code == 400  # a verified store's refusals are signed too
    assert wire.check_answer(stores["hcm-01"], refused.request.headers[wire.SIGNATURE_HEADER], refused.headers,
                             refused.data, time.time()) is None

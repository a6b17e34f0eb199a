"""The panel's webhooks page (portal/panel/webhooks.py): owners configure, others cannot; CSRF;
the secret shown once; bad URLs refused with nothing changed; dead letters sent again."""
from __future__ import annotations

import dataclasses
import re

import pytest

from portal.models import AuditEntry
from portal.webhooks import queue
from tests.panel.conftest import PanelClient, accounts_by_role, as_role, cheap_hashing  # noqa: F401  (fixtures)

HOOK = "http://127.0.0.1:9/hooks/crm"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, panel_require_2fa=False, webhook_allow_loopback=True)


def add(client, url=HOOK, events=("lead.created", "consent.changed")):
    return client.form("/panel/webhooks", {"url": url, "events": list(events)}, token_page="/panel/webhooks")


def test_an_owner_adds_an_endpoint_and_sees_its_secret_once(app, as_role):
    owner = as_role("owner")
    page = owner.get("/panel/webhooks")
    assert page.status_code == 200 and "Webhooks" in page.get_data(as_text=True)
    response = add(owner)
    assert response.status_code == 200
    (endpoint,) = queue.WebhookEndpoint.select()
    secret = re.search(r'<code id="webhook-secret">(whsec_[^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert queue.secret_of(endpoint, app.extensions["footfall"].vault) == secret
    assert secret.encode() not in bytes(endpoint.secret_enc)  # kept encrypted
    assert endpoint.types == ["lead.created", "consent.changed"] and endpoint.enabled
    assert secret not in owner.get("/panel/webhooks").get_data(as_text=True)  # never shown again
    assert AuditEntry.select().where(AuditEntry.action == "webhook_added").count() == 1
    assert owner.form(f"/panel/webhooks/{endpoint.uid}/enabled", {"enabled": "no"}, "/panel/webhooks").status_code == 302
    assert not queue.WebhookEndpoint.get().enabled
    assert owner.form(f"/panel/webhooks/{endpoint.uid}/enabled", {"enabled": "maybe"}, "/panel/webhooks").status_code == 400
    assert owner.form(f"/panel/webhooks/{endpoint.uid}/remove", {}, "/panel/webhooks").status_code == 302
    assert queue.WebhookEndpoint.select().count() == 0
    assert owner.form(f"/panel/webhooks/{endpoint.uid}/remove", {}, "/panel/webhooks").status_code == 404


REFUSED = [
    ("http://crm.example.com/hook", "must start with https://"),
    ("https://192.168.1.20/hook", "private, local or reserved"),
    ("https://169.254.169.254/latest", "private, local or reserved"),
    ("https://u:p@127.0.0.1/x", "not a usable URL"),
    ("https://x.example/\"><script>alert(1)</script>", "not a usable URL"),
]


def test_a_refused_form_changes_nothing_and_says_why(app, as_role):
    owner = as_role("owner")
    for url, message in REFUSED:
        response = add(owner, url)
        text = response.get_data(as_text=True)
        assert response.status_code == 422 and message in text, url
        assert "<script>alert(1)" not in text
    # Without the CSRF token: refused before anything is read.
    assert owner.post("/panel/webhooks", data={"url": HOOK, "events": ["lead.created"]}).status_code == 400
    assert queue.WebhookEndpoint.select().count() == 0
    response = add(owner, events=())
    assert response.status_code == 422 and "at least one event" in response.get_data(as_text=True)
    assert add(owner, events=("lead.created", "lead.deleted")).status_code == 422
    assert queue.WebhookEndpoint.select().count() == 0
    for n in range(queue.MAX_ENDPOINTS):
        assert add(owner, url=f"{HOOK}/{n}").status_code == 200
    response = add(owner, url=f"{HOOK}/more")
    assert response.status_code == 422 and "at most 10 endpoints" in response.get_data(as_text=True)
    assert queue.WebhookEndpoint.select().count() == queue.MAX_ENDPOINTS


@pytest.mark.parametrize("role", ["manager", "analyst"])
def test_only_owners_configure_webhooks(app, as_role, role):
    owner = as_role("owner")
    add(owner)
    endpoint = queue.WebhookEndpoint.get()
    other = as_role(role)
    assert other.get("/panel/webhooks").status_code == 403
    token = other.token("/panel/")
    for path, data in (("/panel/webhooks", {"url": "http://127.0.0.1:8/x", "events": ["lead.created"]}),
                       (f"/panel/webhooks/{endpoint.uid}/enabled", {"enabled": "no"}),
                       (f"/panel/webhooks/{endpoint.uid}/remove", {}),
                       ("/panel/webhooks/dead/1/send", {})):
        assert other.post(path, data={"csrf_token": token, **data}).status_code == 403
    assert [(e.url, e.enabled) for e in queue.WebhookEndpoint.select()] == [(HOOK, True)]
    assert "/panel/webhooks" not in other.get("/panel/").get_data(as_text=True)  # no link to it either


def test_signed_out_visitors_are_sent_to_the_login(app):
    panel = PanelClient(app.test_client())
    assert panel.get("/panel/webhooks").headers["Location"].startswith("/panel/login")
    response = panel.form("/panel/webhooks", {"url": HOOK, "events": ["lead.created"]}, token_page="/panel/login")
    assert response.status_code == 302 and response.headers["Location"].startswith("/panel/login")
    assert queue.WebhookEndpoint.select().count() == 0


def test_a_dead_letter_is_listed_and_sent_again_by_the_owner(app, as_role):
    owner = as_role("owner")
    add(owner)
    endpoint = queue.WebhookEndpoint.get()
    row = queue.WebhookDelivery.create(endpoint=endpoint, msg_id="msg_dead1", type="lead.created", subject="{}",
                                       happened_at=queue.utcnow(), state=queue.DEAD, attempts=10,
                                       last_error="HTTP 500: <b>down</b>")
    page = owner.get("/panel/webhooks").get_data(as_text=True)
    assert "msg_dead1" in page and "HTTP 500: &lt;b&gt;down&lt;/b&gt;" in page
    response = owner.form(f"/panel/webhooks/dead/{row.id}/send", {}, "/panel/webhooks")
    assert response.status_code == 302
    row = queue.WebhookDelivery.get_by_id(row.id)
    assert row.state == queue.PENDING and row.attempts == 0
    assert owner.form(f"/panel/webhooks/dead/{row.id}/send", {}, "/panel/webhooks").status_code == 404  # not dead now
    assert owner.form("/panel/webhooks/dead/99999999999999999999/send", {}, "/panel/webhooks").status_code == 404

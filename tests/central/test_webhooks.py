"""Webhooks from the central store (central/webhooks.py): endpoints by CLI, messages queued by the
ingest in the batch's transaction, delivered signed (checked with the reference `standardwebhooks`
library), consent-scoped chain-wide, retried and dead-lettered. Real PostgreSQL."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest
from click.testing import CliRunner

from central import webhooks
from central.db import database
from portal.cli import main
from tests.activation.receiver import Receiver
from tests.central.fixtures import event, post_batch
from tests.central.test_ingest import IDX
from tests.central.test_verified_identity import consent, upsert

SOFT, PRIVATE = "soft@example.com", "rieng@example.com"
IDX.update({k: hashlib.sha256(k.encode()).hexdigest() for k in (SOFT, PRIVATE)})


@pytest.fixture
def central_settings(central_settings):
    return dataclasses.replace(central_settings, webhook_allow_loopback=True)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def cli(central_settings, *args, loopback=True):
    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema, "FOOTFALL_LOG_LEVEL": "WARNING",
           "FOOTFALL_WEBHOOK_ALLOW_LOOPBACK": "true" if loopback else "false", "FOOTFALL_WEBHOOK_TIMEOUT_SECONDS": "1",
           "FOOTFALL_WEBHOOK_MAX_ATTEMPTS": "2"}
    return CliRunner().invoke(main, ["central", "webhook", *args], env=env)


def test_the_cli_adds_lists_and_removes_endpoints_and_refuses_unsafe_ones(central_settings, central_app, receiver):
    refused = cli(central_settings, "add", "https://192.168.1.10/hook")
    assert refused.exit_code == 1 and "err_webhook_private" in refused.output
    assert cli(central_settings, "add", receiver.url, loopback=False).exit_code == 1  # http to loopback: test setting only
    assert cli(central_settings, "add", receiver.url, "--event", "lead.deleted").exit_code == 1
    added = cli(central_settings, "add", receiver.url, "--event", "lead.created", "--event", "visit.closed")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith("whsec_")
    listed = cli(central_settings, "list")
    (endpoint,) = webhooks_list()
    assert f"{endpoint.uid}\t{receiver.url}\tlead.created,visit.closed\ton" in listed.output
    assert secret not in listed.output
    assert cli(central_settings, "remove", endpoint.uid).exit_code == 0
    assert webhooks_list() == [] and cli(central_settings, "remove", endpoint.uid).exit_code == 1


def webhooks_list():
    with database.connection_context():
        return webhooks.endpoints()


def test_ingested_events_reach_the_crm_signed_consent_scoped_once_and_after_failures(
        central_settings, central_app, stores, receiver):
    added = cli(central_settings, "add", receiver.url)
    assert added.exit_code == 0, added.output
    receiver.secret = added.stdout.strip()
    client, key = central_app.test_client(), stores["hcm-01"]
    batch = [upsert("l-soft", email=SOFT, email_verified=True), consent("l-soft", "marketing_email"),
             consent("l-soft", "visit_analytics"),
             upsert("l-private", email=PRIVATE, email_verified=True),
             event("device.linked", lead="l-soft", device="02:00:00:00:00:aa"),
             event("device.linked", lead="l-private", device="02:00:00:00:00:bb"),
             event("visit.closed", device="02:00:00:00:00:aa", start="2026-11-20T10:00:00", end="2026-11-20T10:30:00",
                   passerby=False),
             event("visit.closed", device="02:00:00:00:00:bb", start="2026-11-20T11:00:00", end="2026-11-20T11:30:00",
                   passerby=False),
             event("segment.members", segment="returning", members=["l-soft", "l-private"])]
    assert post_batch(client, "hcm-01", key, batch).status_code == 200
    assert post_batch(client, "hcm-01", key, batch).status_code == 200  # the same batch again: applied once, queued once
    receiver.mode = "500"
    failed = cli(central_settings, "deliver")
    assert failed.exit_code == 0 and '"failed": 1' in failed.output
    assert receiver.requests and receiver.requests[0]["verified"]
    with database.connection_context():  # what waits is due again now (the backoff elapsed)
        database.execute_sql("UPDATE webhook_delivery SET next_at = now() - interval '1 minute'")
    assert '"dead": 1' in cli(central_settings, "deliver").output  # the second failure: dead (max attempts 2)
    dead_id = receiver.requests[0]["headers"]["webhook-id"]
    assert f"# dead {dead_id}" in cli(central_settings, "list").output
    assert cli(central_settings, "resend", dead_id).exit_code == 0
    receiver.mode = "ok"
    with database.connection_context():
        database.execute_sql("UPDATE webhook_delivery SET next_at = now() - interval '1 minute'")
    delivered = cli(central_settings, "deliver")
    assert delivered.exit_code == 0 and '"failed": 0' in delivered.output
    assert all(r["verified"] for r in receiver.requests)
    assert receiver.requests[0]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"] == dead_id
    payloads = [r["payload"] for r in receiver.requests[2:]]  # after the two failed attempts
    kinds = sorted(p["type"] for p in payloads)
    assert kinds.count("lead.created") == 2 and kinds.count("lead.verified") == 2 and kinds.count("visit.closed") == 2
    delivered_ids = [r["headers"]["webhook-id"] for r in receiver.requests[2:]]
    assert len(delivered_ids) == len(set(delivered_ids)) and dead_id in delivered_ids  # each message once
    created = {p["data"]["person"].get("email", "opaque"): p["data"] for p in payloads if p["type"] == "lead.created"}
    assert set(created) == {SOFT, "opaque"}  # no marketing consent: the pseudonym only
    assert set(created["opaque"]["person"]) == {"id"} and created[SOFT]["store"] == "hcm-01"
    assert PRIVATE.encode() not in b"".join(r["body"] for r in receiver.requests)
    visits = {v["data"]["start"]: v["data"]["person"] for v in payloads if v["type"] == "visit.closed"}
    assert visits["2026-11-20T10:00:00"]["email"] == SOFT and visits["2026-11-20T11:00:00"] is None
    (segment,) = [p for p in payloads if p["type"] == "segment.membership_changed"]
    assert len(segment["data"]["added"]) == 2 and segment["data"]["removed"] == []
    assert "# pending 0" in cli(central_settings, "list").output
    # An erasure: the CRM hears the pseudonym it knows the person by, and nothing else.
    assert post_batch(client, "hcm-01", key, [event("lead.erased", lead="l-soft", verified=True)]).status_code == 200
    assert '"delivered": 1' in cli(central_settings, "deliver").output
    erased = receiver.requests[-1]["payload"]
    assert erased["type"] == "lead.erased" and erased["data"]["person"] == {"id": created[SOFT]["person"]["id"]}

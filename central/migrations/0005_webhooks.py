"""Webhooks at the central store (issue 17): the chain's endpoints, the delivery queue fed by the
ingest, and what was announced (a person's creation and proofs, once)."""
from peewee import *


def up(migrator, db):
    db.execute_sql("""
        CREATE TABLE webhook_endpoint (
            id SERIAL PRIMARY KEY, uid VARCHAR(64) NOT NULL UNIQUE, url VARCHAR(2048) NOT NULL,
            secret_enc BYTEA NOT NULL, events TEXT NOT NULL, enabled BOOLEAN NOT NULL DEFAULT TRUE,
            created_at TIMESTAMP NOT NULL)""")
    db.execute_sql("""
        CREATE TABLE webhook_delivery (
            id BIGSERIAL PRIMARY KEY,
            endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
            msg_id VARCHAR(64) NOT NULL UNIQUE, type VARCHAR(64) NOT NULL, subject TEXT NOT NULL,
            happened_at TIMESTAMP NOT NULL, created_at TIMESTAMP NOT NULL,
            state VARCHAR(16) NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
            next_at TIMESTAMP NOT NULL, last_status INTEGER, last_error TEXT, delivered_at TIMESTAMP)""")
    db.execute_sql("CREATE INDEX webhook_delivery_due ON webhook_delivery (state, next_at)")
    db.execute_sql("CREATE INDEX webhook_delivery_endpoint ON webhook_delivery (endpoint_id)")
    db.execute_sql("CREATE TABLE webhook_seen (key VARCHAR(200) PRIMARY KEY)")


def down(migrator, db):
    for table in ('webhook_delivery', 'webhook_endpoint', 'webhook_seen'):
        db.execute_sql(f'DROP TABLE {table}')

"""Signed outgoing webhooks (Standard Webhooks) for CRMs: consented data only.

wire.py: secrets, signatures, safe targets, one bounded POST (pure; the central store uses it too).
queue.py: the appliance's endpoints, the queue fed from the outbox, delivery and dead letters.
"""

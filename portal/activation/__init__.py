"""Activation (issue 17): messages to verified, consenting people, vouchers at the till, results
against a holdout group.

- `models.py`   automations, sends (one per person, channel and occasion), the send log, vouchers
- `texts.py`    an automation's form: triggers, messages per channel and language, placeholders, preview
- `plan.py`     which people each automation reaches now (one pass over leads and visits), holdout
- `guards.py`   what is checked again at the moment of sending: consent, verification, erasure,
                restriction, quiet hours, caps
- `send.py`     the scheduler's job: plan, then send through the message layer, rate-bounded, retried
- `unsubscribe.py` signed one-click unsubscribe (RFC 8058): a consent withdrawal like any other
- `vouchers.py` readable single-use codes, redeemed once at the till
- `results.py`  per automation: sent, delivered, failed, unsubscribed, redeemed, visits within 14
                days, against the holdout; RFM (recency, visits, spend) per person
- `views.py`    the public unsubscribe page (the panel's pages are portal/panel/activation.py)

Sending runs only in the scheduler (`footfall jobs run activation`), never in a web worker.
"""

"""One-click unsubscribe (RFC 8058): every message carries a link signed for its send; following
it (GET shows a button, POST acts, with no session and no CSRF token: the signature is the
authority) withdraws the channel's consent in the consent log, like any other withdrawal, with
its outbox event for the central store. The send row keeps when, so results count it."""
from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from portal import consent
from portal.activation.guards import PURPOSE_OF
from portal.activation.models import ActivationSend
from portal.db import database
from portal.identity import Vault
from portal.models import AuditLog, Lead, utcnow

TOKEN = re.compile(r"^([1-9][0-9]{0,11})-([A-Z2-7]{16})\Z")
METHOD = "unsubscribe_link"  # the consent row's method: the source is the message (send uid in the audit entry)


def _mac(vault: Vault, send_uid: str) -> str:
    digest = hmac.new(vault.derived_key("unsubscribe"), f"unsubscribe:{send_uid}".encode(), "sha256").digest()
    return base64.b32encode(digest).decode()[:16]


def token(vault: Vault, send: ActivationSend) -> str:
    return f"{send.id}-{_mac(vault, send.uid)}"


def link(base_url: str, vault: Vault, send: ActivationSend) -> str:
    return f"{base_url.rstrip('/')}/u/{token(vault, send)}"


@dataclass(frozen=True)
class Target:
    send: ActivationSend
    lead: Lead
    purpose: str


def find(vault: Vault, raw: str) -> Target | None:
    """The send a token names, when its signature holds and its person is not erased."""
    match = TOKEN.match(raw or "")
    if not match:
        return None
    send = ActivationSend.get_or_none(ActivationSend.id == int(match.group(1)))
    if send is None or send.uid is None or not hmac.compare_digest(_mac(vault, send.uid), match.group(2)):
        return None
    lead = Lead.get_or_none(Lead.id == send.lead_id)
    if lead is None or lead.erased_at is not None:
        return None
    return Target(send, lead, PURPOSE_OF[send.channel])


def withdraw(target: Target, store_id: str, ip: str | None) -> bool:
    """Withdraw the channel's consent; False when it was withdrawn already (nothing changes)."""
    with database.atomic():
        changed = False
        if consent.latest_granted(target.lead, target.purpose):
            consent.record(target.lead, target.purpose, False, consent.Where(store_id, None, ip, METHOD))
            changed = True
        if target.send.unsubscribed_at is None:
            ActivationSend.update(unsubscribed_at=utcnow()).where(ActivationSend.id == target.send.id).execute()
        if changed:
            AuditLog.record("visitor", "unsubscribed", target.lead.uid, ip, purpose=target.purpose,
                            send=target.send.uid, channel=target.send.channel)
    return changed

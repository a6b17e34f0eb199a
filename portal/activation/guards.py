"""What decides whether one message may go, at the moment it would go (not only when planned):
the person is neither erased, folded, nor restricted; the channel's contact is proved and its
consent's latest event is a grant (double opt-in: portal.consent.counts); visit triggers need
visit_analytics too; quiet hours in the store's time zone; caps per person per channel (a week,
`activation_max_per_week`) and per consent (a month, `marketing_max_per_month`, as its text says)."""
from __future__ import annotations

import datetime
import hashlib

from portal import consent
from portal.activation.models import VISIT_KINDS
from portal.core.purposes import VISIT_ANALYTICS
from portal.db import database
from portal.models import Lead

PURPOSE_OF = {"email": "marketing_email", "sms": "marketing_sms", "zalo": "marketing_sms"}
CONTACT_OF = {"email": "email", "sms": "phone", "zalo": "phone"}


def refusal(lead: Lead, channel: str, kind: str) -> str | None:
    """Why this person may not get a message on this channel now; None when they may."""
    if lead.erased_at is not None:
        return "erased"
    if lead.merged_into_id is not None:
        return "merged"
    if lead.restricted_at is not None:
        return "restricted"
    if getattr(lead, f"{CONTACT_OF[channel]}_verified_at") is None or getattr(lead, f"{CONTACT_OF[channel]}_enc") is None:
        return "unverified"
    purpose = PURPOSE_OF[channel]
    latest = dict(database.execute_sql(
        "SELECT purpose, granted FROM consent WHERE id IN (SELECT max(id) FROM consent WHERE lead_id = ? "
        "AND purpose IN (?, ?) GROUP BY purpose)", (lead.id, purpose, VISIT_ANALYTICS)).fetchall())
    if not latest.get(purpose) or not consent.counts(lead, purpose):
        return "no_consent"
    if kind in VISIT_KINDS and not latest.get(VISIT_ANALYTICS):
        return "no_visit_analytics"
    return None


def quiet(now_utc: datetime.datetime, tz: datetime.tzinfo, start: int, end: int) -> bool:
    """Whether `now_utc` (naive UTC) falls in quiet hours [start, end) of the store's day."""
    hour = now_utc.replace(tzinfo=datetime.timezone.utc).astimezone(tz).hour
    if start == end:
        return False
    return start <= hour or hour < end if start > end else start <= hour < end


def quiet_until(now_utc: datetime.datetime, tz: datetime.tzinfo, end: int) -> datetime.datetime:
    """The next end of quiet hours after `now_utc`, as naive UTC."""
    local = now_utc.replace(tzinfo=datetime.timezone.utc).astimezone(tz)
    target = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if target <= local:
        target += datetime.timedelta(days=1)
    return target.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def over_cap(lead_id: int, channel: str, now: datetime.datetime, per_week: int, per_month: int) -> str | None:
    """'cap_week' or 'cap_month' when this person already got enough on this channel (or consent).
    Counted: sent within the period, or on its way now (a batch marks its messages before sending)."""
    same_consent = [c for c, p in PURPOSE_OF.items() if p == PURPOSE_OF[channel]]
    week, month = database.execute_sql(
        "SELECT coalesce(sum(channel = ? AND (state = 'sending' OR sent_at > ?)), 0), "
        f"coalesce(sum(state = 'sending' OR sent_at > ?), 0) FROM activation_send WHERE lead_id = ? "
        f"AND channel IN ({', '.join('?' for _ in same_consent)}) AND state IN ('sent', 'sending')",
        (channel, (now - datetime.timedelta(days=7)).isoformat(" "), (now - datetime.timedelta(days=30)).isoformat(" "),
         lead_id, *same_consent)).fetchone()
    if week >= per_week:
        return "cap_week"
    if month >= per_month:
        return "cap_month"
    return None


def in_holdout(automation_uid: str, lead_uid: str, percent: int) -> bool:
    """A fixed, random-looking draw per automation and person: the same person stays in (or out of)
    an automation's holdout across runs and channels."""
    digest = hashlib.sha256(f"holdout:{automation_uid}:{lead_uid}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10000 < percent * 100

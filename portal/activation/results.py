"""Results per automation and campaign, against its holdout group, and RFM per person.

Sent: handed to the provider or tried and failed; delivered: the provider took it (providers'
delivery receipts are not read); failed; unsubscribed through its link; vouchers redeemed; and
the share of people who visited within 14 days of the message (of its due time, for the
holdout), in both groups: the lift is the difference. Visits are followed only for people whose
current visit_analytics consent is a grant, in both groups alike."""
from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass

from portal.consent import FOLLOWED_LEADS_SQL
from portal.db import database

WITHIN = datetime.timedelta(days=14)
_VISITED = ('EXISTS (SELECT 1 FROM device d JOIN visit v ON v.device_id = d.id WHERE d.lead_id = s.lead_id '
            "AND v.passerby = 0 AND v.source = 'lan' AND v.start > coalesce(s.sent_at, s.due_at) "
            "AND v.start <= datetime(coalesce(s.sent_at, s.due_at), '+14 days'))")


@dataclass(frozen=True)
class Result:
    sent: int
    delivered: int
    failed: int
    skipped: int
    unsubscribed: int
    redeemed: int
    spend: int
    people: int
    people_visited: int
    holdout: int
    holdout_visited: int

    @staticmethod
    def rate(part: int, whole: int) -> float | None:
        return round(100.0 * part / whole, 1) if whole else None

    @property
    def visit_rate(self) -> float | None:
        return self.rate(self.people_visited, self.people)

    @property
    def holdout_rate(self) -> float | None:
        return self.rate(self.holdout_visited, self.holdout)

    @property
    def lift(self) -> float | None:
        if self.visit_rate is None or self.holdout_rate is None:
            return None
        return round(self.visit_rate - self.holdout_rate, 1)


def of(automation_id: int) -> Result:
    states = dict(database.execute_sql(
        "SELECT state, count(*) FROM activation_send WHERE automation_id = ? AND holdout = 0 GROUP BY state",
        (automation_id,)).fetchall())
    unsub = database.execute_sql("SELECT count(*) FROM activation_send WHERE automation_id = ? AND unsubscribed_at IS NOT NULL",
                                 (automation_id,)).fetchone()[0]
    redeemed, spend = database.execute_sql(
        "SELECT count(*), coalesce(sum(amount), 0) FROM voucher WHERE automation_id = ? AND redeemed_at IS NOT NULL",
        (automation_id,)).fetchone()
    groups = {holdout: (n, visited) for holdout, n, visited in database.execute_sql(
        f"SELECT holdout, count(*), sum(visited) FROM (SELECT s.lead_id, s.holdout, max({_VISITED}) AS visited "
        "FROM activation_send s WHERE s.automation_id = ? AND (s.state = 'sent' OR s.holdout = 1) "
        f"AND s.lead_id IN ({FOLLOWED_LEADS_SQL}) "
        "GROUP BY s.lead_id, s.holdout) GROUP BY holdout", (automation_id,))}
    people, visited = groups.get(0, (0, 0))
    held, held_visited = groups.get(1, (0, 0))
    return Result(sent=states.get("sent", 0) + states.get("failed", 0), delivered=states.get("sent", 0),
                  failed=states.get("failed", 0), skipped=states.get("skipped", 0), unsubscribed=unsub,
                  redeemed=redeemed, spend=spend, people=people, people_visited=visited or 0,
                  holdout=held, holdout_visited=held_visited or 0)


_CACHE: dict[str, tuple[float, Result]] = {}
_CACHE_LOCK = threading.Lock()
CACHE_SECONDS = 60.0


def cached(automation_id: int, automation_uid: str, clock=time.monotonic) -> Result:
    """`of`, computed at most once a minute per automation: a campaign to 40,000 people takes
    seconds to follow for 14 days, and the panel's list shows every automation."""
    now = clock()
    with _CACHE_LOCK:
        hit = _CACHE.get(automation_uid)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    result = of(automation_id)
    with _CACHE_LOCK:
        _CACHE[automation_uid] = (now, result)
        if len(_CACHE) > 1000:
            _CACHE.clear()
    return result


@dataclass(frozen=True)
class Rfm:
    lead_id: int
    days_since: int | None
    visits: int
    spend: int
    redeemed: int


def rfm(lead_ids: list[int] | None = None, now: datetime.datetime | None = None, limit: int = 100) -> list[Rfm]:
    """Recency (days since the last visit), frequency (visits) and monetary value (receipts of
    redeemed vouchers) of the people who agreed to visit analytics, biggest spenders first."""
    from portal.models import utcnow

    now = now or utcnow()
    where = f"l.erased_at IS NULL AND l.restricted_at IS NULL AND l.id IN ({FOLLOWED_LEADS_SQL})"
    args: list = []
    if lead_ids is not None:
        where += f" AND l.id IN ({', '.join('?' for _ in lead_ids) or 'NULL'})"
        args += lead_ids
    sql = (f"SELECT l.id, (SELECT max(v.\"end\") FROM device d JOIN visit v ON v.device_id = d.id WHERE d.lead_id = l.id "
           "AND v.passerby = 0), (SELECT count(*) FROM device d JOIN visit v ON v.device_id = d.id WHERE d.lead_id = l.id "
           "AND v.passerby = 0), coalesce(sp.spend, 0), coalesce(sp.n, 0) FROM lead l "
           "JOIN (SELECT lead_id, sum(amount) AS spend, count(*) AS n FROM voucher WHERE redeemed_at IS NOT NULL "
           f"GROUP BY lead_id) sp ON sp.lead_id = l.id WHERE {where} ORDER BY sp.spend DESC, l.id LIMIT ?")
    out = []
    for lead_id, last, visits, spend, n in database.execute_sql(sql, [*args, limit]):
        days = (now - datetime.datetime.fromisoformat(last)).days if last else None
        out.append(Rfm(lead_id, days, visits, spend, n))
    return out


@dataclass(frozen=True)
class PersonActivity:
    """One person's messages and vouchers, for their page in the panel: the money side of RFM."""
    messages: int
    unsubscribed: int
    vouchers: list
    spend: int


def person(lead_id: int) -> PersonActivity:
    from portal.activation.models import ActivationSend, Voucher

    sent = ActivationSend.select().where((ActivationSend.lead == lead_id) & (ActivationSend.state == "sent"))
    vouchers = list(Voucher.select().where(Voucher.lead == lead_id).order_by(Voucher.id.desc()).limit(50))
    return PersonActivity(messages=sent.count(), unsubscribed=sent.where(ActivationSend.unsubscribed_at.is_null(False)).count(),
                          vouchers=vouchers, spend=sum(v.amount or 0 for v in vouchers if v.redeemed_at))

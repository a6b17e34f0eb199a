"""The week's summary by email to the store's owners (issue 16): off unless the owner turns it on.

Figures over the seven days before the run (the scheduler runs it on Monday mornings): visitors
(people and anonymous devices with a visit), among the people who agreed to visit analytics how
many came for the first time and how many came back (the dashboard's definitions,
portal/core/segment_rules.py), sign-ups, consents given and withdrawn per purpose, and the
audience exports made. Aggregates only: no name, email or phone is ever in it. It goes through
the message layer's email driver to every enabled owner whose account has an address, in the
language the setting names, once per week (the week sent is remembered: a second run is a no-op).
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from portal import password_reset
from portal.consent import FOLLOWED_LEADS_SQL
from portal.core.purposes import OPTIONAL_PURPOSES
from portal.core.segment_rules import NEW, RETURNING, visitor_kind
from portal.db import database
from portal import i18n
from portal.i18n import translate
from portal.identity import Vault
from portal.messages import Dispatcher, Message
from portal.models import AuditLog, Manager, StoreSetting, utcnow
from portal.visits import EARLIER_VISIT

SENT_KEY = "weekly_summary_sent"  # a StoreSetting row, not an editable setting: the last week sent
_LAN_VISIT = "v.passerby = 0 AND v.source = 'lan'"


@dataclass(frozen=True)
class Summary:
    start: datetime.datetime  # naive UTC, inclusive
    end: datetime.datetime    # naive UTC, exclusive
    visitors: int
    new: int
    returning: int
    signups: int
    granted: dict[str, int]    # purpose > consents given this week
    withdrawn: dict[str, int]  # purpose > consents withdrawn this week
    exports: dict[str, int]    # kind > exports made this week


def figures(end: datetime.datetime, days: int = 7) -> Summary:
    """The figures of the `days` before `end` (naive UTC)."""
    start = end - datetime.timedelta(days=days)
    lo, hi = start.isoformat(" "), end.isoformat(" ")
    q = database.execute_sql
    visitors = new = returning = 0
    for count, before, followed in q(
            f"SELECT g.n, {EARLIER_VISIT.format(lead='g.lead_id', device='g.device_id')}, g.lead_id IN ({FOLLOWED_LEADS_SQL}) "
            "FROM (SELECT min(d.lead_id) AS lead_id, min(d.id) AS device_id, count(*) AS n FROM visit v "
            f"JOIN device d ON d.id = v.device_id WHERE v.start >= ? AND v.start < ? AND {_LAN_VISIT} "
            "GROUP BY coalesce('l' || d.lead_id, 'd' || d.id)) g", (lo, lo, lo, hi)):
        visitors += 1
        if followed:  # per-person figures only of people who agreed to visit analytics
            kind = visitor_kind(count, bool(before))
            new += kind == NEW
            returning += kind == RETURNING
    signups = q("SELECT count(*) FROM lead WHERE created_at >= ? AND created_at < ? AND merged_into_id IS NULL",
                (lo, hi)).fetchone()[0]
    granted, withdrawn = {p: 0 for p in OPTIONAL_PURPOSES}, {p: 0 for p in OPTIONAL_PURPOSES}
    for purpose, given, count in q("SELECT purpose, granted, count(*) FROM consent WHERE created_at >= ? AND created_at < ? "
                                   "GROUP BY purpose, granted", (lo, hi)):
        if purpose in granted:
            (granted if given else withdrawn)[purpose] = count
    exports = dict(q("SELECT kind, count(*) FROM export_log WHERE created_at >= ? AND created_at < ? GROUP BY kind",
                     (lo, hi)).fetchall())
    return Summary(start, end, visitors, new, returning, signups, granted, withdrawn, exports)


def render(summary: Summary, store: str, language: str) -> tuple[str, str]:
    """(subject, plain text) in `language` (the catalogs' summary_* texts); days and numbers as
    Babel writes them in that language, days in the appliance's local time."""
    def say(key: str, **values) -> str:
        return translate("summary_" + key, language).format(**values)

    n = lambda value: i18n.format_number(value, language)  # noqa: E731
    first = i18n.format_date(summary.start, language)
    last = i18n.format_date(summary.end - datetime.timedelta(microseconds=1), language)
    lines = [say("intro", first=first, last=last), "",
             say("visitors", n=n(summary.visitors)), "  " + say("new", n=n(summary.new)),
             "  " + say("returning", n=n(summary.returning)), "  " + say("followed"), "",
             say("signups", n=n(summary.signups)), "", say("consents")]
    lines += [f"  {say('purpose_' + p)}: {n(summary.granted[p])} / {n(summary.withdrawn[p])}" for p in OPTIONAL_PURPOSES]
    lines += ["", say("exports", n=n(sum(summary.exports.values())))
              + (" (" + ", ".join(f"{k} {n(v)}" for k, v in sorted(summary.exports.items())) + ")" if summary.exports else ""),
              "", "-- ", say("off")]
    return say("subject", store=store, first=first, last=last), "\n".join(lines) + "\n"


def send(settings, vault: Vault, dispatcher: Dispatcher, now: datetime.datetime | None = None,
         wait: float = 30.0) -> dict:
    """The job: off, already sent this week, no owner with an address, or sent (and to how many)."""
    if settings.weekly_summary == "off":
        return {"skipped": "off"}
    now = now or utcnow()
    week = now.replace(tzinfo=datetime.timezone.utc).astimezone().strftime("%G-W%V")
    last = StoreSetting.get_or_none(StoreSetting.key == SENT_KEY)
    if last is not None and json.loads(last.value) == week:
        return {"skipped": "sent already", "week": week}
    owners = [m for m in Manager.select().where(Manager.role == "owner", Manager.disabled == False,  # noqa: E712
                                                Manager.email_enc.is_null(False))]
    if not owners:
        return {"skipped": "no owner has an email"}
    if "email" not in dispatcher.drivers:
        return {"skipped": "email_driver is none"}
    subject, text = render(figures(now), settings.store_name, settings.weekly_summary)
    outcomes = []
    for owner in owners:
        delivery = dispatcher.submit(Message("email", password_reset.email_of(owner, vault) or "", text, subject=subject,
                                             language=settings.weekly_summary))
        outcomes.append(dispatcher.wait(delivery.message_id, wait) or delivery)
    sent = sum(d.state == "sent" for d in outcomes)
    if sent:
        with database.atomic():
            StoreSetting.insert(key=SENT_KEY, value=json.dumps(week), updated_at=utcnow()).on_conflict(
                conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(week)}).execute()
            AuditLog.record("scheduler", "weekly_summary_sent", week, None, owners=sent)
    return {"week": week, "sent": sent, "failed": len(outcomes) - sent}

"""The scheduler's activation job: plan the new occasions, then send what is due through the
message layer's drivers, each message checked again first (portal/activation/guards.py), at most
`activation_rate_per_second` per provider, temporary failures retried later (backoff across runs,
3 attempts), every attempt in the send log with the recipient masked."""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from portal.activation import guards, plan as planner, texts, unsubscribe, vouchers
from portal.activation.models import ActivationSend, Automation, SendAttempt
from portal.db import database
from portal.i18n import format_clock
from portal.identity import Vault, mask_email, mask_phone
from portal.messages import Driver, Message, MessageError
from portal.models import Lead, new_uid, utcnow

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
BACKOFF = (datetime.timedelta(minutes=5), datetime.timedelta(minutes=30))
EXPIRE_AFTER = datetime.timedelta(days=2)   # a message not sendable for this long is dropped
STUCK_AFTER = datetime.timedelta(minutes=15)
PER_RUN = 5000


@dataclass
class Pacer:
    """At most `rate` messages a second per provider."""
    rate: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _next: dict = field(default_factory=dict)

    def wait(self, channel: str) -> None:
        now = self.clock()
        ready = self._next.get(channel, now)
        if ready > now:
            self.sleep(ready - now)
            now = ready
        self._next[channel] = now + 1.0 / self.rate


@dataclass(frozen=True)
class Context:
    settings: object
    vault: Vault
    drivers: dict[str, Driver]
    tz: datetime.tzinfo
    pacer: Pacer


def context(settings, vault: Vault, drivers: dict[str, Driver], pacer: Pacer | None = None) -> Context:
    return Context(settings, vault, drivers, texts.store_tz(settings), pacer or Pacer(settings.activation_rate_per_second))


def run(ctx: Context, now: datetime.datetime | None = None) -> dict:
    """The whole job: plan, then send. `now` is naive UTC (a simulated clock in tests)."""
    now = now or utcnow()
    s = ctx.settings
    forget_erased()  # an erasure reaches the send log within one run, not only at the daily purge
    planned = planner.plan(now, ctx.tz, s.activation_holdout_percent)
    result = {"planned": sum(planned.values())}
    result.update(deliver(ctx, now))
    return result


def deliver(ctx: Context, now: datetime.datetime) -> dict:
    s = ctx.settings
    counts = {"sent": 0, "failed": 0, "retry": 0, "skipped": 0, "quiet": 0}
    with database.atomic():  # a send cut short by a crash is not sent again: the provider may have it
        stuck = list(ActivationSend.select().where((ActivationSend.state == "sending")
                                                   & (ActivationSend.due_at < now - STUCK_AFTER)))
        for row in stuck:
            _finish(row, "failed", "interrupted", row.recipient_masked)
    if guards.quiet(now, ctx.tz, s.activation_quiet_start, s.activation_quiet_end):
        counts["quiet"] = ActivationSend.select().where((ActivationSend.state == "due") & (ActivationSend.due_at <= now)).count()
        return counts
    due = list(ActivationSend.select().where((ActivationSend.state == "due") & (ActivationSend.due_at <= now))
               .order_by(ActivationSend.due_at, ActivationSend.id).limit(PER_RUN))
    autos = {a.id: a for a in Automation.select().where(Automation.id.in_({d.automation_id for d in due}))} if due else {}
    for i in range(0, len(due), BATCH):
        # Checked and marked `sending` in one transaction, sent, then the outcomes in another: two
        # commits per batch instead of per message; the checks are at most one batch old when it goes.
        batch = due[i:i + BATCH]
        leads = {lead.id: lead for lead in Lead.select().where(Lead.id.in_({r.lead_id for r in batch}))}
        with database.atomic():
            ready = []
            for row in batch:
                prepared = _prepare(ctx, row, autos[row.automation_id], leads[row.lead_id], now)
                if prepared is None:
                    counts["skipped"] += 1
                else:
                    ready.append(prepared)
        outcomes = [_send(ctx, prepared, now) for prepared in ready]
        with database.atomic():
            for prepared, (outcome, detail) in zip(ready, outcomes):
                counts[_record(prepared, outcome, detail, now)] += 1
    return counts


BATCH = 50


@dataclass
class Prepared:
    row: ActivationSend
    auto: Automation
    lead: Lead
    to: str
    masked: str
    voucher: object


def _prepare(ctx: Context, row: ActivationSend, auto: Automation, lead: Lead, now: datetime.datetime) -> Prepared | None:
    """The checks at send time (`lead` read at the start of this batch); a row that passes is
    marked `sending` (with its voucher)."""
    s = ctx.settings
    reason = None if auto.enabled else "automation_off"
    if reason is None and row.due_at < now - EXPIRE_AFTER:
        reason = "expired"
    reason = reason or guards.refusal(lead, row.channel, auto.kind)
    reason = reason or guards.over_cap(lead.id, row.channel, now, s.activation_max_per_week, s.marketing_max_per_month)
    if reason:
        _finish(row, "skipped", reason, None)
        return None
    to, masked = _recipient(ctx.vault, lead, row.channel)
    voucher = None
    if auto.opts.get("voucher_days") and row.voucher_code is None:
        # One voucher per person and occasion, whichever channels carry it.
        sibling = None if len(auto.channel_list) == 1 else (ActivationSend.select(ActivationSend.voucher_code)
                   .where((ActivationSend.automation == auto.id) & (ActivationSend.lead == lead.id)
                          & (ActivationSend.occasion == row.occasion) & ActivationSend.voucher_code.is_null(False))
                   .first())
        if sibling is not None:
            row.voucher_code = sibling.voucher_code
        else:
            voucher = vouchers.issue(lead, auto, auto.opts["voucher_days"])
            row.voucher_code = voucher.code
    row.uid = row.uid or new_uid()
    row.state, row.attempts, row.recipient_masked = "sending", row.attempts + 1, masked
    row.save()
    # Counted at once, so a later row of the same batch sees this one against the caps.
    return Prepared(row, auto, lead, to, masked, voucher)


def _send(ctx: Context, p: Prepared, now: datetime.datetime) -> tuple[str, object]:
    """Hand one message to its driver: ("sent", provider id) | ("retry" | "failed", reason)."""
    row, lead = p.row, p.lead
    values = _values(ctx, lead, p.auto, row, p.voucher)
    rendered = texts.render(p.auto, row.channel, lead.language, values)
    headers = {}
    if row.channel == "email":
        headers = {"List-Unsubscribe": f"<{values['unsubscribe']}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    message = Message(row.channel, p.to, rendered.text, subject=rendered.subject, html=rendered.html,
                      language=lead.language, params=rendered.params, id=row.uid, headers=headers)
    driver = ctx.drivers.get(row.channel)
    if driver is None:
        return "failed", "channel_off"
    ctx.pacer.wait(row.channel)
    try:
        return "sent", driver.send(message)
    except MessageError as exc:
        temporary = exc.temporary and row.attempts < MAX_ATTEMPTS
        return ("retry" if temporary else "failed"), exc.reason[:120]
    except Exception:  # a driver bug: logged with its traceback, the message failed, the job goes on
        logger.exception("driver %s failed on send %s", getattr(driver, "name", "?"), row.uid)
        return "failed", "driver_error"


def _record(p: Prepared, outcome: str, detail, now: datetime.datetime) -> str:
    row = p.row
    if outcome == "sent":
        row.state, row.provider_id, row.sent_at, row.reason = "sent", str(detail)[:200], now, None
        row.save()
        SendAttempt.create(send=row, outcome="sent", detail=None, recipient_masked=p.masked, at=now)
    elif outcome == "retry":
        row.state, row.due_at = "due", now + BACKOFF[min(row.attempts, len(BACKOFF)) - 1]
        row.save()
        SendAttempt.create(send=row, outcome="retry", detail=detail, recipient_masked=p.masked, at=now)
    else:
        _finish(row, "failed", detail, p.masked)
    return outcome


def _finish(row: ActivationSend, state: str, reason: str, masked: str | None) -> None:
    row.state, row.reason = state, reason
    row.save()
    SendAttempt.create(send=row, outcome=state, detail=reason, recipient_masked=masked)


def _recipient(vault: Vault, lead: Lead, channel: str) -> tuple[str, str]:
    if channel == "email":
        email = vault.decrypt(lead.email_enc, "lead.email")
        return email, mask_email(email)
    phone = vault.decrypt(lead.phone_enc, "lead.phone")
    return phone, mask_phone(phone)


def _values(ctx: Context, lead: Lead, auto: Automation, row: ActivationSend, voucher) -> dict:
    s = ctx.settings
    code = voucher.code if voucher else row.voucher_code
    expires = ""
    if code:
        from portal.activation.models import Voucher
        v = voucher or Voucher.get_or_none(Voucher.code == code)
        if v is not None:
            local = v.expires_at.replace(tzinfo=datetime.timezone.utc).astimezone(ctx.tz)
            expires = format_clock(local, lead.language or s.default_language)[1]  # Babel, in the message's language
    return {"name": ctx.vault.decrypt(lead.name_enc, "lead.name") or "", "store": s.store_name,
            "voucher": vouchers.display(code) if code else "", "voucher_expires": expires,
            "review_link": auto.opts.get("review_link", ""),
            "unsubscribe": unsubscribe.link(s.public_url or s.portal_url, ctx.vault, row)}


_ERASED = "SELECT id FROM lead WHERE erased_at IS NOT NULL"


def forget_erased() -> int:
    """Sends and attempts of erased people go; their unused vouchers too, redeemed ones stay unlinked."""
    linked = (f"SELECT 1 FROM activation_send WHERE lead_id IN ({_ERASED}) UNION ALL "
              f"SELECT 1 FROM voucher WHERE lead_id IN ({_ERASED}) LIMIT 1")
    if database.execute_sql(linked).fetchone() is None:
        return 0  # nothing to forget: no write lock taken
    with database.atomic():
        database.execute_sql(f"DELETE FROM send_attempt WHERE send_id IN (SELECT id FROM activation_send "
                             f"WHERE lead_id IN ({_ERASED}))")
        sends = database.execute_sql(f"DELETE FROM activation_send WHERE lead_id IN ({_ERASED})").rowcount
        database.execute_sql(f"DELETE FROM voucher WHERE redeemed_at IS NULL AND lead_id IN ({_ERASED})")
        database.execute_sql(f"UPDATE voucher SET lead_id = NULL WHERE lead_id IN ({_ERASED})")
    return sends


def purge(retention_days: int, now: datetime.datetime | None = None) -> dict:
    """Retention: the send log of erased people and everything older than the retention period goes;
    an erased person's unused vouchers go, their redeemed ones stay as the till's record, unlinked."""
    now = now or utcnow()
    cutoff = (now - datetime.timedelta(days=retention_days)).isoformat(" ")
    erased = forget_erased()
    with database.atomic():
        attempts = database.execute_sql("DELETE FROM send_attempt WHERE at < ?", (cutoff,)).rowcount
        database.execute_sql("DELETE FROM send_attempt WHERE send_id IN (SELECT id FROM activation_send WHERE created_at < ?)",
                             (cutoff,))
        sends = erased + database.execute_sql("DELETE FROM activation_send WHERE created_at < ?", (cutoff,)).rowcount
        database.execute_sql("DELETE FROM voucher WHERE expires_at < ? AND (redeemed_at IS NULL OR redeemed_at < ?)",
                             (cutoff, cutoff))
    return {"sends": sends, "attempts_past_retention": attempts}

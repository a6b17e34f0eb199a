"""A manager's own email, and a forgotten password reset by a code sent to it (issue 16).

What it never does: say whether an account or an address exists (every request gets the same
answer and a ticket that looks the same; only a real account with an address gets a code), or
touch the second factor (a reset by email sets the password only: an account with TOTP still
asks for it at the next sign-in). The code is the verification layer's (portal/verification.py):
six digits, ten minutes, five tries, single use, only its keyed hash kept, under a key of its own
(a visitor's code can never reset a password); sending is limited per address and per IP. A
reset ends every session of the account. Codes go with the visitors' after a day (Contacts.purge).
"""
from __future__ import annotations

import datetime
import logging

from peewee import fn

from portal import accounts
from portal.db import database
from portal.i18n import translate
from portal.identity import InvalidContact, Vault, normalize_email
from portal.messages import Dispatcher, Message
from portal.models import AuditLog, Manager, VerificationCode, new_uid, utcnow
from portal.verification import Codes, VerificationError

logger = logging.getLogger(__name__)

INDEX_KIND = "manager_email"
CODE_PREFIX = "manager-reset:"  # a code row's claim_uid: whose reset it is
# Wrong codes an account takes in 24 hours, across all its codes: past this, even the right code is
# refused until the day has passed (without it, the sending limits allowed about 50 guesses a day).
# An owner can still set the password from the users page or `footfall manager reset-password`.
WRONG_TRIES_PER_DAY = 10



def email_index(vault: Vault, email: str) -> str:
    return vault.blind_index(INDEX_KIND, email)


def set_email(manager: Manager, vault: Vault, email: str, password: str, ip: str | None, max_failures: int = 5,
              lockout: datetime.timedelta = datetime.timedelta(minutes=15)) -> str:
    """Give the account an address (or none, with an empty `email`), on its current password."""
    if accounts.is_locked(manager):
        raise accounts.AccountError("locked")
    if not accounts.hasher().verify(Manager.get_by_id(manager.id).password_hash, password or ""):
        # Counted as a wrong login: a session left open is no way to guess the password at leisure.
        accounts.register_failure(manager, ip, "account_password_failed", max_failures, lockout)
        raise accounts.AccountError("password_wrong")
    if not (email or "").strip():
        with database.atomic():
            Manager.update(email_enc=None, email_index=None).where(Manager.id == manager.id).execute()
            AuditLog.record(f"manager:{manager.username}", "manager_email_removed", manager.username, ip)
        return ""
    try:
        normalized = normalize_email(email)
    except InvalidContact:
        raise accounts.AccountError("email_invalid") from None
    index = email_index(vault, normalized)
    with database.atomic():
        if Manager.select().where(Manager.email_index == index, Manager.id != manager.id).exists():
            raise accounts.AccountError("email_taken")
        Manager.update(email_enc=vault.encrypt(normalized, "manager.email"), email_index=index).where(
            Manager.id == manager.id).execute()
        AuditLog.record(f"manager:{manager.username}", "manager_email_set", manager.username, ip)
    return normalized


def email_of(manager: Manager, vault: Vault) -> str | None:
    return vault.decrypt(manager.email_enc, "manager.email")


class Resets:
    """Asking for a code, and spending it on a new password."""

    def __init__(self, vault: Vault, dispatcher: Dispatcher | None, store_name: str) -> None:
        self.vault, self.dispatcher, self.store_name = vault, dispatcher, store_name
        self.codes = Codes(vault.derived_key("manager-password-reset"))

    def _account(self, identifier: str) -> Manager | None:
        """The enabled account with this username or address, if it has an address."""
        text = (identifier or "").strip()[:254]
        if "@" in text:
            try:
                manager = Manager.get_or_none(Manager.email_index == email_index(self.vault, normalize_email(text)))
            except InvalidContact:
                return None
        else:
            manager = Manager.get_or_none(Manager.username == text.lower())
        if manager is None or manager.disabled or manager.email_index is None:
            return None
        return manager

    def request(self, identifier: str, ip: str | None, language: str) -> str:
        """A ticket for the code page; a code goes out only for a real account with an address,
        within the limits. The answer is the same in every case (no account enumeration)."""
        manager = self._account(identifier)
        if manager is None:
            AuditLog.record("anonymous", "password_reset_asked", None, ip, known=False)
            return new_uid()
        # One commit, as for an unknown name above: no slower answer (an fsync more) betrays an account.
        try:
            with database.atomic():
                issued = self.codes.issue("email", manager.email_index, None, ip, claim_uid=f"{CODE_PREFIX}{manager.id}")
                AuditLog.record("anonymous", "password_reset_code_sent", manager.username, ip)
        except VerificationError as exc:  # a limit or the cooldown: said in the audit log, never to the asker
            AuditLog.record("anonymous", "password_reset_limited", manager.username, ip, reason=exc.code)
            return new_uid()
        subject, text = translate("reset_email_subject", language), translate("reset_email_body", language)
        body = text.format(store=self.store_name, user=manager.username, code=issued.code)
        message = Message("email", email_of(manager, self.vault) or "", body, subject=subject.format(store=self.store_name),
                          language=language)
        delivery = self.dispatcher.submit(message) if self.dispatcher else None
        if delivery is None or (delivery.state == "failed" and delivery.error in ("queue_full", "channel_off")):
            logger.warning("password reset code for %s not sent: %s", manager.username,
                           delivery.error if delivery else "no message layer")
        return issued.uid

    @staticmethod
    def _wrong_tries_today(manager: Manager) -> int:
        """Tries on this account's codes of the last 24 hours, less the one right try of each used code."""
        since = utcnow() - datetime.timedelta(days=1)
        mine = (VerificationCode.claim_uid == f"{CODE_PREFIX}{manager.id}") & (VerificationCode.created_at > since)
        tries = VerificationCode.select(fn.COALESCE(fn.SUM(VerificationCode.tries), 0)).where(mine).scalar()
        used = VerificationCode.select().where(mine & VerificationCode.used_at.is_null(False)).count()
        return int(tries) - used

    def reset(self, ticket: str, code: str, password: str, ip: str | None) -> Manager:
        """Set the new password if the code is right; AccountError("code_invalid" | password rules).
        The rules that do not depend on the account come first, so that no answer differs between
        a ticket of a real account and a made-up one until the right code is given."""
        password = password or ""
        accounts.check_password_rules("", password)
        ticket = (ticket or "")[:64]
        row = VerificationCode.get_or_none(VerificationCode.uid == ticket)
        manager = None
        if row is not None and (row.claim_uid or "").startswith(CODE_PREFIX):
            manager = Manager.get_or_none(Manager.id == int(row.claim_uid[len(CODE_PREFIX):]))
        if manager is None or manager.disabled or manager.email_index != row.destination_index:
            raise accounts.AccountError("code_invalid")  # no such ticket, or the address changed since
        # The cap read and the try counted in one transaction (it takes the write lock first): guesses
        # sent at once queue, and none reads the count before the one ahead of it has added its try.
        with database.atomic():
            refused = "daily_tries" if self._wrong_tries_today(manager) >= WRONG_TRIES_PER_DAY else None
            if refused is None:
                try:
                    self.codes.check(ticket, code)
                except VerificationError as exc:  # caught inside: the wrong try stays counted
                    refused = exc.code
            if refused is not None:
                AuditLog.record("anonymous", "password_reset_code_refused", manager.username, ip, reason=refused)
        if refused is not None:
            raise accounts.AccountError("code_invalid")  # a wrong code and the cap answer alike
        try:
            accounts.check_password_rules(manager.username, password)
        except accounts.AccountError:
            # The right code, a password the rules refuse: the code stays good for another try.
            with database.atomic():
                VerificationCode.update(used_at=None).where(VerificationCode.uid == ticket).execute()
            raise
        # The password only: the second factor, its failures and any lock stay as they are.
        with database.atomic():
            Manager.update(password_hash=accounts.hasher().hash(password), failed_logins=0).where(
                Manager.id == manager.id).execute()
            from portal import manager_sessions
            ended = manager_sessions.end_all(manager.id)
            # Every other code still out for this account dies with this one: a code seen earlier
            # (a shared mailbox, a forwarded message) cannot reset the new password again. Each
            # takes one try more: the daily cap takes one right try off every used code, and the
            # wrong tries a guesser spent on these must not come back with this reset.
            VerificationCode.update(used_at=utcnow(), tries=VerificationCode.tries + 1).where(
                (VerificationCode.claim_uid == f"{CODE_PREFIX}{manager.id}") & VerificationCode.used_at.is_null()).execute()
            AuditLog.record(f"manager:{manager.username}", "password_reset_by_email", manager.username, ip,
                            sessions_ended=ended)
        return Manager.get_by_id(manager.id)


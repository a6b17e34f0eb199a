"""Manager accounts: argon2id passwords, lockout after repeated failures, TOTP with recovery codes.

Every change to an account's counters, lock, TOTP step or recovery codes is one SQL statement
whose WHERE clause states what it expects (UPDATE ... SET failed_logins = failed_logins + 1 WHERE
the account is not locked; UPDATE ... SET totp_last_step = S WHERE totp_last_step < S): parallel
requests then behave exactly as the same requests one after another. A Manager object read
earlier is never saved whole, since it would write back counters other requests have moved.
"""
from __future__ import annotations

import datetime
import hmac
import json
import re
import secrets
import time

import pyotp
from peewee import Expression

from portal import manager_sessions, passwords
from portal.db import database
from portal.identity import Vault
from portal.models import AuditLog, Manager, utcnow

ROLES = ("owner", "manager", "analyst")
PASSWORD_MIN = 12
RECOVERY_CODES = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}\Z")
_TOTP_CODE = re.compile(r"^[0-9]{6}\Z")  # ASCII digits only: str.isdigit() also takes "²"
_RECOVERY_CODE = re.compile(r"^[0-9a-f]{6}-[0-9a-f]{6}\Z")
PASSWORD = "password"
SECOND_FACTOR = "second_factor"
_COUNTERS = {PASSWORD: Manager.failed_logins, SECOND_FACTOR: Manager.second_factor_failures}


class AccountError(ValueError):
    """Why an account operation was refused; .code is shown translated, never the raw detail."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def hasher() -> passwords.BoundedHasher:
    """The process's password hasher (looked up at each call, so tests can swap in a cheap one)."""
    return passwords.HASHER


def check_password_rules(username: str, password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AccountError("password_short")
    if len(password) > 256:
        raise AccountError("password_long")
    if username and username.lower() in password.lower():
        raise AccountError("password_has_username")


def create_manager(username: str, password: str, role: str, actor: str = "cli") -> Manager:
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise AccountError("username_invalid")
    if role not in ROLES:
        raise AccountError("role_invalid")
    check_password_rules(username, password)
    if Manager.select().where(Manager.username == username).exists():
        raise AccountError("username_taken")
    password_hash = hasher().hash(password)
    with database.atomic():
        manager = Manager.create(username=username, password_hash=password_hash, role=role)
        AuditLog.record(actor, "manager_created", username, role=role)
    return manager


def set_password(manager: Manager, password: str, actor: str = "cli", reset_2fa: bool = False) -> None:
    """A new password (and, if asked, no second factor): every session of the account ends."""
    check_password_rules(manager.username, password)
    fields = {Manager.password_hash: hasher().hash(password), Manager.failed_logins: 0,
              Manager.second_factor_failures: 0, Manager.locked_until: None}
    if reset_2fa:
        fields.update({Manager.totp_secret_enc: None, Manager.totp_confirmed: False, Manager.recovery_codes: "[]"})
    with database.atomic():
        Manager.update(fields).where(Manager.id == manager.id).execute()
        ended = manager_sessions.end_all(manager.id)
        AuditLog.record(actor, "password_reset", manager.username, reset_2fa=reset_2fa, sessions_ended=ended)


def set_disabled(manager: Manager, disabled: bool, actor: str, ip: str | None = None) -> None:
    """Disable an account (staff who left: its sessions end at once) or enable it again."""
    with database.atomic():
        Manager.update(disabled=disabled).where(Manager.id == manager.id).execute()
        ended = manager_sessions.end_all(manager.id) if disabled else 0
        AuditLog.record(actor, "account_disabled" if disabled else "account_enabled", manager.username, ip,
                        sessions_ended=ended)


def _unlocked(now: datetime.datetime) -> Expression:
    return Manager.locked_until.is_null() | (Manager.locked_until <= now)


def authenticate(username: str, password: str, ip: str | None, max_failures: int = 5,
                 lockout: datetime.timedelta = datetime.timedelta(minutes=15)) -> Manager:
    """The manager behind these credentials; raises AccountError("invalid" | "locked")."""
    manager = Manager.get_or_none(Manager.username == (username or "").strip().lower())
    if manager is None or manager.disabled:
        hasher().verify(hasher().dummy, password or "")
        AuditLog.record("anonymous", "login_failed", (username or "")[:64], ip)
        raise AccountError("invalid")
    if is_locked(manager):
        AuditLog.record(manager.username, "login_refused_locked", manager.username, ip)
        raise AccountError("locked")
    if not hasher().verify(manager.password_hash, password or ""):
        if not register_failure(manager, ip, "login_failed", max_failures, lockout, PASSWORD):
            raise AccountError("locked")
        raise AccountError("invalid")
    now = utcnow()
    with database.atomic():
        # Only while unlocked: a parallel burst may have locked the account since the check above.
        passed = Manager.update(failed_logins=0, last_login_at=now).where(Manager.id == manager.id, _unlocked(now)).execute()
    if not passed:
        AuditLog.record(manager.username, "login_refused_locked", manager.username, ip)
        raise AccountError("locked")
    if hasher().needs_rehash(manager.password_hash):
        new_hash = hasher().hash(password)
        with database.atomic():  # unless the password changed meanwhile
            Manager.update(password_hash=new_hash).where(Manager.id == manager.id,
                                                         Manager.password_hash == manager.password_hash).execute()
    return Manager.get_by_id(manager.id)


def register_failure(manager: Manager, ip: str | None, action: str, max_failures: int = 5,
                     lockout: datetime.timedelta = datetime.timedelta(minutes=15), counter: str = PASSWORD) -> bool:
    """Count a wrong password or second factor in its own column; lock the account when that
    column reaches `max_failures` (and start it again from 0). False, and nothing counted, when the
    account was already locked: a failure that arrives after the lock is a refusal, as in a row."""
    column = _COUNTERS[counter]
    now = utcnow()
    with database.atomic():
        counted = Manager.update({column: column + 1}).where(Manager.id == manager.id, _unlocked(now)).execute()
        if not counted:
            AuditLog.record(manager.username, "login_refused_locked", manager.username, ip)
            return False
        AuditLog.record(manager.username, action, manager.username, ip)
        locked = (Manager.update({column: 0, Manager.locked_until: now + lockout})
                  .where(Manager.id == manager.id, column >= max_failures).execute())
        if locked:
            AuditLog.record(manager.username, "account_locked", manager.username, ip, counter=counter)
    return True


def is_locked(manager: Manager) -> bool:
    """Whether the account is locked now (read fresh: the object passed may be old)."""
    return Manager.select().where(Manager.id == manager.id, ~_unlocked(utcnow())).exists()


def second_factor_passed(manager: Manager) -> bool:
    """Clear the second-factor failures after a right code; False when the account locked meanwhile."""
    now = utcnow()
    with database.atomic():
        return bool(Manager.update(second_factor_failures=0, last_login_at=now)
                    .where(Manager.id == manager.id, _unlocked(now)).execute())


# -- second factor --------------------------------------------------------------------------------

def start_totp(manager: Manager, vault: Vault) -> str:
    """A new, unconfirmed secret (confirm_totp activates it)."""
    secret = pyotp.random_base32()
    encrypted = vault.encrypt(secret, "manager.totp")
    with database.atomic():
        Manager.update(totp_secret_enc=encrypted, totp_confirmed=False).where(Manager.id == manager.id).execute()
    manager.totp_secret_enc, manager.totp_confirmed = encrypted, False
    return secret


def totp_uri(manager: Manager, vault: Vault, issuer: str) -> str | None:
    secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
    return pyotp.TOTP(secret).provisioning_uri(name=manager.username, issuer_name=issuer) if secret else None


def confirm_totp(manager: Manager, vault: Vault, code: str, ip: str | None = None) -> list[str]:
    """Activate the secret if `code` is right; returns recovery codes, shown this once."""
    secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
    code = (code or "").strip()
    step = _totp_step(secret, code, manager.totp_last_step) if secret and _TOTP_CODE.match(code) else None
    if step is None:
        raise AccountError("code_invalid")
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    hashes = json.dumps([hasher().hash(c) for c in codes])
    with database.atomic():
        taken = (Manager.update(totp_last_step=step, recovery_codes=hashes, totp_confirmed=True)
                 .where(Manager.id == manager.id, Manager.totp_last_step < step,
                        Manager.totp_secret_enc == manager.totp_secret_enc).execute())
        if not taken:
            raise AccountError("code_invalid")
        AuditLog.record(manager.username, "2fa_enrolled", manager.username, ip)
    return codes


def _totp_step(secret: str, code: str, after: int) -> int | None:
    """The time step (this one, or the one before or after: clock drift) whose code this is,
    if later than `after`; None otherwise."""
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // totp.interval
    for step in (now - 1, now, now + 1):
        if step > after and hmac.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None


def verify_second_factor(manager: Manager, vault: Vault, code: str, ip: str | None = None) -> bool:
    """A current TOTP code never used before, or an unused recovery code (which is then spent).
    Each is consumed by a compare-and-set: of parallel requests with one code, exactly one wins."""
    code = (code or "").strip().lower()
    if _TOTP_CODE.match(code):
        secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
        step = _totp_step(secret, code, manager.totp_last_step) if secret else None
        if step is None:
            return False
        with database.atomic():
            return bool(Manager.update(totp_last_step=step)
                        .where(Manager.id == manager.id, Manager.totp_last_step < step).execute())
    if _RECOVERY_CODE.match(code):
        return _spend_recovery_code(manager, code, ip)
    return False


def _spend_recovery_code(manager: Manager, code: str, ip: str | None) -> bool:
    stored = Manager.select(Manager.recovery_codes).where(Manager.id == manager.id).scalar() or "[]"
    matched = next((h for h in json.loads(stored) if hasher().verify(h, code)), None)
    if matched is None:
        return False
    for _ in range(RECOVERY_CODES + 1):  # each retry means another code was spent meanwhile: bounded
        hashes = json.loads(stored)
        if matched not in hashes:
            return False  # a parallel request spent this very code
        left = [h for h in hashes if h != matched]
        with database.atomic():
            swapped = (Manager.update(recovery_codes=json.dumps(left))
                       .where(Manager.id == manager.id, Manager.recovery_codes == stored).execute())
            if swapped:
                AuditLog.record(manager.username, "recovery_code_used", manager.username, ip, left=len(left))
                return True
        stored = Manager.select(Manager.recovery_codes).where(Manager.id == manager.id).scalar() or "[]"
    return False

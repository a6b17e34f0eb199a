"""Manager accounts: argon2id passwords, lockout after repeated failures, TOTP with recovery codes."""
from __future__ import annotations

import datetime
import hmac
import json
import re
import secrets
import time

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.identity import Vault
from portal.models import AuditLog, Manager, utcnow
from portal.numbers import is_ascii_digits

ROLES = ("owner", "manager", "analyst")
PASSWORD_MIN = 12
RECOVERY_CODES = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")
_hasher = PasswordHasher()  # argon2id, the library's (RFC 9106) defaults
# Verifying against this when the user does not exist costs the same time as a real check.
_DUMMY = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """Why an account operation was refused; .code is shown translated, never the raw detail."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def check_password_rules(username: str, password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AccountError("password_short")
    if len(password) > 256:
        raise AccountError("password_long")
    if username.lower() in password.lower():
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
    manager = Manager.create(username=username, password_hash=_hasher.hash(password), role=role)
    AuditLog.record(actor, "manager_created", username, role=role)
    return manager


def set_password(manager: Manager, password: str, actor: str = "cli", reset_2fa: bool = False) -> None:
    check_password_rules(manager.username, password)
    manager.password_hash = _hasher.hash(password)
    manager.failed_logins, manager.locked_until = 0, None
    if reset_2fa:
        manager.totp_secret_enc, manager.totp_confirmed, manager.recovery_codes = None, False, "[]"
    manager.save()
    AuditLog.record(actor, "password_reset", manager.username, reset_2fa=reset_2fa)


def authenticate(username: str, password: str, ip: str | None, max_failures: int = 5,
                 lockout: datetime.timedelta = datetime.timedelta(minutes=15)) -> Manager:
    """The manager behind these credentials; raises AccountError("invalid" | "locked")."""
    manager = Manager.get_or_none(Manager.username == (username or "").strip().lower())
    now = utcnow()
    if manager is None or manager.disabled:
        _verify(_DUMMY, password or "")
        AuditLog.record("anonymous", "login_failed", (username or "")[:64], ip)
        raise AccountError("invalid")
    if manager.locked_until and manager.locked_until > now:
        AuditLog.record(manager.username, "login_refused_locked", manager.username, ip)
        raise AccountError("locked")
    if not _verify(manager.password_hash, password or ""):
        register_failure(manager, ip, "login_failed", max_failures, lockout)
        raise AccountError("invalid")
    if _hasher.check_needs_rehash(manager.password_hash):
        manager.password_hash = _hasher.hash(password)
    manager.failed_logins, manager.locked_until, manager.last_login_at = 0, None, now
    manager.save()
    return manager


def register_failure(manager: Manager, ip: str | None, action: str, max_failures: int = 5,
                     lockout: datetime.timedelta = datetime.timedelta(minutes=15)) -> None:
    """Count a wrong password or second factor; lock the account after `max_failures`."""
    manager.failed_logins += 1
    if manager.failed_logins >= max_failures:
        manager.locked_until, manager.failed_logins = utcnow() + lockout, 0
        AuditLog.record(manager.username, "account_locked", manager.username, ip)
    manager.save()
    AuditLog.record(manager.username, action, manager.username, ip)


def is_locked(manager: Manager) -> bool:
    return bool(manager.locked_until and manager.locked_until > utcnow())


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


# -- second factor --------------------------------------------------------------------------------

def start_totp(manager: Manager, vault: Vault) -> str:
    """A new, unconfirmed secret (confirm_totp activates it)."""
    secret = pyotp.random_base32()
    manager.totp_secret_enc, manager.totp_confirmed = vault.encrypt(secret, "manager.totp"), False
    manager.save()
    return secret


def totp_uri(manager: Manager, vault: Vault, issuer: str) -> str | None:
    secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
    return pyotp.TOTP(secret).provisioning_uri(name=manager.username, issuer_name=issuer) if secret else None


def confirm_totp(manager: Manager, vault: Vault, code: str, ip: str | None = None) -> list[str]:
    """Activate the secret if `code` is right; returns recovery codes, shown this once."""
    secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
    step = _totp_step(secret, (code or "").strip(), manager.totp_last_step) if secret else None
    if step is None:
        raise AccountError("code_invalid")
    manager.totp_last_step = step
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    manager.recovery_codes = json.dumps([_hasher.hash(c) for c in codes])
    manager.totp_confirmed = True
    manager.save()
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
    """A current TOTP code never used before, or an unused recovery code (which is then spent)."""
    code = (code or "").strip()
    secret = vault.decrypt(manager.totp_secret_enc, "manager.totp")
    if secret and is_ascii_digits(code, 6) and len(code) == 6:
        step = _totp_step(secret, code, manager.totp_last_step)
        if step is not None:
            manager.totp_last_step = step
            manager.save()
            return True
    hashes = json.loads(manager.recovery_codes or "[]")
    for i, hashed in enumerate(hashes):
        if len(code) == 13 and _verify(hashed, code.lower()):
            del hashes[i]
            manager.recovery_codes = json.dumps(hashes)
            manager.save()
            AuditLog.record(manager.username, "recovery_code_used", manager.username, ip, left=len(hashes))
            return True
    return False

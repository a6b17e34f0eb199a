"""Who a visitor is: normalized contact details, encryption at rest and blind indexes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from email_validator import EmailNotValidError, validate_email

_CIPHER_VERSION = b"\x01"
NAME_MAX = 80
_NAME_PUNCTUATION = frozenset(" .'-")
_NONCE_BYTES = 12


class InvalidContact(ValueError):
    """A contact detail we cannot accept; .code names the message shown to the visitor."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def normalize_email(raw: str) -> str:
    """Syntax-checked, lower-cased address (no DNS look-up: the portal may be offline)."""
    text = (raw or "").strip()
    if not text:
        raise InvalidContact("email_missing")
    if len(text) > 254:
        raise InvalidContact("email_invalid")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidContact("email_invalid") from None
    return result.normalized.lower()


def normalize_phone(raw: str, region: str) -> str:
    """E.164, so that 0912 345 678, +84 912 345 678 and 84912345678 are one person."""
    text = (raw or "").strip()
    if not text:
        raise InvalidContact("phone_missing")
    if len(text) > 32:
        raise InvalidContact("phone_invalid")
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException:
        raise InvalidContact("phone_invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContact("phone_invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_name(raw: str) -> str:
    """Letters (any script), spaces and . ' - ; raises InvalidContact otherwise."""
    name = " ".join(unicodedata.normalize("NFC", raw or "").split())
    if len(name) > NAME_MAX:
        raise InvalidContact("name_too_long")
    for ch in name:
        if not (ch.isalpha() or ch in _NAME_PUNCTUATION or unicodedata.category(ch).startswith("M")):
            raise InvalidContact("name_invalid")
    return name



def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    return phone[:4] + "*" * max(len(phone) - 7, 3) + phone[-3:]


@dataclass(frozen=True)
class Keys:
    encryption: bytes  # AES-256-GCM key for personal data at rest
    index: bytes       # HMAC key of the blind indexes (shared across a chain's stores)
    secret: bytes      # Flask session and CSRF signing
    store_id: str = ""     # this store's id at the central store, once enrolled
    sync_key: bytes = b""  # the key that signs this store's batches

    @classmethod
    def generate(cls) -> "Keys":
        return cls(AESGCM.generate_key(bit_length=256), secrets.token_bytes(32), secrets.token_bytes(32))

    def to_json(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        data = {"version": 1, "encryption": b64(self.encryption), "index": b64(self.index), "secret": b64(self.secret)}
        if self.store_id:
            data.update(store_id=self.store_id, sync_key=b64(self.sync_key))
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Keys":
        data = json.loads(text)
        keys = cls(*(base64.b64decode(data[k]) for k in ("encryption", "index", "secret")),
                   store_id=data.get("store_id", ""), sync_key=base64.b64decode(data.get("sync_key", "")))
        if len(keys.encryption) != 32 or len(keys.index) < 32 or len(keys.secret) < 32:
            raise ValueError("key file holds keys of the wrong size")
        return keys


def load_or_create_keys(path: str | os.PathLike) -> Keys:
    """Read the key file, creating it (mode 0600, exclusively) on first run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
        return Keys.from_json(path.read_text())
    keys = Keys.generate()
    with os.fdopen(fd, "w") as fh:
        fh.write(keys.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    return keys


def save_keys(path: str | os.PathLike, keys: Keys) -> None:
    """Replace the key file atomically, keeping it 0600."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keys.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Vault:
    """AES-GCM for personal fields, bound to their column by associated data; HMAC blind indexes."""

    def __init__(self, keys: Keys):
        self._aead = AESGCM(keys.encryption)
        self._index_key = keys.index

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _CIPHER_VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes | None, context: str) -> str | None:
        if blob is None:
            return None
        blob = bytes(blob)
        if blob[:1] != _CIPHER_VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, body = blob[1:1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES:]
        return self._aead.decrypt(nonce, body, context.encode()).decode()

    def derived_key(self, purpose: str) -> bytes:
        """A key of its own for one use (one-time code hashes), derived from the index key."""
        return hmac.new(self._index_key, f"derived:{purpose}".encode(), hashlib.sha256).digest()

    def blind_index(self, kind: str, normalized: str) -> str:
        return hmac.new(self._index_key, f"{kind}:{normalized}".encode(), hashlib.sha256).hexdigest()

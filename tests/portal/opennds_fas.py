"""Build openNDS FAS queries as openNDS 9.10 does, for tests (levels 1 and 2/3)."""
from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FASKEY = "1234567890abcdef"
HID = "dc5a64c1d41ce70ae4fc142a39c353f727020cb858f6e848424c090c3004b8f7"
GATEWAYNAME = "footfall-test%20Node%3a4a7baf5c7379%20"


def query(**fields) -> str:
    """openNDS's clear-text query (values URL-encoded, pairs separated by comma-space)."""
    base = {"hid": HID, "clientip": "10.77.0.114", "clientmac": "02:11:22:33:44:55", "client_type": "cpd_can",
            "gatewayname": GATEWAYNAME, "gatewayaddress": "10.77.0.1:2050", "authdir": "opennds_auth",
            "originurl": quote("http://example.com/", safe="")}
    base.update(fields)
    return ", ".join(f"{k}={v}" for k, v in base.items() if v is not None)


def level1(**fields) -> str:
    return base64.b64encode(query(**fields).encode()).decode()


def encrypt(text: str, faskey: str = FASKEY, iv: str | None = None) -> dict[str, str]:
    """Level 2/3: {fas, iv} as openNDS puts them in the redirect (php openssl_encrypt, base64 twice)."""
    iv = iv or hashlib.sha256(base64.b64encode(os.urandom(8))).hexdigest()[:16]
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(faskey.encode().ljust(32, b"\0")), modes.CBC(iv.encode())).encryptor()
    ciphertext = encryptor.update(padder.update(text.encode()) + padder.finalize()) + encryptor.finalize()
    return {"fas": base64.b64encode(base64.b64encode(ciphertext)).decode(), "iv": iv}


def level2(faskey: str = FASKEY, **fields) -> dict[str, str]:
    return encrypt(query(**fields), faskey)


def ciphertext_of(fas: str) -> bytes:
    return base64.b64decode(base64.b64decode(fas))


def wrap(ciphertext: bytes) -> str:
    return base64.b64encode(base64.b64encode(ciphertext)).decode()

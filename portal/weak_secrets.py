"""Secrets that must never be used: the examples printed in our docs and our upstreams' samples,
and keys that are visibly not random. One list, used wherever a secret is loaded."""
from __future__ import annotations

# deploy/opennds.conf.example's faskey, and the one in openNDS's own FAS sample scripts
# (/etc/opennds/fas-*.php): copied as they are, anyone who read them can forge the handshake.
EXAMPLE_FASKEYS = frozenset({"REPLACE-WITH-A-RANDOM-KEY", "ChangeMe0123456", "1234567890"})
MIN_KEY_BYTES = 32
MIN_DISTINCT_BYTES = 16  # 32 random bytes have ~30 distinct values; fewer than 16: p = 3e-17


class WeakSecret(ValueError):
    """A secret refused, with the reason an operator can act on."""


def check_faskey(faskey: str) -> None:
    if faskey in EXAMPLE_FASKEYS:
        raise WeakSecret(f"opennds_faskey {faskey!r} is a published example: set a random one on the router and here")


def check_key(key: bytes, what: str) -> None:
    """A 32-byte key as `footfall central add-store` makes them (secrets.token_bytes). No example
    store key is published (the docs show placeholders); patterned ones ("kkkk...", zeros) are refused."""
    if len(key) < MIN_KEY_BYTES:
        raise WeakSecret(f"{what} is {len(key)} bytes; keys are {MIN_KEY_BYTES}")
    if len(set(key)) < MIN_DISTINCT_BYTES:
        raise WeakSecret(f"{what} is not random (too few distinct bytes): use the key add-store printed")

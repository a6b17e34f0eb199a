"""MAC addresses as Footfall writes them, and the randomized-address test.

Everywhere a MAC is stored, signed into an event or handed to a gateway, it is six lower-case
hex pairs separated by colons (`MAC`); anything else is refused where it enters. The pattern
ends in \\Z, not $: `$` also matches before a final newline, and "02:..:01\\n" is no MAC (it
would end a line of an nft script).
"""
from __future__ import annotations

import re

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def is_mac(text: object) -> bool:
    return isinstance(text, str) and bool(MAC.match(text))


def randomized(mac: str) -> bool:
    """The locally administered bit: phones set it on their per-network private addresses."""
    return bool(int(mac[0:2], 16) & 0x02)


# A device stored without its MAC (issue 15: anonymous by default) is named this prefix and a
# pseudonym: never a MAC, so a pseudonym cannot meet a signed-in device's row. Written by the
# collector (collector/pseudonyms.py) and by sign-in visits (portal/signin_visits.py).
PSEUDONYM_PREFIX = "anon-"

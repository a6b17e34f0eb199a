"""What the visitor journey passes around: the device asking, the form it sent, what happened, and
what a visitor is shown of their own data. Plain values, no database."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portal.contacts import Pending


@dataclass(frozen=True)
class Client:
    """The device asking, as the gateway sees it."""
    ip: str
    mac: str | None


@dataclass(frozen=True)
class SignInForm:
    email: str = ""
    phone: str = ""
    name: str = ""
    language: str = "vi"
    terms: bool = False
    marketing: frozenset[str] = frozenset()   # channels ticked (portal/core/purposes.py MARKETING_PURPOSES)
    analytics: frozenset[str] = frozenset()   # visit analytics, chain sharing ticked (ANALYTICS_PURPOSES)
    adult: bool = False                       # "I am min_age or older": needed for any optional purpose

    @property
    def optional(self) -> frozenset[str]:
        return self.marketing | self.analytics


@dataclass(frozen=True)
class Outcome:
    """What happened: ok, or the message codes per field (never raw exception text)."""
    ok: bool
    errors: dict[str, str] = field(default_factory=dict)
    online_until: datetime.datetime | None = None
    stored: str = "database"  # or "journal" (the database was full), or "not_kept" (so was the journal)
    lead: str | None = None                # the record the device speaks for now
    claims: tuple[str, ...] = ()           # contacts named and not proved yet (ContactClaim uids)
    sent: Pending | None = None            # the code sent beside this answer
    send_error: str | None = None          # why no code went (a limit, no channel...)
    verify_first: bool = False             # verify_when = before: online only once a code is entered
    scope: str = "person"                  # an erasure: the person, or only this device ("device")


@dataclass(frozen=True)
class ConsentLine:
    purpose: str
    granted: bool
    at: datetime.datetime
    method: str


@dataclass(frozen=True)
class MyData:
    mac: str
    first_seen: datetime.datetime | None
    visits: int
    proven: bool                 # this session proved control of the record's email or phone
    own_only: bool               # unproven: only what this device itself submitted is shown
    email_verified: bool
    phone_verified: bool
    email: str | None
    phone: str | None
    claimed: list[str]           # contacts this device typed and has not proved (masked)
    name: str | None
    language: str | None
    current: dict[str, ConsentLine | None]
    history: list[ConsentLine]
    online_until: datetime.datetime | None

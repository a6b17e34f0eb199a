"""Segment rules and the one definition of a new and a returning visitor, as pure functions.

No database here: the appliance's segments (portal/segments.py), its dashboard
(portal/metrics.py), `footfall visits` (portal/visits.py) and the central store (central/api.py)
all import this module, and the central store must not need the appliance's database to do so.

New and returning (README: "New and returning visitors"). Over a window of days ending now
(window_start: the last 30 x 24 hours, WINDOW_DAYS, unless a segment's `window_days` says otherwise), a visitor — a person, across all
their devices, or an anonymous device where per-device figures are shown — is:
- returning if they came at least twice: two visits that started in the window, or one in the
  window and an earlier one;
- new if their only visit is in the window (the first we know of);
- neither if no visit of theirs started in the window.
A visit here is a closed visit on the guest network that is not a passer-by; the dashboard
also counts the visit in progress of someone in the store now (see portal/metrics.py).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from portal.core.numbers import NumberError, parse_int
from portal.core.purposes import LANGUAGES, PURPOSES

NEW, RETURNING = "new", "returning"
WINDOW_DAYS = 30


def window_start(now: datetime.datetime, days: int = WINDOW_DAYS) -> datetime.datetime:
    """Where a window of `days` ending at `now` begins: the last days x 24 hours, not calendar days."""
    return now - datetime.timedelta(days=days)


def visitor_kind(visits_in_window: int, visited_before: bool) -> str | None:
    """NEW, RETURNING, or None for someone with no visit in the window."""
    if visits_in_window < 0:
        raise ValueError("visits_in_window must not be negative")
    if visits_in_window == 0:
        return None
    return RETURNING if visits_in_window >= 2 or visited_before else NEW


RULE_FIELDS = {
    "window_days": (1, 3650),         # visits are counted over this many days (default 90)
    "visits_min": (0, 100000),
    "visits_max": (0, 100000),
    "recency_min_days": (0, 3650),    # days since the last visit
    "recency_max_days": (0, 3650),
    "first_within_days": (0, 3650),   # first visit ever within this many days
    "dwell_min_minutes": (0, 1440),   # average dwell per visit
}
TEXT_FIELDS = {"consent": PURPOSES, "language": LANGUAGES}

# New and returning are visitor_kind over their window; conditions the owner adds narrow them.
BUILTIN: dict[str, tuple[str, dict]] = {
    NEW: ("New", {"window_days": WINDOW_DAYS}),
    RETURNING: ("Returning", {"window_days": WINDOW_DAYS}),
    "loyal": ("Loyal", {"visits_min": 5, "window_days": 90, "recency_max_days": 30}),
    "lapsed": ("Lapsed", {"recency_min_days": 30, "recency_max_days": 90}),
    "lost": ("Lost", {"recency_min_days": 90}),
}
# What new and returning were before they had one definition: stored rules still equal to these
# are replaced by BUILTIN's (an owner's own edits are kept).
FORMER_BUILTIN: dict[str, dict] = {
    NEW: {"first_within_days": 30, "visits_max": 1, "window_days": 30},
    RETURNING: {"visits_min": 2, "window_days": 30, "recency_max_days": 30},
}


class RuleError(ValueError):
    """A segment rule we cannot use; .code says which field."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def clean_rule(raw: dict) -> dict:
    """Keep known fields with values in range; raise RuleError otherwise."""
    rule: dict = {}
    for key, value in raw.items():
        if value in (None, ""):
            continue
        if key in RULE_FIELDS:
            lo, hi = RULE_FIELDS[key]
            if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
                rule[key] = value  # stored rules, read back
                continue
            try:
                rule[key] = parse_int(value if isinstance(value, str) else "", lo, hi)  # int() would take "１２"
            except NumberError:
                raise RuleError(key) from None
        elif key in TEXT_FIELDS:
            if value not in TEXT_FIELDS[key]:
                raise RuleError(key)
            rule[key] = value
        else:
            raise RuleError(key)
    if not rule:
        raise RuleError("empty")
    return rule


@dataclass
class LeadStat:
    lead_id: int
    language: str
    visits_by_window: dict[int, int] = field(default_factory=dict)  # visits that started in the last N days
    first: datetime.datetime | None = None
    last: datetime.datetime | None = None
    avg_dwell: float = 0.0
    consents: frozenset[str] = frozenset()
    visits: int = 0                                                  # all the visits kept

    def kind(self, window_days: int = WINDOW_DAYS) -> str | None:
        in_window = self.visits_by_window.get(window_days, 0)
        return visitor_kind(in_window, self.visits > in_window)


def matches(rule: dict, stat: LeadStat, now: datetime.datetime) -> bool:
    visits = stat.visits_by_window.get(rule.get("window_days", 90), 0)
    if "visits_min" in rule and visits < rule["visits_min"]:
        return False
    if "visits_max" in rule and visits > rule["visits_max"]:
        return False
    needs_visit = any(k in rule for k in ("recency_min_days", "recency_max_days", "first_within_days", "dwell_min_minutes"))
    if needs_visit and stat.last is None:
        return False
    if stat.last is not None:
        recency = (now - stat.last).total_seconds() / 86400
        if "recency_min_days" in rule and recency < rule["recency_min_days"]:
            return False
        if "recency_max_days" in rule and recency > rule["recency_max_days"]:
            return False
        if "first_within_days" in rule and (now - stat.first).total_seconds() / 86400 > rule["first_within_days"]:
            return False
        if "dwell_min_minutes" in rule and stat.avg_dwell < rule["dwell_min_minutes"]:
            return False
    if "consent" in rule and rule["consent"] not in stat.consents:
        return False
    if "language" in rule and rule["language"] != stat.language:
        return False
    return True


def windows(rules: list[dict]) -> set[int]:
    """The windows (days) whose visit counts these rules need."""
    return {rule.get("window_days", 90) for rule in rules}


def member(key: str, rule: dict, stat: LeadStat, now: datetime.datetime) -> bool:
    """Whether a person belongs to segment `key`: the built-in new and returning segments are
    visitor_kind over the rule's window, then every segment's conditions apply."""
    if key in (NEW, RETURNING) and stat.kind(rule.get("window_days", 90)) != key:
        return False
    return matches(rule, stat, now)

"""What a visitor can agree to, and the languages Footfall speaks.

`wifi_terms` is required to get online; every other purpose is optional, separate, unticked by
default and never a condition of getting online. The marketing purposes are channels (each needs
its email or phone proved before it counts: double opt-in, exports); the analytics purposes are
uses of the person's visits that need no channel. The texts of each purpose are in
portal/policy_texts.py (defaults) and the database (versions).
"""
from __future__ import annotations

REQUIRED_PURPOSE = "wifi_terms"
MARKETING_PURPOSES = ("marketing_email", "marketing_sms", "ad_audiences")  # channels: messages and audiences
VISIT_ANALYTICS = "visit_analytics"  # per-person visits followed from day to day: segments, new/returning
CHAIN_SHARING = "chain_sharing"      # the person merged across the chain's stores at the central store
ANALYTICS_PURPOSES = (VISIT_ANALYTICS, CHAIN_SHARING)  # optional, not marketing, no channel
OPTIONAL_PURPOSES = (*MARKETING_PURPOSES, *ANALYTICS_PURPOSES)  # each needs the age confirmation
PURPOSES = (REQUIRED_PURPOSE, *OPTIONAL_PURPOSES)

LANGUAGES = ("vi", "en")  # the first is the default
DEFAULT_LANGUAGE = LANGUAGES[0]

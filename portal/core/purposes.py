"""What a visitor can agree to, and the languages Footfall speaks.

`wifi_terms` is required to get online; the marketing purposes are each optional and separate.
The texts of each purpose are in portal/policy_texts.py (defaults) and the database (versions).
"""
from __future__ import annotations

REQUIRED_PURPOSE = "wifi_terms"
MARKETING_PURPOSES = ("marketing_email", "marketing_sms", "ad_audiences")
PURPOSES = (REQUIRED_PURPOSE, *MARKETING_PURPOSES)

LANGUAGES = ("vi", "en")  # the first is the default
DEFAULT_LANGUAGE = LANGUAGES[0]

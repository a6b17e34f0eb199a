"""Whole numbers read from requests: ASCII digits only, in a bounded range, or refused.

`str.isdigit()` and `int()` accept far more than a client should send: "²" is a digit to
isdigit() and a ValueError to int() (a 500), "１２" (fullwidth) and " 12" and "1_2" are 12 to
int(), and forty digits overflow SQLite and PostgreSQL integers. Every number a request carries
(headers, query strings, forms) goes through `parse_int`; URL paths through the `StrictInt`
converter (portal/guards.py), which matches the same digits.
"""
from __future__ import annotations

INT64_MAX = 2**63 - 1


class NumberError(ValueError):
    """Not an ASCII whole number within the range."""


def is_ascii_digits(text: str, max_length: int = 19) -> bool:
    """"0"-"9" only, 1 to `max_length` of them (no sign, space, underscore or other script)."""
    return isinstance(text, str) and 0 < len(text) <= max_length and text.isascii() and text.isdigit()


def parse_int(text: str, low: int = 0, high: int = INT64_MAX) -> int:
    """`text` as an int in [low, high] (low >= 0: no sign is accepted); NumberError otherwise."""
    if not is_ascii_digits(text, len(str(high))):
        raise NumberError(f"expected a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise NumberError(f"expected a whole number from {low} to {high}")
    return value


"""Decimal integers read from the wire, bounded before ``int()`` sees them.

Why: ``int(text)`` raises ``ValueError`` past 4,300 digits (CPython's int-from-str limit), and
a value that parses may still not fit the PostgreSQL column it is bound for (``INTEGER`` is
signed 32-bit, ``BIGINT`` signed 64-bit); either way the failure would surface far from the
parser as a 500. ``parse_decimal`` looks at the length first, so no input reaches ``int()``
unbounded, and returns None for anything that is not a plain decimal within ``maximum``: the
caller names the field in its own 4xx.
"""

from __future__ import annotations

__all__ = ["INT32_MAX", "INT64_MAX", "parse_decimal"]

#: The largest value of a PostgreSQL INTEGER column.
INT32_MAX = 2**31 - 1
#: The largest value of a PostgreSQL BIGINT column (and of any byte offset we serve).
INT64_MAX = 2**63 - 1


def parse_decimal(text: str, *, maximum: int) -> int | None:
    """The value of ``text`` (ASCII digits only, leading zeros allowed) when it is at most
    ``maximum``; None when it is empty, not decimal, or larger."""
    if not text or not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(maximum)):
        return None
    value = int(significant)
    return value if value <= maximum else None

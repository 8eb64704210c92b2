"""HTTP Range header parsing for GET/HEAD (one range; S3 does not serve multipart ranges)."""

from __future__ import annotations

import re

from core.wire_numbers import INT64_MAX, parse_decimal
from gateway.s3 import errors as s3e

__all__ = ["parse_range"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte positions, or None for the whole object.

    A syntactically invalid header is ignored (as S3 does); an unsatisfiable one is
    ``InvalidRange`` (416), and so is a position beyond 2^63-1 (no object is that large;
    the digits are never handed to ``int()`` unbounded).
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.groups()
    if first_s:
        first = _position(first_s)
        last = _position(last_s) if last_s else size - 1
        if last_s and last < first:
            return None
        if first >= size:
            raise s3e.InvalidRange(f"The requested range is not satisfiable (object size {size})")
        return first, min(last, size - 1)
    suffix = _position(last_s)
    if suffix == 0:
        raise s3e.InvalidRange("The requested range is not satisfiable")
    if size == 0:
        raise s3e.InvalidRange("The requested range is not satisfiable (empty object)")
    return max(0, size - suffix), size - 1


def _position(digits: str) -> int:
    value = parse_decimal(digits, maximum=INT64_MAX)
    if value is None:
        raise s3e.InvalidRange("The requested range names a byte position beyond 2^63-1")
    return value

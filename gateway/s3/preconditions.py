"""Conditional reads (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since).

Pure functions, evaluated as S3 does for GetObject and HeadObject (RFC 9110 section 13.2.2
order, with S3's two documented combinations):

1. ``If-Match`` false -> 412. When present and true, ``If-Unmodified-Since`` is not evaluated
   (so If-Match true + If-Unmodified-Since false -> 200).
2. Otherwise ``If-Unmodified-Since`` with the object modified after it -> 412.
3. ``If-None-Match`` matching -> 304. When present and not matching, ``If-Modified-Since`` is
   not evaluated; when it matches, 304 whatever ``If-Modified-Since`` says (so If-None-Match
   false + If-Modified-Since true -> 304).
4. Otherwise ``If-Modified-Since`` with the object not modified after it -> 304.

ETags compare with or without quotes (and a ``W/`` prefix), as comma-separated lists; ``*``
matches any existing object. A date that does not parse is ignored, like S3 does; one that
parses but lies outside the calendar in UTC is a 400. Dates have one-second resolution
(``Last-Modified`` is sent without fractions), so the object's time is truncated to the second
before comparing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum

from core.etags import etag_matches
from gateway.s3 import errors as s3e

__all__ = ["Outcome", "etag_matches", "evaluate", "parse_http_date"]


class Outcome(Enum):
    PROCEED = 200
    NOT_MODIFIED = 304
    PRECONDITION_FAILED = 412


def parse_http_date(value: str | None, name: str = "date") -> datetime | None:
    """An HTTP date (IMF-fixdate, RFC 850 or asctime, also ISO 8601 as some clients send) in
    UTC, or None when it does not parse (the condition is then ignored). A date that parses
    but has no UTC instant (``0001-01-01T00:00:00+12:00``, year 9999 with a negative offset)
    is InvalidArgument naming header ``name``: ignoring it would silently change the answer,
    and converting it raises OverflowError."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    parsed: datetime | None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        parsed = None
    except OverflowError:
        raise _out_of_range(name) from None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _out_of_range(name) from None


def _out_of_range(name: str) -> s3e.S3Error:
    return s3e.InvalidArgument(f"{name} is outside the dates that can be compared (year 1..9999)")


def evaluate(headers: Mapping[str, str], etag: str, last_modified: datetime) -> Outcome:
    """What a GET or HEAD of an existing object with this ETag and modification time answers."""
    modified = last_modified.astimezone(UTC).replace(microsecond=0)
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            return Outcome.PRECONDITION_FAILED
    else:
        since = parse_http_date(headers.get("if-unmodified-since"), "If-Unmodified-Since")
        if since is not None and modified > since:
            return Outcome.PRECONDITION_FAILED
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            return Outcome.NOT_MODIFIED
    else:
        since = parse_http_date(headers.get("if-modified-since"), "If-Modified-Since")
        if since is not None and modified <= since:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED

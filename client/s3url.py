"""``s3://bucket/key`` locations as ``bp`` accepts them.

The key is kept exactly as typed (no normalisation, no percent-decoding, ``//`` and ``..``
preserved): it is hashed into the BP1 binding, so the name a reader asks for must be
byte-for-byte the name the writer used. The bucket name is checked only loosely (S3 rules:
3..63 of lowercase letters, digits, ``.`` and ``-``); the gateway has the final word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["S3Url", "parse_s3_url"]

_SCHEME = "s3://"
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Url:
    """A bucket and a key (or prefix); ``key`` is ``""`` when the URL names only a bucket."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.key}" if self.key else f"{_SCHEME}{self.bucket}"


def parse_s3_url(text: str, *, require_key: bool = False, allow_key: bool = True) -> S3Url:
    """Parse ``s3://bucket[/key]``; raises ``ValueError`` with a message fit for a user."""
    if not text.startswith(_SCHEME):
        raise ValueError(f"{text!r} is not an s3://bucket/key URL")
    rest = text[len(_SCHEME) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{text!r} names no bucket")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{bucket!r} is not a valid bucket name (3..63 lowercase letters, digits, '.' or '-')"
        )
    if require_key and not key:
        raise ValueError(f"{text!r} names no object key (expected s3://{bucket}/KEY)")
    if not allow_key and key:
        raise ValueError(f"{text!r} must name only a bucket (s3://{bucket})")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the key in {text!r} is not valid UTF-8") from None
    if len(encoded) > 1024:
        raise ValueError("object keys are at most 1024 bytes of UTF-8")
    return S3Url(bucket, key)

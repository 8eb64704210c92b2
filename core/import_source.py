"""Where an import reads from: the source bucket's location, its credentials, and what can go
wrong with it, as plain values any layer can hold and catch.

``SourceCredentials`` never shows its secret in a ``repr`` (it ends up in logs, tracebacks
and the Ray dashboard otherwise); it is built from the dictionary
``core.credential_seal.open_sealed`` returns and lives only in the memory of the process
that opened it. The errors (``SourceError`` and its kinds) are what an operator or a tenant
can act on: the source cannot be reached (endpoint, network, timeout), refuses these
credentials, has no such bucket, or one object changed since it was listed. The code that
talks to a source (``actors/source_bucket.py``) translates vendor errors into them; nothing
here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import AccessDenied, BulletproofError, InvalidInput, NotFound

__all__ = [
    "SourceAccessDenied",
    "SourceBucketMissing",
    "SourceCredentials",
    "SourceError",
    "SourceLocation",
    "SourceObjectChanged",
    "SourceUnreachable",
    "parse_source_url",
]


class SourceError(BulletproofError):
    """The import source failed a request; the subclasses say how. The message names the
    source's endpoint and bucket and the provider's error code, never a credential."""


class SourceUnreachable(SourceError):
    """The source endpoint could not be reached or did not answer in time."""


class SourceAccessDenied(SourceError, AccessDenied):
    """The source refused the credentials (unknown key, wrong secret) or the permission."""


class SourceBucketMissing(SourceError, NotFound):
    """The source has no such bucket."""


class SourceObjectChanged(SourceError):
    """A listed source object was replaced or deleted before it was copied (its ETag no longer
    matches): a later run of the import copies what is there then."""


@dataclass(frozen=True)
class SourceLocation:
    """A bucket and prefix at an S3-compatible endpoint."""

    endpoint: str
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("the source endpoint must be an http(s):// URL")
        if parts.username is not None or parts.password is not None:
            raise InvalidInput("the source endpoint must not carry credentials")
        if not self.bucket or "/" in self.bucket:
            raise InvalidInput("the source bucket must be a bucket name")


@dataclass(frozen=True)
class SourceCredentials:
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_opened(cls, opened: dict[str, str]) -> SourceCredentials:
        """From the dictionary ``open_sealed`` returns."""
        return cls(opened["access_key"], opened["secret_key"], opened.get("session_token"))


def parse_source_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix), as ``import start --source`` takes it.
    The prefix is taken verbatim (it may hold ``?``, ``#``, ``%`` like any key)."""
    if not url.startswith("s3://"):
        raise InvalidInput("the source must be s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidInput("the source must be s3://BUCKET[/PREFIX]")
    return bucket, prefix

"""Request headers that would change what happens to data but that this gateway does not
implement are refused, never ignored: a client must not believe a setting took effect.

Server-side encryption headers (the gateway never holds a key: clients encrypt), object lock
and tagging are NotImplemented; ACL headers follow ``check_canned_acl`` (only private).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.s3 import errors as s3e
from gateway.s3.handlers.acl import check_canned_acl

__all__ = ["refuse_unsupported_headers"]

_REFUSED_PREFIXES = (
    (
        "x-amz-server-side-encryption",
        "server-side encryption: objects are encrypted by their"
        " clients and the gateway never holds a key (docs/envelope.md)",
    ),
    ("x-amz-object-lock-", "object lock"),
    ("x-amz-tagging", "object tagging"),
    ("x-amz-website-redirect-location", "website redirects"),
)


def refuse_unsupported_headers(headers: Mapping[str, str]) -> None:
    """Raise the S3 error for the first unsupported data-affecting header."""
    check_canned_acl(headers)
    for name in headers:
        for prefix, what in _REFUSED_PREFIXES:
            if name.startswith(prefix):
                raise s3e.NotImplemented(f"{name}: {what} is not supported by this gateway")

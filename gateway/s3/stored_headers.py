"""The standard headers S3 keeps with an object, and the GET overrides of them.

S3 stores ``Cache-Control``, ``Content-Disposition``, ``Content-Encoding``,
``Content-Language`` and ``Expires`` from the upload and returns them on every GET and HEAD
(``Content-Type`` has its own column). A signed GET may override them, and the content type,
with the ``response-*`` query parameters. These are not user metadata: they do not count
against the 2 KiB of ``x-amz-meta-*``, each is capped instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.s3 import errors as s3e

__all__ = ["STORED_HEADERS", "response_overrides", "stored_headers"]

STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
_MAX_VALUE_BYTES = 1024
_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The standard headers of an upload request to keep with the object. ``aws-chunked``, a
    transfer coding of the request body and not of the object, is dropped from
    Content-Encoding as S3 does."""
    kept: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip()]
            value = ", ".join(c for c in codings if c.lower() != "aws-chunked")
            if not value:
                continue
        if len(value.encode()) > _MAX_VALUE_BYTES:
            raise s3e.InvalidArgument(f"The {name} header is longer than {_MAX_VALUE_BYTES} bytes")
        kept[name] = value
    return kept


def response_overrides(query: Mapping[str, str]) -> dict[str, str]:
    """Response header name -> value from a GET's ``response-*`` query parameters."""
    out: dict[str, str] = {}
    for param, header in _OVERRIDES.items():
        if param in query:
            value = query[param]
            if len(value.encode()) > _MAX_VALUE_BYTES or "\r" in value or "\n" in value:
                raise s3e.InvalidArgument(f"{param} is not a valid header value")
            out[header] = value
    return out

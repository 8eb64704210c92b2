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
            if len(value.encode()) > _MAX_VALUE_BYTES or not _is_header_value(value):
                raise s3e.InvalidArgument(
                    f"{param} is not a valid header value (Latin-1 text without control characters)"
                )
            out[header] = value
    return out


def _is_header_value(value: str) -> bool:
    """Whether ``value`` can be sent as an HTTP/1.1 field value: HTTP sends header bytes as
    Latin-1 (a ``€`` has no byte there, and the server would fail writing the response), and
    control characters other than tab are not field content (CR/LF would split the header)."""
    return all(c == "\t" or 0x20 <= ord(c) <= 0xFF and ord(c) != 0x7F for c in value)

"""One incoming S3 request as the handlers see it: the wire view, its id, its raw body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from gateway.s3 import errors as s3e
from gateway.s3.sigv4 import HttpRequestView

__all__ = ["MAX_USER_METADATA_BYTES", "S3Call", "user_metadata"]

MAX_USER_METADATA_BYTES = 2048
_META_PREFIX = "x-amz-meta-"


@dataclass(frozen=True)
class S3Call:
    view: HttpRequestView
    request_id: str
    body: AsyncIterator[bytes]

    @property
    def headers(self) -> Mapping[str, str]:
        return self.view.headers

    @property
    def resource(self) -> str:
        return self.view.raw_path


def _text(value: str) -> str:
    """A header value (its bytes, one character each) as the text the client meant: UTF-8
    when the bytes are UTF-8 (the AWS SDKs send non-ASCII metadata so), else as read."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` headers (names lower-cased, prefix removed, values decoded as UTF-8
    where they are), at most 2 KiB in all."""
    meta = {
        name[len(_META_PREFIX) :]: _text(value)
        for name, value in headers.items()
        if name.startswith(_META_PREFIX)
    }
    total = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if total > MAX_USER_METADATA_BYTES:
        raise s3e.MetadataTooLarge(
            f"Your metadata headers are {total} bytes; the limit is {MAX_USER_METADATA_BYTES}."
        )
    return meta

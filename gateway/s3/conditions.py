"""Conditional request headers, parsed once for every handler that honours them.

Writes (PutObject, CompleteMultipartUpload, CopyObject's target) take ``If-Match`` /
``If-None-Match: *``; the check itself runs in the commit transaction under the key's row
lock (``schema.records.WriteCondition``), so racing conditional writes cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.s3 import errors as s3e
from schema.records import WriteCondition

__all__ = ["write_condition"]


def write_condition(headers: Mapping[str, str]) -> WriteCondition | None:
    """The write precondition of a request, None when it has none. S3 takes only ``*`` in
    ``If-None-Match`` on a write; anything else there is NotImplemented."""
    if_match = headers.get("if-match")
    if_none_match = headers.get("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    if if_none_match is not None and if_none_match.strip() != "*":
        raise s3e.NotImplemented("If-None-Match on a write takes only *")
    if if_match is not None and not if_match.strip():
        raise s3e.InvalidArgument("If-Match must name an ETag")
    return WriteCondition(if_match=if_match, if_none_match=if_none_match)

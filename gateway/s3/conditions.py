"""Conditional request headers, parsed once for every handler that honours them.

Writes (PutObject, CompleteMultipartUpload, CopyObject's target) take ``If-Match`` and
``If-None-Match`` with RFC 9110 semantics: ``*`` or a comma-separated list of ETags in either.
The check itself runs in the commit transaction under the key's row lock
(``schema.records.WriteCondition``), so racing conditional writes cannot both win. An empty
header names nothing and is refused (400) rather than read as "no condition".
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.s3 import errors as s3e
from schema.records import WriteCondition

__all__ = ["write_condition"]


def write_condition(headers: Mapping[str, str]) -> WriteCondition | None:
    """The write precondition of a request, None when it has none."""
    if_match = headers.get("if-match")
    if_none_match = headers.get("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    for name, value in (("If-Match", if_match), ("If-None-Match", if_none_match)):
        if value is not None and not value.replace(",", "").strip():
            raise s3e.InvalidArgument(f"{name} must name * or at least one ETag")
    return WriteCondition(if_match=if_match, if_none_match=if_none_match)

"""The copy-source headers of CopyObject and UploadPartCopy: ``x-amz-copy-source-if-*``
preconditions on the source version, and ``x-amz-copy-source-range``.

The preconditions follow the rules of a conditional GET of the source, except that a copy has
no 304: any condition that does not hold is 412 PreconditionFailed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.wire_numbers import INT64_MAX, parse_decimal
from gateway.s3 import errors as s3e
from gateway.s3.preconditions import Outcome, evaluate
from schema.records import ObjectVersion

__all__ = ["check_copy_source_conditions", "copy_range"]

_COPY_SOURCE_CONDITIONS = {
    "x-amz-copy-source-if-match": "if-match",
    "x-amz-copy-source-if-none-match": "if-none-match",
    "x-amz-copy-source-if-modified-since": "if-modified-since",
    "x-amz-copy-source-if-unmodified-since": "if-unmodified-since",
}
_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def check_copy_source_conditions(headers: Mapping[str, str], source: ObjectVersion) -> None:
    """``x-amz-copy-source-if-*`` on ``source``; PreconditionFailed when one does not hold."""
    conditions = {
        plain: headers[name] for name, plain in _COPY_SOURCE_CONDITIONS.items() if name in headers
    }
    if conditions and evaluate(conditions, source.etag, source.created_at) is not Outcome.PROCEED:
        raise s3e.PreconditionFailed("a copy source precondition (x-amz-copy-source-if-*) failed")


def copy_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) inclusive of ``x-amz-copy-source-range``; the whole source without it."""
    if header is None:
        return 0, size - 1
    match = _COPY_RANGE.match(header.strip())
    if not match:
        raise s3e.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first"
            " and last are the zero-based offsets of the first and last bytes to copy"
        )
    first = parse_decimal(match.group(1), maximum=INT64_MAX)
    last = parse_decimal(match.group(2), maximum=INT64_MAX)
    if first is None or last is None:
        raise s3e.InvalidArgument("The x-amz-copy-source-range names a byte position beyond 2^63-1")
    if first > last or last >= size:
        raise s3e.InvalidRange(
            f"The x-amz-copy-source-range {header.strip()} is not satisfiable (source size {size})"
        )
    return first, last

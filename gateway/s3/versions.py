"""Version ids on the wire: which ids a client may name, and the ``x-amz-version-id`` a
response carries.

Our ids are 32 lower-case hex digits (``actors.writes.new_version_id``); ``null`` names a
key's null version, as S3 does. A malformed id is refused before any lookup (the handler
decides which error that is: NoSuchVersion on a read, InvalidArgument on a delete).
"""

from __future__ import annotations

import re

from schema.records import Bucket, ObjectVersion

__all__ = ["is_version_id", "version_headers", "written_version_headers"]

_VERSION_ID = re.compile(r"^[0-9a-f]{32}$")


def is_version_id(value: str) -> bool:
    """Whether a client-supplied version id is well-formed (``null`` or one of ours)."""
    return value == "null" or _VERSION_ID.match(value) is not None


def version_headers(bucket: Bucket, version: ObjectVersion) -> dict[str, str]:
    """``x-amz-version-id`` of a response when the bucket's versioning was ever turned on
    (enabled or suspended: then it may be ``null``)."""
    if bucket.versioning == "Unversioned":
        return {}
    return {"x-amz-version-id": version.api_version_id}


def written_version_headers(version: ObjectVersion) -> dict[str, str]:
    """``x-amz-version-id`` of a write's answer: the new version's id, none for the null
    version (unversioned and suspended buckets)."""
    if version.api_version_id == "null":
        return {}
    return {"x-amz-version-id": version.api_version_id}

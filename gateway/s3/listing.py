"""Listing cursors shared by ListObjects, ListObjectVersions and ListMultipartUploads.

With a delimiter, a listing returns each common prefix once and then *seeks* past it instead
of reading every key below it: a prefix with a million keys costs one query, not a million
rows. ``past_prefix`` is where such a seek resumes; ``is_prefix_marker`` says whether a
marker a client sent back names a common prefix (resume past it) rather than a key.
"""

from __future__ import annotations

__all__ = ["is_prefix_marker", "past_prefix"]


def past_prefix(common_prefix: str) -> str:
    """The smallest string greater than every string that starts with ``common_prefix``."""
    last = ord(common_prefix[-1])
    if last >= 0x10FFFF:
        return common_prefix + "\U0010ffff"
    return common_prefix[:-1] + chr(last + 1)


def is_prefix_marker(marker: str, prefix: str, delimiter: str) -> bool:
    """Whether ``marker`` is a common prefix of this listing (ends with the delimiter, under
    the prefix and longer than it), as a listing returned it as its next marker."""
    return (
        bool(delimiter)
        and marker.endswith(delimiter)
        and marker.startswith(prefix)
        and len(marker) > len(prefix)
    )

"""ETag lists as HTTP conditional headers carry them (If-Match, If-None-Match and the
x-amz-copy-source-if-* forms): one comparison for reads and writes alike."""

from __future__ import annotations

__all__ = ["etag_matches"]


def _tag(raw: str) -> str:
    tag = raw.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip().strip('"')


def etag_matches(header: str, etag: str) -> bool:
    """Whether a comma-separated ETag list (quoted or not, weak or not, ``*`` for any) names
    ``etag``."""
    wanted = _tag(etag)
    for item in header.split(","):
        tag = _tag(item)
        if tag == "*" or (tag and tag == wanted):
            return True
    return False

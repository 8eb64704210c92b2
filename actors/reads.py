"""Reading an object: which stored version a read addresses, and its verified bytes.

The latest version comes through the Redis-cached reader; a version named by id from
PostgreSQL (a client naming an old version reads what is committed, not a cached view). The
bytes always come through the verified reader (``actors/verified_reader.py``): every stored
piece is checked against its SHA-256 before a byte of it is passed on. Delete markers are
returned as they are: what a marker means (404, 405, a header) is the protocol's business.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from actors.data_path import DataPath
from core.errors import NoSuchKey
from schema.records import Bucket, ObjectVersion

__all__ = ["current_version", "latest_or_404", "named_version", "stream_version"]


async def current_version(ctx: DataPath, bucket: Bucket, key: str) -> ObjectVersion | None:
    """The key's latest version (a delete marker too), None when it has none."""
    return await ctx.meta.latest(bucket.id, key)


async def latest_or_404(ctx: DataPath, bucket: Bucket, key: str) -> ObjectVersion:
    """The key's latest version; NoSuchKey when it has none or it is a delete marker."""
    version = await ctx.meta.latest(bucket.id, key)
    if version is None or version.is_delete_marker:
        raise NoSuchKey()
    return version


async def named_version(
    ctx: DataPath, bucket: Bucket, key: str, version_id: str
) -> ObjectVersion | None:
    """The version (or delete marker) ``version_id`` names (``null``: the null version)."""
    async with ctx.store.db.connection() as conn:
        return await ctx.store.versions.get_version(conn, bucket.id, key, version_id)


async def stream_version(
    ctx: DataPath, version: ObjectVersion, rng: tuple[int, int] | None
) -> AsyncIterator[bytes]:
    """Verified bytes, with the first chunk already fetched (errors raise here, not mid-body)."""
    first, last = rng if rng is not None else (0, version.size - 1)
    source = ctx.reader.stream(version, first, last)
    try:
        head = await source.__anext__()
    except StopAsyncIteration:
        head = b""

    async def rest() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in source:
            yield chunk

    return rest()

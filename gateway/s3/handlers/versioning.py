"""PutBucketVersioning, GetBucketVersioning and ListObjectVersions.

A bucket starts ``Unversioned``; PutBucketVersioning moves it to ``Enabled`` or ``Suspended``
(never back), audited in the transaction that changes it, and the cached bucket record is
invalidated after the commit. What versioning means for writes and deletes lives in
``schema/versions.py`` (``commit_version``, ``delete_current``, ``delete_version``).

ListObjectVersions returns versions and delete markers by key (UTF-8 byte order) and newest
first within a key (commit order), with prefix, delimiter (common prefixes are seeked past,
``gateway/s3/listing.py``), ``key-marker`` / ``version-id-marker`` (resume after that
version) and ``max-keys``; every version and every common prefix counts towards ``max-keys``.
"""

from __future__ import annotations

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import read_small_body
from gateway.s3.call import S3Call
from gateway.s3.listing import is_prefix_marker, past_prefix
from gateway.s3.operations import GetBucketVersioning, ListObjectVersions, PutBucketVersioning
from gateway.s3.versioning_xml import (
    list_versions_document,
    parse_versioning_configuration,
    versioning_document,
)
from gateway.s3.versions import is_version_id
from schema.listing import ListedVersion

__all__ = ["get_bucket_versioning", "list_object_versions", "put_bucket_versioning"]

_XML = "application/xml"
_BATCH = 1000
#: A VersioningConfiguration is a few hundred bytes.
_MAX_CONFIG_BYTES = 64 * 1024


async def put_bucket_versioning(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, PutBucketVersioning) and auth.bucket is not None
    principal = auth.principal
    document = await read_small_body(call.body, principal.verified, call.headers, _MAX_CONFIG_BYTES)
    status = parse_versioning_configuration(document)
    async with ctx.store.db.transaction() as conn:
        before, after = await ctx.store.buckets.set_versioning(
            conn, principal.tenant_id, op.bucket, status
        )
        await ctx.store.audit.append(
            conn,
            auth.caller(call.request_id).entry(
                "PutBucketVersioning", op.bucket, f"ok {before.versioning} -> {after.versioning}"
            ),
        )
    await ctx.meta.invalidate_bucket(principal.tenant_id, op.bucket)
    return Response(status_code=200)


async def get_bucket_versioning(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, GetBucketVersioning)
    # From PostgreSQL, not the cache: a client that just changed it reads its own write.
    async with ctx.store.db.connection() as conn:
        bucket = await ctx.store.buckets.get(conn, auth.principal.tenant_id, op.bucket)
    return Response(versioning_document(bucket.versioning), media_type=_XML)


async def list_object_versions(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListObjectVersions) and auth.bucket is not None
    bucket = auth.bucket
    prefix, delimiter = op.prefix, op.delimiter
    if op.version_id_marker and not op.key_marker:
        raise s3e.InvalidArgument("A version-id marker cannot be specified without a key marker.")
    if op.version_id_marker and not is_version_id(op.version_id_marker):
        raise s3e.InvalidArgument("Invalid version id specified")

    entries: list[ListedVersion] = []
    prefixes: list[str] = []
    truncated = False
    last: ListedVersion | str | None = None
    async with ctx.store.db.connection() as conn:
        # Where to start: after a key, after one version of a key, or past a common prefix.
        cursor, inclusive, before_pk = "", False, None
        if op.key_marker and op.version_id_marker:
            before_pk = await ctx.store.listing.version_position(
                conn, bucket.id, op.key_marker, op.version_id_marker
            )
            cursor = op.key_marker
        elif is_prefix_marker(op.key_marker, prefix, delimiter):
            cursor, inclusive = past_prefix(op.key_marker), True
        else:
            cursor = op.key_marker
        while op.max_keys and not truncated:  # max-keys=0: nothing, not truncated
            batch = await ctx.store.listing.list_versions(
                conn,
                bucket.id,
                prefix=prefix,
                after_key=cursor,
                inclusive=inclusive,
                before_pk=before_pk,
                limit=_BATCH,
            )
            seek = None
            for item in batch:
                if len(entries) + len(prefixes) >= op.max_keys:
                    truncated = True
                    break
                rest = item.key[len(prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if cut >= 0:
                    common = prefix + rest[: cut + len(delimiter)]
                    prefixes.append(common)
                    last = common
                    seek = past_prefix(common)
                    break
                entries.append(item)
                last = item
                cursor, inclusive, before_pk = item.key, False, item.pk
            if seek is not None:
                cursor, inclusive, before_pk = seek, True, None
            elif len(batch) < _BATCH:
                break
    next_key = next_version = None
    if truncated and isinstance(last, ListedVersion):
        next_key, next_version = last.key, last.version_id
    elif truncated and isinstance(last, str):
        next_key = last
    body = list_versions_document(
        bucket=bucket.name,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=op.key_marker,
        version_id_marker=op.version_id_marker,
        max_keys=op.max_keys,
        is_truncated=truncated,
        next_key_marker=next_key,
        next_version_id_marker=next_version,
        entries=entries,
        common_prefixes=prefixes,
        encoding_type=op.encoding_type,
        owner=auth.principal.tenant_name,
    )
    return Response(body, media_type=_XML)

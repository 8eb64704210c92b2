"""ListObjects (v1) and ListObjectsV2 with prefix, delimiter, markers and continuation tokens.

Keys are listed in UTF-8 byte order (the key column uses the C collation, as S3 does). With a
delimiter, each common prefix is returned once and the listing then seeks past it
(``gateway/s3/listing.py``). Continuation tokens are opaque: base64 of what was returned
last (a key or a prefix).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.call import S3Call
from gateway.s3.listing import is_prefix_marker, past_prefix
from gateway.s3.operations import ListObjects
from schema.listing import ListedObject

__all__ = ["list_objects"]

_BATCH = 1000


def _encode_token(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _decode_token(token: str) -> tuple[str, str]:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise s3e.InvalidArgument("The continuation token provided is incorrect") from exc
    if kind not in ("k", "p"):
        raise s3e.InvalidArgument("The continuation token provided is incorrect")
    return kind, value


async def list_objects(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, ListObjects) and auth.bucket is not None
    prefix, delimiter = op.prefix, op.delimiter
    # Where to start: a key already returned, or a common prefix already returned.
    cursor, inclusive = "", False
    if op.v2 and op.continuation_token:
        kind, value = _decode_token(op.continuation_token)
    elif op.v2:
        kind, value = "k", op.start_after
    else:
        kind, value = "k", op.marker
        if is_prefix_marker(value, prefix, delimiter):
            kind = "p"
    if value:
        if kind == "p":
            cursor, inclusive = past_prefix(value), True
        else:
            cursor = value

    contents: list[ListedObject] = []
    prefixes: list[str] = []
    truncated = False
    last_kind, last_value = "k", ""
    exhausted = False
    async with ctx.store.db.connection() as conn:
        # max-keys=0 lists nothing and is not truncated, as S3 answers it.
        while op.max_keys and not exhausted and not truncated:
            batch = await ctx.store.listing.list_latest(
                conn, auth.bucket.id, prefix=prefix, after=cursor, limit=_BATCH, inclusive=inclusive
            )
            if len(batch) < _BATCH:
                exhausted = True
            seek = None
            for item in batch:
                rest = item.key[len(prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if len(contents) + len(prefixes) >= op.max_keys:
                    truncated = True
                    break
                if cut >= 0:
                    common = prefix + rest[: cut + len(delimiter)]
                    prefixes.append(common)
                    last_kind, last_value = "p", common
                    seek = past_prefix(common)
                    break
                contents.append(item)
                last_kind, last_value = "k", item.key
                cursor, inclusive = item.key, False
            if seek is not None:
                cursor, inclusive = seek, True
                exhausted = False
    next_token = _encode_token(last_kind, last_value) if truncated and op.v2 else None
    body = xml.list_objects_document(
        bucket=auth.bucket.name,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=op.max_keys,
        is_truncated=truncated,
        contents=[(o.key, o.last_modified, o.etag, o.size) for o in contents],
        common_prefixes=prefixes,
        encoding_type=op.encoding_type,
        v2=op.v2,
        continuation_token=op.continuation_token,
        next_continuation_token=next_token,
        start_after=op.start_after if op.v2 else None,
        marker=op.marker,
        next_marker=last_value if truncated and not op.v2 and delimiter else None,
        owner=auth.principal.tenant_name if (op.fetch_owner or not op.v2) else None,
    )
    return Response(body, media_type="application/xml")

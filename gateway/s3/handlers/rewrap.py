"""Key rotation without moving data: swap the wrapped data key of objects (issue: client-side
encryption). ``POST /{bucket}/{key}?rewrap`` re-wraps one object, ``POST /{bucket}?rewrap`` a
batch of up to 1000 in one transaction. Each item names the key id and version it expects to
replace (a precondition, so two rotations cannot interleave), and the new wrapped key.
``expect_content_id`` (optional, recommended) also pins the object version the new wrap was
made for: without it, an object overwritten under the same key id between the client's header
read and its rewrap would get a wrap made for the old header. The previous entry goes to
history, an audit entry is written, no backend is touched.

Versions: without a version id the key's current version is re-wrapped. The single form takes
``?versionId=ID``, a batch item ``"version_id": "ID"`` (``"null"``: the null version, as S3
names it), and then that version is re-wrapped, current or noncurrent: a rotation must reach
every version, or the noncurrent ones become unreadable once the old private key is retired.
An unknown or malformed version id, or one naming a delete marker, is ``NoSuchVersion`` (404).
The results name the version re-wrapped (``version_id``).

Request (JSON; the batch form wraps items in ``{"items": [...]}``, each with a ``"key"`` and
optionally a ``"version_id"``)::

    {"expect_key_id": "bp:...", "expect_key_version": 1, "expect_content_id": "<32 hex>",
     "wrapped_key": "<base64>", "key_id": "bp:...", "key_version": 2,
     "wrap_alg": "x25519-hkdf-aes256gcm"}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from core.envelope import KEY_VERSION_MAX, Envelope
from core.errors import BulletproofError, NoSuchKey
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import read_json
from gateway.s3.call import S3Call
from gateway.s3.errors import to_s3_error
from gateway.s3.operations import RewrapObject, RewrapObjects
from gateway.s3.versions import is_version_id
from gateway.s3.wrapped_keys import wrapped_key_fields
from schema.audit import AuditEntry
from schema.wrapped_keys import Rewrap

__all__ = ["rewrap_object", "rewrap_objects"]

MAX_BATCH = 1000
_ERRORS_BY_CODE: dict[str, type[s3e.S3Error]] = {
    "PreconditionFailed": s3e.PreconditionFailed,
    "NoSuchKey": s3e.NoSuchKey,
    "NoSuchVersion": s3e.NoSuchVersion,
}
#: The longest version id a request may name (as ``versionId`` on GET/DELETE).
MAX_VERSION_ID = 128
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class _Item:
    key: str
    expect_key_id: str
    expect_key_version: int
    expect_content_id: str | None
    envelope: Envelope
    #: The version to re-wrap (``null``: the null version); None: the current version.
    version_id: str | None = None


def _version_field(raw: dict[str, Any]) -> str | None:
    if "version_id" not in raw:
        return None
    value = raw["version_id"]
    if not isinstance(value, str) or not value or len(value) > MAX_VERSION_ID:
        raise s3e.InvalidRequest(
            "'version_id' must be a version id string (\"null\" names the null version);"
            " leave it out to re-wrap the current version"
        )
    return value


def _item(raw: Any, *, need_key: bool) -> _Item:
    if not isinstance(raw, dict):
        raise s3e.InvalidRequest("each rewrap item must be a JSON object")
    key = raw.get("key", "")
    if need_key and (not isinstance(key, str) or not key):
        raise s3e.InvalidRequest("each batch item needs a 'key'")
    expect_id, expect_version = raw.get("expect_key_id"), raw.get("expect_key_version")
    if (
        not isinstance(expect_id, str)
        or not isinstance(expect_version, int)
        or isinstance(expect_version, bool)
    ):
        raise s3e.InvalidRequest(
            "'expect_key_id' (string) and 'expect_key_version' (integer) are required"
        )
    if not 0 <= expect_version <= KEY_VERSION_MAX:  # an INTEGER column is compared with it
        raise s3e.InvalidRequest(f"'expect_key_version' must be between 0 and {KEY_VERSION_MAX}")
    content_id = raw.get("expect_content_id")
    if content_id is not None and not isinstance(content_id, str):
        raise s3e.InvalidRequest("'expect_content_id' must be a string")
    version_id = _version_field(raw)
    if not need_key and version_id is not None:
        raise s3e.InvalidRequest(
            "the single form names its version in the query (?rewrap&versionId=ID), not in"
            " the document"
        )
    return _Item(key, expect_id, expect_version, content_id, wrapped_key_fields(raw), version_id)


def _failure(item: _Item, exc: BulletproofError) -> s3e.S3Error:
    """The S3 error for an item that was refused: a version named but not found (or a delete
    marker) is NoSuchVersion, as for GET ``?versionId``."""
    err = to_s3_error(exc)
    if item.version_id is not None and isinstance(err, s3e.NoSuchKey):
        return s3e.NoSuchVersion(err.message)
    return err


async def _document(call: S3Call, auth: Authorized) -> Any:
    return await read_json(call.body, auth.principal.verified, call.headers, MAX_BODY)


async def _apply(
    ctx: GatewayContext, auth: Authorized, call: S3Call, items: list[_Item]
) -> list[dict[str, Any]]:
    """Apply every item in one transaction; per-item failures are reported, not raised.

    One batch of statements for all items (``WrappedKeyRepository.rewrap_many``), the audit
    entries appended together at the end, the cache entries invalidated in one Redis pipeline
    after the commit: the cost per item is Python, not round trips."""
    bucket, caller = auth.bucket, auth.caller(call.request_id)
    assert bucket is not None
    # A malformed version id names no version: refused here, never looked up.
    valid = [i.version_id is None or is_version_id(i.version_id) for i in items]
    requests = [
        Rewrap(
            key=item.key,
            expect_key_id=item.expect_key_id,
            expect_key_version=item.expect_key_version,
            expect_content_id=item.expect_content_id,
            wrapped_key=item.envelope.wrapped_key,
            key_id=item.envelope.key_id,
            key_version=item.envelope.key_version,
            wrap_alg=item.envelope.wrap_alg,
            version_id=item.version_id,
        )
        for item, ok in zip(items, valid, strict=True)
        if ok
    ]
    results: list[dict[str, Any]] = []
    entries: list[AuditEntry] = []
    async with ctx.store.db.transaction() as conn:
        applied = iter(await ctx.store.wrapped_keys.rewrap_many(conn, bucket.id, requests))
        for item, ok in zip(items, valid, strict=True):
            env = item.envelope
            named = {} if item.version_id is None else {"version_id": item.version_id}
            outcome = (
                next(applied)
                if ok
                else NoSuchKey(f"no version {item.version_id!r} of {item.key!r}")
            )
            if isinstance(outcome, BulletproofError):
                err = _failure(item, outcome)
                results.append(
                    {"key": item.key, **named, "status": err.code, "message": err.message}
                )
                continue
            results.append({"key": item.key, "version_id": outcome, "status": "ok"})
            entries.append(
                caller.entry(
                    "RewrapObject",
                    f"{bucket.name}/{item.key}",
                    f"ok {item.expect_key_id} v{item.expect_key_version}"
                    f" -> {env.key_id} v{env.key_version}"
                    f" (version {outcome})",
                )
            )
        # last, so the tenant's chain head is held only from here to the commit
        await ctx.store.audit.append_many(conn, entries)
    done = zip(items, results, strict=True)
    changed = sorted({item.key for item, result in done if result["status"] == "ok"})
    await ctx.meta.invalidate_objects(bucket.id, changed)
    return results


async def rewrap_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, RewrapObject)
    item = _item(await _document(call, auth), need_key=False)
    [result] = await _apply(ctx, auth, call, [replace(item, key=op.key, version_id=op.version_id)])
    if result["status"] != "ok":
        raise _ERRORS_BY_CODE.get(result["status"], s3e.InvalidRequest)(result["message"])
    return JSONResponse(result)


async def rewrap_objects(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    assert isinstance(auth.op, RewrapObjects)
    document = await _document(call, auth)
    raw_items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(raw_items, list) or not 1 <= len(raw_items) <= MAX_BATCH:
        raise s3e.InvalidRequest(f"'items' must be a list of 1..{MAX_BATCH} rewrap items")
    items = [_item(raw, need_key=True) for raw in raw_items]
    return JSONResponse({"results": await _apply(ctx, auth, call, items)})

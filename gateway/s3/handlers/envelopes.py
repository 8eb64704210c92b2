"""``POST /{bucket}?envelopes``: the envelope and BP1 header of up to 1,000 versions at once,
the read side of ``bp rotate`` (issue 16, P9).

Before this, rotation read each version's 112-byte header with a ranged GET (a verified read
from a backend per object, ~70 objects/s). The header is now recorded with the version at its
commit (migration 0022), so one request answers for a batch from PostgreSQL alone. Nothing is
vouched for: the header is ciphertext metadata the client checks itself (structure, binding to
tenant, bucket, key and content id, key commitment) before it wraps a data key against it.

Request (JSON)::

    {"items": [{"key": "a/b"}, {"key": "c", "version_id": "<id>" | "null"}, ...]}

Answer, one result per item in order::

    {"results": [{"key": "a/b", "version_id": "null", "status": "ok", "encrypted": true,
                  "metadata": {"x-amz-meta-bp-wrapped-key": "...", ...},
                  "header": "<base64 of 112 bytes>" | null}, ...]}

``metadata`` holds the envelope as a GET's ``x-amz-meta-bp-*`` response headers would (empty
for plaintext); ``header`` is null for a version committed before migration 0022 (read it from
the object). A missing key is ``"status": "NoSuchKey"``, a missing version (or a delete
marker, or a malformed version id) ``"NoSuchVersion"``: per-item results, not errors. A
malformed document or more than 1,000 items is refused whole (``400 InvalidRequest``).
Authorization resolved the bucket inside the caller's tenant, so another tenant's bucket is
``NoSuchBucket`` and its versions cannot be named at all.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from core.envelope import Envelope
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.body import read_json
from gateway.s3.call import S3Call
from gateway.s3.operations import GetEnvelopes
from gateway.s3.versions import is_version_id
from schema.wrapped_keys import VersionEnvelope

__all__ = ["MAX_ITEMS", "get_envelopes"]

#: Versions per request (as a ``?rewrap`` batch and a listing page).
MAX_ITEMS = 1000
#: The longest key S3 allows, in bytes, and the longest version id a request may name.
_MAX_KEY_BYTES = 1024
_MAX_VERSION_ID = 128
_MAX_BODY = 2 * 1024 * 1024


def _utf8(text: str) -> bytes:
    """The UTF-8 of ``text``, or nothing for a lone surrogate (JSON can carry one; a key
    cannot be one)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return b""


def _ref(raw: Any) -> tuple[str, str | None]:
    if not isinstance(raw, dict):
        raise s3e.InvalidRequest("each envelopes item must be a JSON object")
    key, version_id = raw.get("key"), raw.get("version_id")
    if not isinstance(key, str) or not 1 <= len(_utf8(key)) <= _MAX_KEY_BYTES or "\x00" in key:
        raise s3e.InvalidRequest(
            f"each item needs a 'key' of 1..{_MAX_KEY_BYTES} bytes of UTF-8 without NUL"
        )
    if version_id is not None and (
        not isinstance(version_id, str) or not version_id or len(version_id) > _MAX_VERSION_ID
    ):
        raise s3e.InvalidRequest(
            "'version_id' must be a version id string (\"null\" names the null version);"
            " leave it out for the current version"
        )
    return key, version_id


def _result(ref: tuple[str, str | None], found: VersionEnvelope | None) -> dict[str, Any]:
    key, version_id = ref
    if found is None:
        if version_id is None:
            return {"key": key, "status": "NoSuchKey", "message": f"no object {key!r}"}
        return {
            "key": key,
            "version_id": version_id,
            "status": "NoSuchVersion",
            "message": f"no version {version_id!r} of {key!r}",
        }
    metadata: dict[str, str] = {}
    if found.encrypted and found.wrapped_key is not None:
        envelope = Envelope(
            wrapped_key=found.wrapped_key,
            key_id=found.key_id or "",
            key_version=found.key_version or 0,
            wrap_alg=found.wrap_alg or "",
            content_id=found.content_id,
        )
        metadata = {f"x-amz-meta-{k}": v for k, v in envelope.as_metadata().items()}
    header = found.bp1_header
    return {
        "key": key,
        "version_id": found.version_id,
        "status": "ok",
        "encrypted": found.encrypted,
        "metadata": metadata,
        "header": base64.b64encode(header).decode() if header is not None else None,
    }


async def get_envelopes(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    assert isinstance(auth.op, GetEnvelopes) and auth.bucket is not None
    document = await read_json(call.body, auth.principal.verified, call.headers, _MAX_BODY)
    raw_items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(raw_items, list) or not 1 <= len(raw_items) <= MAX_ITEMS:
        raise s3e.InvalidRequest(f"'items' must be a list of 1..{MAX_ITEMS} versions")
    refs = [_ref(raw) for raw in raw_items]
    # A malformed version id cannot name a version: looked up as none (NoSuchVersion).
    lookups = [(k, v if v is None or is_version_id(v) else "") for k, v in refs]
    async with ctx.store.db.connection() as conn:
        found = await ctx.store.wrapped_keys.envelopes(conn, auth.bucket.id, lookups)
    return JSONResponse({"results": [_result(r, f) for r, f in zip(refs, found, strict=True)]})

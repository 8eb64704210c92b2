"""Every S3 request becomes one operation from a closed set before anything else happens.

Parsing is pure (method, raw path, query, headers in; a frozen dataclass or an S3 error out),
so routing and validation are tested without HTTP. Authorization then runs once on the typed
operation (``gateway/auth.py``), and the handler for its family runs after that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.s3 import errors as s3e

__all__ = [
    "BucketOp",
    "CreateBucket",
    "DeleteBucket",
    "DeleteObject",
    "GetBucketLocation",
    "GetObject",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListKeys",
    "ListObjects",
    "ListRecipients",
    "ObjectOp",
    "Operation",
    "PublishKey",
    "PutObject",
    "RewrapObject",
    "RewrapObjects",
    "ShareObject",
    "RESERVED_BUCKET_NAMES",
    "parse_operation",
    "validate_bucket_name",
]

MAX_KEY_BYTES = 1024
RESERVED_BUCKET_NAMES = frozenset(
    {"admin", "objects", "health", "metrics", "import", "ui", "static"}
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")

# Subresources we know but do not serve: a clear 501 instead of silently acting on the object.
_UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "acl",
        "analytics",
        "accelerate",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "uploads",
        "uploadId",
        "versioning",
        "versions",
        "versionId",
        "website",
        "attributes",
        "delete",
        "partNumber",
    }
)


@dataclass(frozen=True)
class ListBuckets:
    pass


@dataclass(frozen=True)
class BucketOp:
    bucket: str


@dataclass(frozen=True)
class CreateBucket(BucketOp):
    pass


@dataclass(frozen=True)
class HeadBucket(BucketOp):
    pass


@dataclass(frozen=True)
class DeleteBucket(BucketOp):
    pass


@dataclass(frozen=True)
class GetBucketLocation(BucketOp):
    pass


@dataclass(frozen=True)
class ListObjects(BucketOp):
    v2: bool
    prefix: str
    delimiter: str
    max_keys: int
    continuation_token: str | None
    start_after: str
    marker: str
    encoding_type: str | None
    fetch_owner: bool


@dataclass(frozen=True)
class ObjectOp:
    bucket: str
    key: str


@dataclass(frozen=True)
class PutObject(ObjectOp):
    pass


@dataclass(frozen=True)
class GetObject(ObjectOp):
    range_header: str | None


@dataclass(frozen=True)
class HeadObject(ObjectOp):
    range_header: str | None


@dataclass(frozen=True)
class DeleteObject(ObjectOp):
    pass


@dataclass(frozen=True)
class RewrapObject(ObjectOp):
    """Bulletproof extension: swap an object's wrapped data key (metadata only)."""


@dataclass(frozen=True)
class ShareObject(ObjectOp):
    """Bulletproof extension: add a recipient (the data key wrapped for another public key)."""


@dataclass(frozen=True)
class ListRecipients(ObjectOp):
    """Bulletproof extension: every wrapped data key of an object (primary and shared)."""


@dataclass(frozen=True)
class PublishKey:
    """Bulletproof extension: register a tenant public key (imports encrypt to it)."""


@dataclass(frozen=True)
class ListKeys:
    """Bulletproof extension: the tenant's published public keys."""


@dataclass(frozen=True)
class RewrapObjects(BucketOp):
    """Bulletproof extension: the batch form of RewrapObject, for fast key rotation."""


Operation = (
    ListBuckets
    | CreateBucket
    | HeadBucket
    | DeleteBucket
    | GetBucketLocation
    | ListObjects
    | PutObject
    | GetObject
    | HeadObject
    | DeleteObject
    | RewrapObject
    | RewrapObjects
    | ShareObject
    | ListRecipients
    | PublishKey
    | ListKeys
)


def validate_bucket_name(name: str) -> str:
    if not _BUCKET.match(name) or ".." in name or _IP.match(name) or name in RESERVED_BUCKET_NAMES:
        raise s3e.InvalidBucketName(f"The specified bucket is not valid: {name!r}")
    return name


def _decode_key(raw: str) -> str:
    try:
        key = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise s3e.InvalidArgument("Object key is not valid UTF-8") from exc
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise s3e.KeyTooLongError()
    if "\x00" in key:
        raise s3e.InvalidArgument("Object key must not contain NUL")
    return key


def _int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise s3e.InvalidArgument(f"{name} must be an integer between {lo} and {hi}")
    return max(lo, min(hi, int(raw)))


def parse_operation(
    method: str, raw_path: str, query_pairs: Sequence[tuple[str, str]], headers: Mapping[str, str]
) -> Operation:
    """Map a path-style request to its operation; S3 errors for anything malformed."""
    query = dict(query_pairs)
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise s3e.InvalidRequest("Request path must start with /")
    bucket_raw, _, key_raw = path[1:].partition("/")
    bucket = unquote(bucket_raw)
    for name in query:
        if name in _UNSUPPORTED_SUBRESOURCES:
            raise s3e.NotImplemented(f"The {name} subresource is not supported by this gateway")
    if not bucket:
        if "publish-key" in query and method == "POST":
            return PublishKey()
        if "keys" in query and method == "GET":
            return ListKeys()
        if method == "GET":
            return ListBuckets()
        raise s3e.MethodNotAllowed()
    validate_bucket_name(bucket)
    if key_raw and "share" in query and method == "POST":
        return ShareObject(bucket, _decode_key(key_raw))
    if key_raw and "recipients" in query and method == "GET":
        return ListRecipients(bucket, _decode_key(key_raw))
    if "rewrap" in query:
        if method != "POST":
            raise s3e.MethodNotAllowed("rewrap takes POST")
        return RewrapObjects(bucket) if not key_raw else RewrapObject(bucket, _decode_key(key_raw))
    if not key_raw:
        if "location" in query and method == "GET":
            return GetBucketLocation(bucket)
        if method == "PUT":
            return CreateBucket(bucket)
        if method == "HEAD":
            return HeadBucket(bucket)
        if method == "DELETE":
            return DeleteBucket(bucket)
        if method == "GET":
            encoding = query.get("encoding-type") or None
            if encoding not in (None, "url"):
                raise s3e.InvalidArgument("Invalid Encoding Method specified in Request")
            v2 = query.get("list-type") == "2"
            if "list-type" in query and not v2:
                raise s3e.InvalidArgument("list-type must be 2")
            return ListObjects(
                bucket=bucket,
                v2=v2,
                prefix=query.get("prefix", ""),
                delimiter=query.get("delimiter", ""),
                max_keys=_int_param(query, "max-keys", 1000, 0, 1000),
                continuation_token=query.get("continuation-token"),
                start_after=query.get("start-after", ""),
                marker=query.get("marker", ""),
                encoding_type=encoding,
                fetch_owner=query.get("fetch-owner") == "true",
            )
        raise s3e.MethodNotAllowed()
    key = _decode_key(key_raw)
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            raise s3e.NotImplemented("CopyObject is not supported yet")
        return PutObject(bucket, key)
    if method == "GET":
        return GetObject(bucket, key, headers.get("range"))
    if method == "HEAD":
        return HeadObject(bucket, key, headers.get("range"))
    if method == "DELETE":
        return DeleteObject(bucket, key)
    raise s3e.MethodNotAllowed()

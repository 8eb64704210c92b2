"""Every S3 request becomes one operation from a closed set before anything else happens.

Parsing is pure (method, raw path, query, headers in; a frozen dataclass or an S3 error out),
so routing and validation are tested without HTTP. Authorization then runs once on the typed
operation (``gateway/auth.py``), and the handler for its family runs after that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from core.wire_numbers import INT32_MAX, parse_decimal
from gateway.s3 import errors as s3e

__all__ = [
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CopySource",
    "CreateMultipartUpload",
    "DeleteObjects",
    "GetAcl",
    "GetBucketVersioning",
    "ListMultipartUploads",
    "ListObjectVersions",
    "ListParts",
    "PutAcl",
    "PutBucketVersioning",
    "UploadPart",
    "UploadPartCopy",
    "BucketOp",
    "CreateBucket",
    "DeleteBucket",
    "DeleteObject",
    "GetBucketLocation",
    "GetObject",
    "GetPlacementProof",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListAuditLog",
    "ListKeys",
    "ListObjects",
    "ListRecipients",
    "ObjectOp",
    "Operation",
    "PublishKey",
    "PutObject",
    "RewrapObject",
    "RewrapObjects",
    "GetEnvelopes",
    "ShareObject",
    "RESERVED_BUCKET_NAMES",
    "list_audit_log_query",
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
        "website",
        "attributes",
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
    version_id: str | None = None
    #: ``?partNumber=N``: that uploaded part of the object (not with a Range).
    part_number: int | None = None


@dataclass(frozen=True)
class HeadObject(ObjectOp):
    range_header: str | None
    version_id: str | None = None
    part_number: int | None = None


@dataclass(frozen=True)
class DeleteObject(ObjectOp):
    version_id: str | None = None


@dataclass(frozen=True)
class CopySource:
    """``x-amz-copy-source``: bucket, key and optional version of the object to copy."""

    bucket: str
    key: str
    version_id: str | None = None


@dataclass(frozen=True)
class CopyObject(ObjectOp):
    source: CopySource


@dataclass(frozen=True)
class CreateMultipartUpload(ObjectOp):
    pass


@dataclass(frozen=True)
class UploadPart(ObjectOp):
    upload_id: str
    part_number: int


@dataclass(frozen=True)
class UploadPartCopy(ObjectOp):
    upload_id: str
    part_number: int
    source: CopySource
    range_header: str | None


@dataclass(frozen=True)
class CompleteMultipartUpload(ObjectOp):
    upload_id: str


@dataclass(frozen=True)
class AbortMultipartUpload(ObjectOp):
    upload_id: str


@dataclass(frozen=True)
class ListParts(ObjectOp):
    upload_id: str
    max_parts: int
    part_number_marker: int


@dataclass(frozen=True)
class ListMultipartUploads(BucketOp):
    prefix: str
    delimiter: str
    key_marker: str
    upload_id_marker: str
    max_uploads: int
    encoding_type: str | None


@dataclass(frozen=True)
class PutBucketVersioning(BucketOp):
    pass


@dataclass(frozen=True)
class GetBucketVersioning(BucketOp):
    pass


@dataclass(frozen=True)
class ListObjectVersions(BucketOp):
    prefix: str
    delimiter: str
    key_marker: str
    version_id_marker: str
    max_keys: int
    encoding_type: str | None


@dataclass(frozen=True)
class DeleteObjects(BucketOp):
    pass


@dataclass(frozen=True)
class GetAcl(BucketOp):
    """GetBucketAcl (``key`` None) or GetObjectAcl: always the owner's private ACL."""

    key: str | None = None


@dataclass(frozen=True)
class PutAcl(BucketOp):
    """PutBucketAcl / PutObjectAcl: only the canned ``private`` ACL is accepted."""

    key: str | None = None


@dataclass(frozen=True)
class RewrapObject(ObjectOp):
    """Bulletproof extension: swap an object's wrapped data key (metadata only); of the
    version ``versionId`` names (``null``: the null version), else of the latest."""

    version_id: str | None = None


@dataclass(frozen=True)
class ShareObject(ObjectOp):
    """Bulletproof extension: add a recipient (the data key wrapped for another public key)."""


@dataclass(frozen=True)
class ListRecipients(ObjectOp):
    """Bulletproof extension: every wrapped data key of an object (primary and shared)."""


@dataclass(frozen=True)
class GetPlacementProof(ObjectOp):
    """Bulletproof extension: the deployment's signed statement of where the pieces of a
    version (``versionId``, else the latest) are (``docs/placement-proof.md``)."""

    version_id: str | None = None


@dataclass(frozen=True)
class PublishKey:
    """Bulletproof extension: register a tenant public key (imports encrypt to it)."""


@dataclass(frozen=True)
class ListKeys:
    """Bulletproof extension: the tenant's published public keys."""


@dataclass(frozen=True)
class ListAuditLog:
    """Bulletproof extension: the tenant's own audit entries (``GET /?bp-audit``), a page at
    a time by global id, filtered by time (``since`` inclusive, ``until`` exclusive) and
    action."""

    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    after_id: int = 0
    limit: int = 1000


@dataclass(frozen=True)
class RewrapObjects(BucketOp):
    """Bulletproof extension: the batch form of RewrapObject, for fast key rotation."""


@dataclass(frozen=True)
class GetEnvelopes(BucketOp):
    """Bulletproof extension: the envelope and stored BP1 header of a batch of versions
    (``POST /{bucket}?envelopes``), the read side of a rotation."""


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
    | GetEnvelopes
    | ShareObject
    | ListRecipients
    | GetPlacementProof
    | PublishKey
    | ListKeys
    | ListAuditLog
    | CopyObject
    | CreateMultipartUpload
    | UploadPart
    | UploadPartCopy
    | CompleteMultipartUpload
    | AbortMultipartUpload
    | ListParts
    | ListMultipartUploads
    | PutBucketVersioning
    | GetBucketVersioning
    | ListObjectVersions
    | DeleteObjects
    | GetAcl
    | PutAcl
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
    """A count parameter (``max-keys``...): a value above ``hi`` is read as ``hi``, as S3 does,
    up to S3's own int32 bound; beyond it (or not decimal) InvalidArgument, never ``int()`` of
    an unbounded string (it raises past 4,300 digits)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_decimal(raw, maximum=INT32_MAX)
    if value is None:
        raise s3e.InvalidArgument(f"{name} must be an integer between {lo} and {INT32_MAX}")
    return max(lo, min(hi, value))


def _text_param(query: Mapping[str, str], name: str) -> str:
    """A text parameter bound for a PostgreSQL text column (prefix, markers, delimiter): NUL
    cannot be stored or compared there, and no key contains one, so it is refused here."""
    value = query.get(name, "")
    if "\x00" in value:
        raise s3e.InvalidArgument(f"{name} must not contain NUL")
    return value


def _encoding(query: Mapping[str, str]) -> str | None:
    encoding = query.get("encoding-type") or None
    if encoding not in (None, "url"):
        raise s3e.InvalidArgument("Invalid Encoding Method specified in Request")
    return encoding


def _version_id(query: Mapping[str, str]) -> str | None:
    if "versionId" not in query:
        return None
    value = query["versionId"]
    if not value or len(value) > 128 or "\x00" in value:
        raise s3e.InvalidArgument("Invalid version id specified")
    return value


def _part_number(query: Mapping[str, str]) -> int:
    number = parse_decimal(query.get("partNumber", ""), maximum=10000)
    if number is None or number < 1:
        raise s3e.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
    return number


def _upload_id(query: Mapping[str, str]) -> str:
    value = query.get("uploadId", "")
    if not value or len(value) > 128 or "\x00" in value:
        raise s3e.NoSuchUpload()
    return value


def parse_copy_source(raw: str) -> CopySource:
    """``x-amz-copy-source``: ``[/]bucket/key[?versionId=id]``, URL-encoded."""
    path, _, query = raw.partition("?")
    path = path[1:] if path.startswith("/") else path
    bucket_raw, _, key_raw = path.partition("/")
    bucket = unquote(bucket_raw)
    if not bucket or not key_raw:
        raise s3e.InvalidArgument("Copy Source must mention the source bucket and key")
    validate_bucket_name(bucket)
    version_id: str | None = None
    if query:
        name, _, value = query.partition("=")
        if name != "versionId" or not value:
            raise s3e.InvalidArgument("Copy Source may only name a versionId")
        version_id = unquote(value)
        if "\x00" in version_id or len(version_id) > 128:
            raise s3e.InvalidArgument("Invalid version id specified in the copy source")
    return CopySource(bucket, _decode_key(key_raw), version_id)


AUDIT_PAGE_MAX = 1000


def _audit_time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw) if len(raw) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise s3e.InvalidArgument(f"{name} must be an ISO 8601 time with a zone, e.g. ...Z")
    return when


def list_audit_log_query(query: Mapping[str, str]) -> ListAuditLog:
    """The paging and filters of an audit read (also the admin's ``/admin/audit/entries``)."""
    token = query.get("page-token") or "0"
    if not token.isascii() or not token.isdigit() or len(token) > 18:
        raise s3e.InvalidArgument("page-token is not one this endpoint returned")
    limit_raw = query.get("max-entries") or str(AUDIT_PAGE_MAX)
    if not limit_raw.isascii() or not limit_raw.isdigit() or len(limit_raw) > 4:
        raise s3e.InvalidArgument(f"max-entries must be an integer 1..{AUDIT_PAGE_MAX}")
    limit = int(limit_raw)
    if not 1 <= limit <= AUDIT_PAGE_MAX:
        raise s3e.InvalidArgument(f"max-entries must be an integer 1..{AUDIT_PAGE_MAX}")
    action = query.get("action") or None
    if action is not None and (len(action) > 64 or not action.isascii() or not action.isalnum()):
        raise s3e.InvalidArgument("action must be an operation name, e.g. GetObject")
    return ListAuditLog(
        since=_audit_time(query, "since"),
        until=_audit_time(query, "until"),
        action=action,
        after_id=int(token),
        limit=limit,
    )


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
        if "bp-audit" in query and method == "GET":
            return list_audit_log_query(query)
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
        if key_raw:
            return RewrapObject(bucket, _decode_key(key_raw), _version_id(query))
        if "versionId" in query:
            raise s3e.InvalidArgument(
                "versionId names a version of one object; batch items carry their own 'version_id'"
            )
        return RewrapObjects(bucket)
    if "envelopes" in query:
        if method != "POST":
            raise s3e.MethodNotAllowed("envelopes takes POST (the versions are in the document)")
        if key_raw:
            raise s3e.InvalidRequest("envelopes is a bucket request: POST /{bucket}?envelopes")
        return GetEnvelopes(bucket)
    if not key_raw:
        if "location" in query and method == "GET":
            return GetBucketLocation(bucket)
        if "versioning" in query:
            if method == "PUT":
                return PutBucketVersioning(bucket)
            if method == "GET":
                return GetBucketVersioning(bucket)
            raise s3e.MethodNotAllowed()
        if "acl" in query:
            if method == "GET":
                return GetAcl(bucket, None)
            if method == "PUT":
                return PutAcl(bucket, None)
            raise s3e.MethodNotAllowed()
        if "delete" in query:
            if method != "POST":
                raise s3e.MethodNotAllowed()
            return DeleteObjects(bucket)
        if "uploads" in query:
            if method != "GET":
                raise s3e.MethodNotAllowed()
            return ListMultipartUploads(
                bucket=bucket,
                prefix=_text_param(query, "prefix"),
                delimiter=_text_param(query, "delimiter"),
                key_marker=_text_param(query, "key-marker"),
                upload_id_marker=_text_param(query, "upload-id-marker"),
                max_uploads=_int_param(query, "max-uploads", 1000, 0, 1000),
                encoding_type=_encoding(query),
            )
        if "versions" in query:
            if method != "GET":
                raise s3e.MethodNotAllowed()
            return ListObjectVersions(
                bucket=bucket,
                prefix=_text_param(query, "prefix"),
                delimiter=_text_param(query, "delimiter"),
                key_marker=_text_param(query, "key-marker"),
                version_id_marker=_text_param(query, "version-id-marker"),
                max_keys=_int_param(query, "max-keys", 1000, 0, 1000),
                encoding_type=_encoding(query),
            )
        if method == "PUT":
            return CreateBucket(bucket)
        if method == "HEAD":
            return HeadBucket(bucket)
        if method == "DELETE":
            return DeleteBucket(bucket)
        if method == "GET":
            encoding = _encoding(query)
            v2 = query.get("list-type") == "2"
            if "list-type" in query and not v2:
                raise s3e.InvalidArgument("list-type must be 2")
            return ListObjects(
                bucket=bucket,
                v2=v2,
                prefix=_text_param(query, "prefix"),
                delimiter=_text_param(query, "delimiter"),
                max_keys=_int_param(query, "max-keys", 1000, 0, 1000),
                continuation_token=query.get("continuation-token"),
                start_after=_text_param(query, "start-after"),
                marker=_text_param(query, "marker"),
                encoding_type=encoding,
                fetch_owner=query.get("fetch-owner") == "true",
            )
        raise s3e.MethodNotAllowed()
    key = _decode_key(key_raw)
    if "placement-proof" in query:
        if method != "GET":
            raise s3e.MethodNotAllowed("placement-proof takes GET")
        return GetPlacementProof(bucket, key, _version_id(query))
    if "acl" in query:
        if method == "GET":
            return GetAcl(bucket, key)
        if method == "PUT":
            return PutAcl(bucket, key)
        raise s3e.MethodNotAllowed()
    if "uploads" in query:
        if method != "POST":
            raise s3e.MethodNotAllowed()
        return CreateMultipartUpload(bucket, key)
    if "uploadId" in query:
        upload_id = _upload_id(query)
        if method == "PUT":
            number = _part_number(query)
            if "x-amz-copy-source" in headers:
                return UploadPartCopy(
                    bucket,
                    key,
                    upload_id,
                    number,
                    parse_copy_source(headers["x-amz-copy-source"]),
                    headers.get("x-amz-copy-source-range"),
                )
            return UploadPart(bucket, key, upload_id, number)
        if method == "POST":
            return CompleteMultipartUpload(bucket, key, upload_id)
        if method == "DELETE":
            return AbortMultipartUpload(bucket, key, upload_id)
        if method == "GET":
            # An INTEGER column holds the part numbers: a marker past 2^31-1 is refused here,
            # not by PostgreSQL (which would answer 500).
            marker = parse_decimal(query.get("part-number-marker", "") or "0", maximum=INT32_MAX)
            if marker is None:
                raise s3e.InvalidArgument(
                    f"part-number-marker must be an integer between 0 and {INT32_MAX}"
                )
            return ListParts(
                bucket,
                key,
                upload_id,
                _int_param(query, "max-parts", 1000, 0, 1000),
                marker,
            )
        raise s3e.MethodNotAllowed()
    version_id = _version_id(query)
    part_number = None
    if "partNumber" in query:
        if method not in ("GET", "HEAD"):
            raise s3e.InvalidArgument("partNumber is valid on GET and HEAD, or with an uploadId")
        part_number = _part_number(query)
        if "range" in headers:
            raise s3e.InvalidRequest(
                "Cannot specify both Range header and partNumber query parameter"
            )
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return CopyObject(bucket, key, parse_copy_source(headers["x-amz-copy-source"]))
        if version_id is not None:
            raise s3e.InvalidArgument("versionId is not valid on PutObject")
        return PutObject(bucket, key)
    if method == "GET":
        return GetObject(bucket, key, headers.get("range"), version_id, part_number)
    if method == "HEAD":
        return HeadObject(bucket, key, headers.get("range"), version_id, part_number)
    if method == "DELETE":
        return DeleteObject(bucket, key, version_id)
    raise s3e.MethodNotAllowed()

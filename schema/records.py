"""Frozen records of the metadata store: what a repository returns, what the cache stores, and
what a write hands to ``schema/versions.py`` (``NewVersion``, ``NewReplica``, ``WriteCondition``).

Records convert to and from plain JSON-able dicts (``to_json`` / ``from_json``) so the Redis
cache and Ray boundaries carry them without pickling asyncpg types; ``version_of_row`` and its
siblings are the one mapping from a row to a record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from core.envelope import EnvelopeColumns
from core.errors import NoSuchKey, PreconditionFailed
from core.etags import etag_matches
from schema.db import jsonb_dict

__all__ = [
    "AccessKey",
    "BackendRecord",
    "Bucket",
    "DeleteOutcome",
    "NewReplica",
    "NewVersion",
    "ObjectVersion",
    "Replica",
    "Tenant",
    "WriteCondition",
    "envelope_of_row",
    "from_json",
    "replica_of_row",
    "to_json",
    "version_of_row",
]

T = TypeVar("T")
#: A database row as a repository gets it (an ``asyncpg.Record``): columns by name.
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str
    allow_plaintext: bool
    region_lock: tuple[str, ...] = ()
    default_class: str | None = None


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    tenant_id: int
    sealed_secret: bytes
    tenant_name: str
    allow_plaintext: bool
    #: Temporary credentials (``gateway/sts.py``): when they expire, and the SHA-256 of the
    #: session token requests must carry. None for permanent keys.
    expires_at: datetime | None = None
    session_token_sha256: bytes | None = None
    #: The tenant's own rate limits (migration 0017); None: the deployment's settings.
    requests_per_s: float | None = None
    bytes_per_s: int | None = None


@dataclass(frozen=True)
class Bucket:
    id: int
    tenant_id: int
    name: str
    default_class: str | None
    region_lock: tuple[str, ...]
    versioning: str
    created_at: datetime


@dataclass(frozen=True)
class BackendRecord:
    id: int
    name: str
    kind: str
    endpoint: str | None
    bucket: str | None
    path: str | None
    sealed_credentials: bytes | None
    region: str
    country: str
    jurisdiction: str
    provider: str
    state: str
    healthy: bool
    rtt_ms: float
    throughput_mbps: float
    capacity_bytes: int | None
    used_bytes: int
    last_error: str | None = None
    backend_type: str = "other"
    signing_region: str = "us-east-1"
    addressing_style: str = "path"
    #: The gateway may create the bucket (the operator said ``--create-bucket``).
    manage_bucket: bool = False
    sla_availability: float | None = None
    sla_latency_ms: float | None = None
    residency: bool = False
    supports_sse: bool = False
    #: ``healthy`` / ``degraded`` / ``down`` (``core.health``); ``healthy`` above is its
    #: "not down", kept for the readers that only ask whether to use the backend.
    health_state: str = "healthy"
    #: The recorder's ``core.health.BackendHealth`` document.
    health: dict[str, Any] = field(default_factory=dict)
    drain_started_at: datetime | None = None
    #: Tenant names this backend serves; None: every tenant.
    tenants: tuple[str, ...] | None = None
    #: The Ray node label (``bp-node``) a local backend's directory is on; None: not pinned.
    node_label: str | None = None
    #: Designated for audit archives: never chosen for data placement.
    archive: bool = False


@dataclass(frozen=True)
class Replica:
    id: int
    backend_id: int
    locator: str
    part_number: int
    shard_index: int
    size: int
    sha256: bytes
    status: str


@dataclass(frozen=True)
class ObjectVersion:
    id: int
    tenant_id: int
    bucket_id: int
    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    size: int
    etag: str
    sha256: bytes | None
    content_type: str | None
    user_metadata: dict[str, str]
    redundancy_class: str
    part_size: int
    part_count: int
    encrypted: bool
    wrapped_key: bytes | None
    key_id: str | None
    key_version: int | None
    wrap_alg: str | None
    content_id: str | None
    created_at: datetime
    replicas: tuple[Replica, ...] = field(default=())
    #: Each stored part's length when they differ (a completed multipart upload); None when
    #: every part is ``part_size`` long but the last.
    part_sizes: tuple[int, ...] | None = None
    #: Written while the bucket's versioning was off or suspended: S3 calls it "null".
    null_version: bool = True
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    #: Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires.
    http_headers: dict[str, str] = field(default_factory=dict)
    #: A completed multipart upload: each uploaded part's length (migration 0010).
    upload_part_sizes: tuple[int, ...] | None = None

    @property
    def upload_part_count(self) -> int:
        """How many parts the client uploaded: 1 for an object written in one request."""
        return len(self.upload_part_sizes) if self.upload_part_sizes else 1

    def upload_part_range(self, part_number: int) -> tuple[int, int] | None:
        """Inclusive (first, last) bytes of uploaded part ``part_number`` (GET ?partNumber);
        part 1 of a one-part object is the whole object. None past the last part; an empty
        part has ``last = first - 1``."""
        sizes = self.upload_part_sizes or (self.size,)
        if not 1 <= part_number <= len(sizes):
            return None
        first = sum(sizes[: part_number - 1])
        return first, first + sizes[part_number - 1] - 1

    def parts(self, part_number: int) -> list[Replica]:
        return [r for r in self.replicas if r.part_number == part_number]

    @property
    def api_version_id(self) -> str:
        """The version id S3 clients see: ``null`` for a null version."""
        return "null" if self.null_version else self.version_id

    def part_span(self, part_number: int) -> tuple[int, int]:
        """(offset, length) of one stored part in the object."""
        if self.part_sizes is None:
            offset = part_number * self.part_size
            return offset, max(0, min(self.part_size, self.size - offset))
        offset = sum(self.part_sizes[:part_number])
        return offset, self.part_sizes[part_number]

    def part_at(self, offset: int) -> int:
        """The number of the stored part holding byte ``offset``."""
        if self.part_sizes is None:
            return offset // self.part_size
        end = 0
        for number, size in enumerate(self.part_sizes):
            end += size
            if offset < end:
                return number
        raise ValueError(f"offset {offset} is past the end of version {self.id}")


@dataclass(frozen=True)
class NewVersion:
    tenant_id: int
    bucket_id: int
    key: str
    version_id: str
    size: int
    etag: str
    #: SHA-256 of the whole object; None when it is not known (a completed multipart upload:
    #: its parts were hashed separately and nothing reads the whole object at Complete).
    sha256: bytes | None
    content_type: str | None
    user_metadata: dict[str, str]
    redundancy_class: str
    part_size: int
    part_count: int
    encrypted: bool
    wrapped_key: bytes | None = None
    key_id: str | None = None
    key_version: int | None = None
    wrap_alg: str | None = None
    content_id: str | None = None
    part_sizes: tuple[int, ...] | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    upload_part_sizes: tuple[int, ...] | None = None
    #: The 112-byte BP1 header an encrypted version starts with, as the gateway checked it
    #: (``POST ?envelopes`` serves it so rotation reads no object); None for plaintext.
    bp1_header: bytes | None = None


@dataclass(frozen=True)
class WriteCondition:
    """A conditional write (PUT, CompleteMultipartUpload, CopyObject): checked against the
    current version under its row lock in the commit transaction, so two racing conditional
    creates cannot both succeed.

    Both hold ``*`` or a comma-separated ETag list, as RFC 9110 section 13.1 defines them:
    ``if_none_match``: only if no current object has one of these ETags (``*``: only if there
    is no current object; a delete marker counts as none). ``if_match``: only if the current
    object's ETag is one of these (``*``: any current object); on a missing object NoSuchKey.
    """

    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, current_etag: str | None) -> None:
        """Raise PreconditionFailed (or NoSuchKey for If-Match on a missing object)."""
        if (
            self.if_none_match is not None
            and current_etag is not None
            and etag_matches(self.if_none_match, current_etag)
        ):
            raise PreconditionFailed("the object's ETag matches If-None-Match")
        if self.if_match is not None:
            if current_etag is None:
                raise NoSuchKey("If-Match: the object does not exist")
            if not etag_matches(self.if_match, current_etag):
                raise PreconditionFailed("the object's ETag does not match If-Match")


@dataclass(frozen=True)
class NewReplica:
    backend_id: int
    locator: str
    part_number: int
    size: int
    sha256: bytes
    status: str
    shard_index: int = -1


@dataclass(frozen=True)
class DeleteOutcome:
    """What a DeleteObject did, as its response tells it.

    ``version_id``: the (API) id of the delete marker it created or of the version it removed
    permanently; None for a delete in an unversioned bucket. ``delete_marker``: a marker was
    created, or the version removed was one. ``removed``: the version whose row is gone (its
    backend objects went to ``garbage`` in the transaction), if any.
    """

    version_id: str | None
    delete_marker: bool
    removed: ObjectVersion | None = None

    @property
    def garbage(self) -> bool:
        return self.removed is not None and bool(self.removed.replicas)


def replica_of_row(row: Row) -> Replica:
    return Replica(
        id=row["id"],
        backend_id=row["backend_id"],
        locator=row["locator"],
        part_number=row["part_number"],
        shard_index=row["shard_index"],
        size=row["size"],
        sha256=bytes(row["sha256"]),
        status=row["status"],
    )


def envelope_of_row(row: Row) -> EnvelopeColumns:
    """The envelope columns of an ``object_versions`` or ``uploads`` row."""
    wrapped = row["wrapped_key"]
    return EnvelopeColumns(
        encrypted=row["encrypted"],
        wrapped_key=bytes(wrapped) if wrapped is not None else None,
        key_id=row["key_id"],
        key_version=row["key_version"],
        wrap_alg=row["wrap_alg"],
        content_id=row["content_id"],
    )


def version_of_row(row: Row, replicas: Sequence[Replica]) -> ObjectVersion:
    return ObjectVersion(
        id=row["id"],
        tenant_id=row["tenant_id"],
        bucket_id=row["bucket_id"],
        key=row["key"],
        version_id=row["version_id"],
        is_latest=row["is_latest"],
        is_delete_marker=row["is_delete_marker"],
        size=row["size"],
        etag=row["etag"],
        sha256=bytes(row["sha256"]) if row["sha256"] is not None else None,
        content_type=row["content_type"],
        user_metadata=jsonb_dict(row["user_metadata"]),
        redundancy_class=row["redundancy_class"],
        part_size=row["part_size"],
        part_count=row["part_count"],
        **envelope_of_row(row),
        created_at=row["created_at"],
        replicas=tuple(replicas),
        part_sizes=tuple(row["part_sizes"]) if row["part_sizes"] is not None else None,
        null_version=row["null_version"],
        checksum_algorithm=row["checksum_algorithm"],
        checksum_value=row["checksum_value"],
        checksum_type=row["checksum_type"],
        http_headers=jsonb_dict(row["http_headers"]),
        upload_part_sizes=(
            tuple(row["upload_part_sizes"]) if row.get("upload_part_sizes") is not None else None
        ),
    )


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b": value.hex()}
    if isinstance(value, datetime):
        return {"__t": value.isoformat()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b"}:
            return bytes.fromhex(value["__b"])
        if set(value) == {"__t"}:
            return datetime.fromisoformat(value["__t"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def to_json(record: Any) -> dict[str, Any]:
    encoded = _encode(record)
    assert isinstance(encoded, dict)
    return encoded


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    decoded = _decode(data)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in decoded:
            continue
        value = decoded[f.name]
        if f.name == "replicas":
            value = tuple(Replica(**r) for r in value)
        elif f.name in ("part_sizes", "upload_part_sizes", "region_lock") and value is not None:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)

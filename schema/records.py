"""Frozen records of the metadata store: what a repository returns, what the cache stores.

Records convert to and from plain JSON-able dicts (``to_json`` / ``from_json``) so the Redis
cache and Ray boundaries carry them without pickling asyncpg types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "AccessKey",
    "BackendRecord",
    "Bucket",
    "ObjectVersion",
    "Replica",
    "Tenant",
    "from_json",
    "to_json",
]

T = TypeVar("T")


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
        elif f.name in ("part_sizes", "region_lock") and value is not None:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)

"""The metadata store: one Database plus one repository per aggregate, and the read interface
the data path uses (``MetadataReader``), which the Redis cache wraps with the same methods.

Repositories are stateless; each method takes the connection to run on, so a caller composes
several in one transaction: ``store.versions.commit_version(conn, ...)`` beside
``store.jobs.enqueue(conn, ...)`` and ``store.audit.append(conn, ...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schema.admin_tokens import AdminTokenRepository
from schema.audit import AuditLog
from schema.backends import BackendRepository
from schema.buckets import BucketRepository
from schema.changelog import ChangelogRepository
from schema.db import Database
from schema.drains import DrainRepository
from schema.garbage import GarbageRepository
from schema.jobs import JobQueue
from schema.keys import KeyRepository
from schema.listing import ListingRepository
from schema.records import AccessKey, Bucket, ObjectVersion
from schema.replicas import ReplicaRepository
from schema.sessions import SessionRepository
from schema.tenants import TenantRepository
from schema.uploads import UploadRepository
from schema.versions import VersionRepository
from schema.wrapped_keys import WrappedKeyRepository

__all__ = ["MetadataReader", "MetadataStore"]


class MetadataReader(Protocol):
    """The hot reads of every request; implemented by the store and by the cache around it."""

    async def access_key(self, access_key_id: str) -> AccessKey | None: ...

    async def bucket(self, tenant_id: int, name: str) -> Bucket: ...

    async def latest(self, bucket_id: int, key: str) -> ObjectVersion | None: ...

    async def invalidate_object(self, bucket_id: int, key: str) -> None: ...

    async def invalidate_objects(self, bucket_id: int, keys: Sequence[str]) -> None: ...

    async def invalidate_bucket(self, tenant_id: int, name: str) -> None: ...

    async def invalidate_access_key(self, access_key_id: str) -> bool: ...


class MetadataStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.tenants = TenantRepository()
        self.buckets = BucketRepository()
        self.backends = BackendRepository()
        self.drains = DrainRepository()
        self.versions = VersionRepository()
        self.listing = ListingRepository()
        self.replicas = ReplicaRepository()
        self.wrapped_keys = WrappedKeyRepository()
        self.changelog = ChangelogRepository()
        self.garbage = GarbageRepository()
        self.jobs = JobQueue()
        self.audit = AuditLog()
        self.uploads = UploadRepository()
        self.keys = KeyRepository()
        self.admin_tokens = AdminTokenRepository()
        self.sessions = SessionRepository()

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 10) -> MetadataStore:
        return cls(await Database.connect(url, max_size=max_size))

    async def close(self) -> None:
        await self.db.close()

    # MetadataReader
    async def access_key(self, access_key_id: str) -> AccessKey | None:
        async with self.db.connection() as conn:
            return await self.tenants.get_access_key(conn, access_key_id)

    async def bucket(self, tenant_id: int, name: str) -> Bucket:
        async with self.db.connection() as conn:
            return await self.buckets.get(conn, tenant_id, name)

    async def latest(self, bucket_id: int, key: str) -> ObjectVersion | None:
        async with self.db.connection() as conn:
            return await self.versions.get_latest(conn, bucket_id, key)

    async def invalidate_object(self, bucket_id: int, key: str) -> None:
        return None

    async def invalidate_objects(self, bucket_id: int, keys: Sequence[str]) -> None:
        return None

    async def invalidate_bucket(self, tenant_id: int, name: str) -> None:
        return None

    async def invalidate_access_key(self, access_key_id: str) -> bool:
        return True  # nothing cached

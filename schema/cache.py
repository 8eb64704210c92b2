"""Redis read-through cache around a ``MetadataReader``; a Redis outage only costs speed.

Correctness rules (a stale entry would break read-after-write, so they matter):
- Every entry is tagged with the global epoch, and object entries also with a per-key
  generation. A reader fetches value, generation and epoch in one pipeline, the tags after the
  value (``_fetch``), and trusts the value only if both tags are current. It stores a value
  fetched from PostgreSQL under the tags it read *before* that fetch, so a slow reader never
  reinstates a pre-commit value after a writer's invalidation (which bumps the generation
  after the commit).
- Any Redis error opens a circuit breaker (no Redis call for ``breaker_s``: a dead Redis costs
  one short timeout, not one per request). Writes made while the breaker is open could not
  invalidate, so the first successful call after it closes bumps the epoch: everything cached
  before the outage is ignored from then on.
- Access keys carry a per-key generation too: disabling, deleting or re-keying one (or its
  tenant) bumps it after the commit (``invalidate_access_key``), and every request's MGET
  reads it, so the cached identity is refused on every gateway replica at once, not after
  the TTL. That call ignores the breaker (it is rare and it is the moment that matters) and
  reports whether it reached Redis, so the admin operation can say when it did not.
- Cache keys hash the object key and the access key id: names never appear in Redis key space.
  A value and its generation share a hash slot (``{digest}``), so a Redis Cluster serves them
  from one node (``schema/redis_connect.py``).
- Redis is not trusted: whoever can write to it must not become another tenant. Every entry
  carries an HMAC-SHA256, under a key derived from the master key
  (``MasterKey.derive(CACHE_MAC_PURPOSE)``), over the cache key's name, its tags, an absolute
  expiry and the value. A forged entry, an entry copied to another key name (another access
  key, another tenant's bucket) or an old authentic entry restored after it expired fails the
  check: it is a miss (read from PostgreSQL, then overwritten) and a logged warning that names
  the cache key, never the value. Rolling a generation counter back can at most revive an
  authentic entry until its MAC'd expiry (``ttl_s``), the staleness the cache allows anyway.
  The entry is signed with the newest derived key; every derived key verifies (master key
  rotation keeps the cache warm).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from schema.records import AccessKey, Bucket, ObjectVersion, from_json, to_json
from schema.redis_connect import is_cluster_url, open_redis
from schema.store import MetadataReader

__all__ = ["CACHE_MAC_PURPOSE", "CachedReader"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_EPOCH = "bp:epoch"
#: The ``MasterKey.derive`` purpose of the cache's MAC keys.
CACHE_MAC_PURPOSE = "bulletproof/cache-mac/v1"


def _mac(key: bytes, value_key: str, body: dict[str, Any]) -> str:
    """HMAC-SHA256 over the cache key's name and the entry (tags, expiry, value), canonical
    JSON: the name is bound, so an entry is valid under the key it was written to only."""
    text = json.dumps([value_key, body], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _tag(raw: bytes | None) -> str:
    return raw.decode() if raw else "0"


class CachedReader:
    def __init__(
        self,
        inner: MetadataReader,
        redis_url: str,
        *,
        mac_keys: Sequence[bytes],
        ttl_s: int = 60,
        timeout_s: float = 0.25,
        breaker_s: float = 5.0,
    ) -> None:
        if not mac_keys or any(len(k) < 32 for k in mac_keys):
            raise ValueError("the cache needs MAC keys of 32 bytes (MasterKey.derive)")
        self._inner = inner
        self._mac_keys = list(mac_keys)
        self._redis = open_redis(redis_url, timeout_s=timeout_s)
        self._cluster = is_cluster_url(redis_url)
        self._ttl = ttl_s
        self._breaker_s = breaker_s
        self._open_until = 0.0
        self._missed_invalidations = False

    async def close(self) -> None:
        await self._redis.aclose()

    def _trip(self, exc: BaseException) -> None:
        if time.monotonic() >= self._open_until:
            log.warning("redis unavailable, bypassing cache for %.0fs: %r", self._breaker_s, exc)
        self._open_until = time.monotonic() + self._breaker_s
        self._missed_invalidations = True

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; None when Redis is unavailable (the caller falls back)."""
        if time.monotonic() < self._open_until:
            return None
        try:
            if self._missed_invalidations:
                await self._redis.incr(_EPOCH)
                self._missed_invalidations = False
            return await getattr(self._redis, method)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            self._trip(exc)
            return None

    def _seal(self, value_key: str, tags: dict[str, str], value: Any) -> str:
        body = {**tags, "x": int(time.time()) + self._ttl, "v": value}
        return json.dumps({**body, "m": _mac(self._mac_keys[0], value_key, body)})

    def _open(self, value_key: str, raw: bytes) -> dict[str, Any] | None:
        """The entry stored under ``value_key`` if its MAC verifies and it has not expired;
        None (a miss, logged) for anything else."""
        try:
            entry = json.loads(raw)
            mac = entry.pop("m")
            good = isinstance(mac, str) and any(
                hmac.compare_digest(_mac(k, value_key, entry), mac) for k in self._mac_keys
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            good = False
        if not good:
            log.warning("cache entry %s failed its MAC check; reading the database", value_key)
            return None
        if not isinstance(entry.get("x"), int) or entry["x"] < time.time():
            return None
        return entry  # type: ignore[no-any-return]

    async def _fetch(self, value_key: str, gen_key: str | None) -> list[Any] | None:
        """[value, epoch, generation] in one pipeline (one round trip on one server; one per
        node on a cluster). The tags are read *after* the value: value and generation share a
        hash slot, so one node answers them in order, and the epoch only ever grows. A value
        written before any later bump carries the older tag, so a bump between the reads is
        always a miss, never a stale hit. None: Redis is unavailable."""
        if time.monotonic() < self._open_until:
            return None
        try:
            if self._missed_invalidations:
                await self._redis.incr(_EPOCH)
                self._missed_invalidations = False
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(value_key)
                if gen_key:
                    pipe.get(gen_key)
                pipe.get(_EPOCH)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._trip(exc)
            return None
        if gen_key:
            value, gen, epoch = answers
            return [value, epoch, gen]
        return [answers[0], answers[1], None]

    async def _read_through(
        self, cls: type[T], value_key: str, gen_key: str | None, load: Any
    ) -> T | None:
        got = await self._fetch(value_key, gen_key)
        tags: dict[str, str] | None = None
        if got is not None:
            tags = {"e": _tag(got[1]), "g": _tag(got[2]) if gen_key else "0"}
            entry = self._open(value_key, got[0]) if got[0] else None
            if entry is not None and entry["e"] == tags["e"] and entry["g"] == tags["g"]:
                return None if entry["v"] is None else from_json(cls, entry["v"])
        found = await load()
        if tags is not None:
            value = None if found is None else to_json(found)
            await self._call("set", value_key, self._seal(value_key, tags, value), ex=self._ttl)
        return found  # type: ignore[no-any-return]

    @staticmethod
    def _object_keys(bucket_id: int, key: str) -> tuple[str, str]:
        digest = hashlib.sha256(f"{bucket_id}\x00{key}".encode()).hexdigest()
        return f"bp:obj:{{{digest}}}", f"bp:gen:{{{digest}}}"  # one hash slot

    @staticmethod
    def _access_key_keys(access_key_id: str) -> tuple[str, str]:
        digest = hashlib.sha256(access_key_id.encode()).hexdigest()
        return f"bp:ak:{{{digest}}}", f"bp:akgen:{{{digest}}}"  # one hash slot

    async def access_key(self, access_key_id: str) -> AccessKey | None:
        value_key, gen_key = self._access_key_keys(access_key_id)
        return await self._read_through(
            AccessKey, value_key, gen_key, lambda: self._inner.access_key(access_key_id)
        )

    async def invalidate_access_key(self, access_key_id: str) -> bool:
        """Make every replica miss this key's cached identity from now on (after the commit
        that changed it); False when Redis could not be reached (the caller says so)."""
        value_key, gen_key = self._access_key_keys(access_key_id)
        try:
            await self._bump(value_key, gen_key)
        except (RedisError, OSError) as exc:
            self._trip(exc)
            return False
        return True

    async def _bump(self, value_key: str, gen_key: str) -> None:
        """Invalidate: the generation first (alone it already makes every reader miss), then
        drop the value. One slot; atomic on a single server (MULTI), in order on a cluster."""
        async with self._redis.pipeline(transaction=not self._cluster) as pipe:
            pipe.incr(gen_key)
            pipe.expire(gen_key, max(self._ttl * 4, 3600))
            pipe.delete(value_key)
            await pipe.execute()

    async def bucket(self, tenant_id: int, name: str) -> Bucket:
        digest = hashlib.sha256(f"{tenant_id}\x00{name}".encode()).hexdigest()
        found = await self._read_through(
            Bucket, f"bp:bkt:{digest}", None, lambda: self._inner.bucket(tenant_id, name)
        )
        assert found is not None  # the inner reader raises NoSuchBucket
        return found

    async def latest(self, bucket_id: int, key: str) -> ObjectVersion | None:
        value_key, gen_key = self._object_keys(bucket_id, key)
        return await self._read_through(
            ObjectVersion, value_key, gen_key, lambda: self._inner.latest(bucket_id, key)
        )

    async def invalidate_object(self, bucket_id: int, key: str) -> None:
        value_key, gen_key = self._object_keys(bucket_id, key)
        if time.monotonic() < self._open_until:
            self._missed_invalidations = True
            return
        try:
            await self._bump(value_key, gen_key)
        except (RedisError, OSError) as exc:
            self._trip(exc)

    async def invalidate_objects(self, bucket_id: int, keys: Sequence[str]) -> None:
        """:meth:`invalidate_object` for many keys of one bucket in one pipeline (a batch
        re-wrap's): one round trip instead of one per key, each key's generation still bumped
        before its value is dropped."""
        if not keys:
            return
        if time.monotonic() < self._open_until:
            self._missed_invalidations = True
            return
        try:
            async with self._redis.pipeline(transaction=not self._cluster) as pipe:
                for key in keys:
                    value_key, gen_key = self._object_keys(bucket_id, key)
                    pipe.incr(gen_key)
                    pipe.expire(gen_key, max(self._ttl * 4, 3600))
                    pipe.delete(value_key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._trip(exc)

    async def invalidate_bucket(self, tenant_id: int, name: str) -> None:
        digest = hashlib.sha256(f"{tenant_id}\x00{name}".encode()).hexdigest()
        if await self._call("delete", f"bp:bkt:{digest}") is None:
            self._missed_invalidations = True

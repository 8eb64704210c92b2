"""The metadata cache and request admission against Redis as the design deploys it: a real
three-node Redis Cluster (started here), and a Redis that wants a password over TLS.

On the cluster: identities and object versions are cached (their value and generation keys
share a hash slot, the epoch lives elsewhere), invalidation reaches them, and admission's Lua
script runs (its keys share the tenant's slot). Then one node is killed: every read still
answers from PostgreSQL, and a change made while the node is down is never answered stale,
neither while it is down nor after."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from redis.cluster import RedisCluster as SyncCluster

from core.request_limits import RateLimits
from core.sealing import MasterKey, generate_master_key
from schema.admission import AdmissionStore
from schema.cache import CACHE_MAC_PURPOSE, CachedReader
from schema.db import Database
from schema.store import MetadataStore
from tests.support.certs import self_signed
from tests.support.database import private_database
from tests.support.redis_cluster import RedisCluster3, TlsRedis

pytestmark = pytest.mark.integration

MAC_KEYS = MasterKey(generate_master_key()).derive(CACHE_MAC_PURPOSE)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster3]:
    nodes = RedisCluster3(tmp_path / "redis-cluster")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with private_database("bp_rcluster") as database:
        yield database


async def _tenant_with_key(db: Database, sealed: bytes) -> tuple[int, str]:
    store = MetadataStore(db)
    async with db.transaction() as conn:
        tenant = await store.tenants.create(conn, f"t{secrets.token_hex(4)}")
        key_id = f"AK{secrets.token_hex(8).upper()}"
        await store.tenants.add_access_key(conn, tenant.id, key_id, sealed)
    return tenant.id, key_id


async def _set_secret(db: Database, key_id: str, sealed: bytes) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE access_keys SET sealed_secret = $2 WHERE access_key_id = $1", key_id, sealed
        )


def _slot_owner(nodes: RedisCluster3, key: str) -> int:
    """The port of the node serving ``key``'s hash slot."""
    client = SyncCluster(host="127.0.0.1", port=nodes.ports[0])
    try:
        node = client.get_node_from_key(key)
        return int(node.port)
    finally:
        client.close()


async def test_cache_and_admission_on_a_cluster_and_a_node_killed(
    redis_cluster: RedisCluster3, db: Database
) -> None:
    store = MetadataStore(db)
    reader = CachedReader(store, redis_cluster.url, mac_keys=MAC_KEYS, breaker_s=0.5)
    admission = AdmissionStore(redis_cluster.url)
    try:
        _, key_id = await _tenant_with_key(db, b"sealed-v1")
        got = await reader.access_key(key_id)
        assert got is not None and got.sealed_secret == b"sealed-v1"
        value_key, gen_key = CachedReader._access_key_keys(key_id)
        plain = SyncCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        assert plain.get(value_key), "the read did not populate the cluster"
        assert plain.keyslot(value_key) == plain.keyslot(gen_key)
        plain.close()
        # a change committed, then invalidated: every later read sees it
        await _set_secret(db, key_id, b"sealed-v2")
        assert await reader.invalidate_access_key(key_id)
        again = await reader.access_key(key_id)
        assert again is not None and again.sealed_secret == b"sealed-v2"
        # admission's script: three keys in the tenant's slot
        limits = RateLimits(
            requests_per_s=100.0, request_burst=200.0, bytes_per_s=1e6, byte_burst=2e6
        )
        verdict = await admission.admit(
            7, limits, upload_bytes=10, replay_id="r" * 64, replay_ttl_s=60, replay_grace_s=2.0
        )
        assert verdict is not None and verdict.outcome == "ok", verdict

        # Kill the node serving this key's slot; change the row while it is down.
        owner = _slot_owner(redis_cluster, value_key)
        redis_cluster.kill(owner)
        await _set_secret(db, key_id, b"sealed-v3")
        await reader.invalidate_access_key(key_id)  # cannot reach the slot: trips the breaker
        for _ in range(5):
            during = await reader.access_key(key_id)
            assert during is not None and during.sealed_secret == b"sealed-v3"
        # Another key whose slot lives on a node still up is answered right too.
        _, other = await _tenant_with_key(db, b"other-v1")
        seen = await reader.access_key(other)
        assert seen is not None and seen.sealed_secret == b"other-v1"
    finally:
        await reader.close()
        await admission.close()


async def test_cache_with_a_password_over_tls(tmp_path: Path, db: Database) -> None:
    cert, key = self_signed(tmp_path)
    password = secrets.token_urlsafe(16)
    server = TlsRedis(tmp_path, cert, key, password)
    server.start()
    reader = CachedReader(MetadataStore(db), server.url, mac_keys=MAC_KEYS)
    try:
        _, key_id = await _tenant_with_key(db, b"sealed-tls")
        got = await reader.access_key(key_id)
        assert got is not None and got.sealed_secret == b"sealed-tls"
        direct = redis_lib.Redis(
            host="127.0.0.1", port=server.port, password=password, ssl=True,
            ssl_ca_certs=str(cert),
        )  # fmt: skip
        assert direct.get(CachedReader._access_key_keys(key_id)[0]), "not cached over TLS"
        direct.close()
        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis(
                host="127.0.0.1", port=server.port, password="wrong", ssl=True,
                ssl_ca_certs=str(cert),
            ).ping()  # fmt: skip
    finally:
        await reader.close()
        server.stop()

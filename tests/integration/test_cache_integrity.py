"""Redis is not trusted for who is who (issue 14): forged cache entries, written straight into
the federation's Redis as an attacker with Redis access would, never make a request
authenticate as another tenant or read another tenant's bucket. Each forgery below is accepted
by a cache that does not check its entries' MACs (the values, tags and TTLs are what the
gateway itself would have written), so these tests fail without the MAC.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from typing import Any

import pytest
import redis as redis_lib
from botocore.exceptions import ClientError

from core.sealing import MasterKey
from schema.cache import CACHE_MAC_PURPOSE, CachedReader
from schema.store import MetadataStore
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _bucket_key(tenant_id: int, bucket: str) -> str:
    return "bp:bkt:" + _digest(f"{tenant_id}\x00{bucket}")


def _tenant_id(cluster: Federation, name: str) -> int:
    return int(cluster.sql("SELECT id FROM tenants WHERE name = $1", name)[0]["id"])


def _forge(r: redis_lib.Redis, key: str, entry: dict[str, Any]) -> None:
    """Write ``entry`` under ``key`` with the lifetime the gateway would give it."""
    r.set(key, json.dumps(entry), ex=300)


@pytest.fixture
def redis(cluster: Federation) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(cluster.redis.url)


@pytest.fixture
def pair(cluster: Federation) -> tuple[tuple[str, str, str, Any], tuple[str, str, str, Any]]:
    """A victim tenant holding a secret object, and an attacker tenant (names, keys, clients)."""
    victim = cluster.create_tenant(allow_plaintext=True)
    attacker = cluster.create_tenant(allow_plaintext=True)
    return (
        (*victim, cluster.s3(victim[1], victim[2])),
        (*attacker, cluster.s3(attacker[1], attacker[2])),
    )


def test_forged_identity_entry_does_not_change_the_tenant(
    cluster: Federation, redis: redis_lib.Redis, pair: Any
) -> None:
    (v_name, _, _, victim), (_, a_key, a_secret, attacker) = pair
    secret_bucket = f"vic-{secrets.token_hex(4)}"
    victim.create_bucket(Bucket=secret_bucket)
    victim.put_object(Bucket=secret_bucket, Key="payroll", Body=b"victim data")
    attacker.list_buckets()  # the attacker's identity is now cached, with its sealed secret
    value_key = f"bp:ak:{{{_digest(a_key)}}}"
    entry = json.loads(redis.get(value_key) or b"null")
    assert entry is not None and entry["v"]["access_key_id"] == a_key
    # 1. The attacker's own key re-pointed at the victim's tenant (the sealed secret is the
    # attacker's, so the attacker can still sign).
    forged = {k: v for k, v in entry.items() if k != "m"}
    forged["v"] = {**entry["v"], "tenant_id": _tenant_id(cluster, v_name), "tenant_name": v_name}
    _forge(redis, value_key, forged)
    names = {b["Name"] for b in attacker.list_buckets()["Buckets"]}
    assert secret_bucket not in names
    with pytest.raises(ClientError) as info:
        attacker.get_object(Bucket=secret_bucket, Key="payroll")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"
    # The forged entry was a miss and has been replaced by the true identity.
    restored = json.loads(redis.get(value_key) or b"null")
    assert restored["v"]["tenant_name"] != v_name and "m" in restored

    # 2. Entries moved to the name of a key id that does not exist: the authentic one byte for
    # byte (MAC and all), and one pointing at the victim's tenant.
    invented = "AKIA" + secrets.token_hex(8).upper()
    impostor = cluster.s3(invented, a_secret)
    at_victim = {**forged, "v": {**forged["v"], "access_key_id": invented}}
    for moved in (restored, at_victim):
        _forge(redis, f"bp:ak:{{{_digest(invented)}}}", moved)
        with pytest.raises(ClientError) as info:
            impostor.list_buckets()
        assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_bucket_mapping_swapped_to_another_tenants_bucket(
    cluster: Federation, redis: redis_lib.Redis, pair: Any
) -> None:
    (v_name, _, _, victim), (a_name, _, _, attacker) = pair
    v_bucket, a_bucket = f"vic-{secrets.token_hex(4)}", f"att-{secrets.token_hex(4)}"
    victim.create_bucket(Bucket=v_bucket)
    victim.put_object(Bucket=v_bucket, Key="payroll", Body=b"victim data")
    victim.head_bucket(Bucket=v_bucket)  # the victim's bucket mapping is cached
    attacker.create_bucket(Bucket=a_bucket)
    attacker.head_bucket(Bucket=a_bucket)
    v_key = _bucket_key(_tenant_id(cluster, v_name), v_bucket)
    a_key = _bucket_key(_tenant_id(cluster, a_name), a_bucket)
    victim_entry = redis.get(v_key)
    assert victim_entry is not None and redis.get(a_key) is not None
    # The victim's authentic entry copied byte for byte under the attacker's bucket's name.
    redis.set(a_key, victim_entry, ex=300)
    with pytest.raises(ClientError) as info:
        attacker.get_object(Bucket=a_bucket, Key="payroll")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    assert attacker.list_objects_v2(Bucket=a_bucket).get("KeyCount") == 0
    # The same with the MAC removed and the value edited to keep the attacker's tenant id.
    entry = json.loads(victim_entry)
    entry.pop("m", None)
    entry["v"]["tenant_id"] = _tenant_id(cluster, a_name)
    _forge(redis, a_key, entry)
    with pytest.raises(ClientError) as info:
        attacker.get_object(Bucket=a_bucket, Key="payroll")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    assert victim.get_object(Bucket=v_bucket, Key="payroll")["Body"].read() == b"victim data"


def test_bad_mac_is_a_logged_miss_and_rotation_keeps_entries(
    cluster: Federation, pair: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader itself, on the federation's PostgreSQL and Redis: a forged entry is read from
    the database and logged (naming the cache key, never the value); an entry MACed with the
    previous master key still verifies after a rotation."""
    (_, v_key, _, _), (_, a_key, _, _) = pair
    master = MasterKey.from_file_text(cluster.settings.master_key_path.read_text())
    newer = MasterKey(_fresh_key(), *_keys(cluster))

    async def run() -> None:
        store = await MetadataStore.connect(cluster.settings.database_url, max_size=2)
        old = CachedReader(
            store, cluster.redis.url, mac_keys=master.derive(CACHE_MAC_PURPOSE), ttl_s=60
        )
        rotated = CachedReader(
            store, cluster.redis.url, mac_keys=newer.derive(CACHE_MAC_PURPOSE), ttl_s=60
        )
        try:
            first = await old.access_key(a_key)
            assert first is not None
            r = redis_lib.Redis.from_url(cluster.redis.url)
            value_key = f"bp:ak:{{{_digest(a_key)}}}"
            raw = r.get(value_key)
            assert raw is not None
            r.set(f"bp:ak:{{{_digest(v_key)}}}", raw, ex=60)  # the attacker's entry, victim's name
            with caplog.at_level(logging.WARNING, logger="schema.cache"):
                got = await old.access_key(v_key)
            assert got is not None and got.access_key_id == v_key
            assert got.tenant_id != first.tenant_id
            warned = [rec.getMessage() for rec in caplog.records if "MAC" in rec.getMessage()]
            assert warned and all(a_key not in m and "sealed" not in m for m in warned)
            assert all(first.sealed_secret.decode() not in m for m in warned)
            # Rotation: the entry the old key wrote verifies under the newer list (no miss).
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="schema.cache"):
                again = await rotated.access_key(a_key)
            assert again == first
            assert not [rec for rec in caplog.records if "MAC" in rec.getMessage()]
        finally:
            await old.close()
            await rotated.close()
            await store.close()

    asyncio.run(run())


def _fresh_key() -> bytes:
    from core.sealing import generate_master_key

    return generate_master_key()


def _keys(cluster: Federation) -> list[bytes]:
    text = cluster.settings.master_key_path.read_text()
    return [line.strip().encode() for line in text.splitlines() if line.strip()]

"""The placement census against real PostgreSQL (a private database): the weakest part's good
pieces per version, counted per backend (replication) or per shard (erasure), only ``ok``
pieces, one tenant or all; and the states ``/admin/status`` makes of them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator

import pytest

from core.federation_state import tally
from core.policy import builtin_policy
from schema.db import Database
from schema.placement_census import PlacementCensus
from tests.support.database import private_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[Database]:
    async with private_database("bp_census") as database:
        yield database


async def _tenant(db: Database) -> tuple[int, int, list[int]]:
    async with db.transaction() as conn:
        tenant = await conn.fetchval(
            "INSERT INTO tenants (name) VALUES ($1) RETURNING id", f"t{secrets.token_hex(4)}"
        )
        bucket = await conn.fetchval(
            "INSERT INTO buckets (tenant_id, name) VALUES ($1, $2) RETURNING id",
            tenant,
            f"b{secrets.token_hex(4)}",
        )
        backends = [
            await conn.fetchval(
                "INSERT INTO backends (name, kind, path, region, country, jurisdiction)"
                " VALUES ($1, 'local', '/x', 'eu-1', 'DE', 'EU') RETURNING id",
                f"b{secrets.token_hex(4)}",
            )
            for _ in range(6)
        ]
    return tenant, bucket, backends


async def _version(
    db: Database,
    tenant: int,
    bucket: int,
    cls: str,
    pieces: list[tuple[int, int, int, str]],  # (backend, part, shard, status)
    *,
    erasure: tuple[int, int] | None = None,
    size: int = 100,
) -> None:
    async with db.transaction() as conn:
        pk = await conn.fetchval(
            "INSERT INTO object_versions (tenant_id, bucket_id, key, version_id, is_latest,"
            " redundancy_class, encrypted, null_version, size) VALUES ($1, $2, $3, $4, TRUE,"
            " $5, FALSE, FALSE, $6) RETURNING id",
            tenant,
            bucket,
            secrets.token_hex(6),
            secrets.token_hex(8),
            cls,
            size,
        )
        for backend, part, shard, status in pieces:
            await conn.execute(
                "INSERT INTO replicas (version_pk, backend_id, locator, part_number,"
                " shard_index, size, sha256, status) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)",
                pk,
                backend,
                secrets.token_hex(16),
                part,
                shard,
                hashlib.sha256(b"x").digest(),
                status,
            )
        if erasure is not None:
            parts = sorted({part for _, part, _, _ in pieces})
            for part in parts:
                await conn.execute(
                    "INSERT INTO parts (version_pk, part_number, size, sha256, k, m)"
                    " VALUES ($1, $2, 1, $3, $4, $5)",
                    pk,
                    part,
                    hashlib.sha256(b"x").digest(),
                    *erasure,
                )


async def test_states_from_the_weakest_part(db: Database) -> None:
    tenant, bucket, b = await _tenant(db)
    std = "StandardClass"  # built-in: 3 copies
    # full: 3 ok copies of each of two parts
    await _version(db, tenant, bucket, std, [(x, p, -1, "ok") for x in b[:3] for p in (1, 2)])
    # degraded: part 2 has one corrupt copy (its weakest part has 2)
    await _version(
        db,
        tenant,
        bucket,
        std,
        [(x, 1, -1, "ok") for x in b[:3]] + [(b[0], 2, -1, "ok"), (b[1], 2, -1, "ok")]
        + [(b[2], 2, -1, "corrupt")],
    )  # fmt: skip
    # at risk: one good copy, one pending
    await _version(db, tenant, bucket, std, [(b[0], 0, -1, "ok"), (b[1], 0, -1, "pending")])
    # erasure 2+4 written with that code: 3 good shards of 6 -> degraded; 2 -> at risk;
    # the same shard index twice counts once
    await _version(
        db, tenant, bucket, "ColdArchiveClass",
        [(b[i], 0, i, "ok") for i in range(3)] + [(b[3], 0, 0, "ok")], erasure=(2, 4),
    )  # fmt: skip
    await _version(
        db, tenant, bucket, "ColdArchiveClass",
        [(b[i], 0, i, "ok") for i in range(2)] + [(b[2], 0, 2, "missing")], erasure=(2, 4),
    )  # fmt: skip
    # unreadable erasure object: 1 of the k=2 shards needed
    await _version(db, tenant, bucket, "ColdArchiveClass", [(b[0], 0, 0, "ok")], erasure=(2, 4))
    async with db.connection() as conn:
        groups = await PlacementCensus().groups(conn, tenant_id=tenant)
    counted = tally(groups, builtin_policy())
    assert counted.objects == {"full": 1, "degraded": 2, "at_risk": 2, "unreadable": 1}
    assert counted.bytes["degraded"] == 200


async def test_one_tenant_never_counts_another(db: Database) -> None:
    mine, my_bucket, b = await _tenant(db)
    other, other_bucket, _ = await _tenant(db)
    await _version(db, mine, my_bucket, "StandardClass", [(x, 0, -1, "ok") for x in b[:3]])
    await _version(db, other, other_bucket, "StandardClass", [(b[0], 0, -1, "ok")])
    async with db.connection() as conn:
        census = PlacementCensus()
        mine_groups = await census.groups(conn, tenant_id=mine)
        all_groups = await census.groups(conn)
    assert sum(g.objects for g in mine_groups) == 1
    assert sum(g.objects for g in all_groups) >= 2

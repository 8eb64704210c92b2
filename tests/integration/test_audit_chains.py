"""The audit log's chains against real PostgreSQL (a private database per test; no Ray): per-tenant
chains stay linear under 16 concurrent writers; the migration keeps rows written before chains
verifying; and a superuser who bypasses the trigger is caught by ``verify`` naming the row:
altered, deleted and inserted rows, newest rows deleted with the head rewound (seen only
through the signed checkpoint, also when its database copy is deleted too), a forged
checkpoint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from actors.audit_outside import OutsideStore
from actors.audit_trail import CHECKPOINTS_CHAIN, AuditTrail
from core.audit_chain import AuditRow, row_digest
from core.deployment_key import DeploymentKey
from core.sealing import MasterKey, generate_master_key
from schema.audit import AuditEntry, AuditReport
from schema.db import Database, ensure_database
from schema.migrate import apply_migrations, available_migrations
from schema.store import MetadataStore
from tests.support.database import PG_BASE, private_database, private_database_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def store() -> AsyncIterator[MetadataStore]:
    async with private_database("bp_audit", max_size=20) as db:
        yield MetadataStore(db)


@pytest.fixture
def trail(store: MetadataStore, tmp_path: Path) -> AuditTrail:
    key = DeploymentKey.from_master(MasterKey(generate_master_key()))
    return AuditTrail(store, key, OutsideStore(tmp_path / "outside"))


def entry(tenant: int | None, n: int) -> AuditEntry:
    return AuditEntry("AKTEST", "PutObject", f"b/k{n}", f"req-{n}", "ok", tenant, size=n)


async def append(store: MetadataStore, *entries: AuditEntry) -> None:
    async with store.db.transaction() as conn:
        await store.audit.append_many(conn, entries)


async def tamper(store: MetadataStore, *statements: str) -> None:
    """Run ``statements`` as the superuser with every trigger of the audit tables off."""
    async with store.db.transaction() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        await conn.execute("ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL")
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
        await conn.execute("ALTER TABLE audit_checkpoints ENABLE TRIGGER ALL")


async def row_id(store: MetadataStore, chain: str, seq: int) -> int:
    async with store.db.connection() as conn:
        found = await conn.fetchval(
            "SELECT seq FROM audit_log WHERE chain_id = $1 AND chain_seq = $2", chain, seq
        )
    assert found is not None
    return int(found)


async def verify(store: MetadataStore) -> AuditReport:
    async with store.db.connection() as conn:
        return await store.audit.verify(conn)


async def test_16_concurrent_writers_keep_every_chain_linear(store: MetadataStore) -> None:
    tenants = [1, 2, 3, 4, None]
    per_writer = 25

    async def writer(n: int) -> None:
        for i in range(per_writer):
            await append(store, entry(tenants[n % len(tenants)], n * 1000 + i))

    async def batcher() -> None:  # a rewrap of 300 objects of tenant 1, in one transaction
        await append(store, *[entry(1, 900_000 + i) for i in range(300)])

    await asyncio.gather(*(writer(n) for n in range(16)), batcher())
    report = await verify(store)
    assert report.ok, report.as_dict()
    async with store.db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM audit_log ORDER BY chain_id, chain_seq")
        heads = {r["chain_id"]: r for r in await conn.fetch("SELECT * FROM audit_heads")}
    by_chain: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_chain.setdefault(r["chain_id"], []).append(r)
    expected = {
        "tenant:1": 4 * per_writer + 300,
        "tenant:2": 3 * per_writer,
        "tenant:3": 3 * per_writer,
        "tenant:4": 3 * per_writer,
        "system": 3 * per_writer,
    }
    assert {c: len(rs) for c, rs in by_chain.items()} == expected == report.chains
    for chain, chain_rows in by_chain.items():
        assert [r["chain_seq"] for r in chain_rows] == list(range(1, len(chain_rows) + 1))
        prev = bytes(32)
        for r in chain_rows:  # no fork: each row links to the one before it
            assert bytes(r["prev_hash"]) == prev
            prev = bytes(r["entry_hash"])
        assert heads[chain]["seq"] == len(chain_rows) and bytes(heads[chain]["entry_hash"]) == prev
    assert len({r["seq"] for r in rows}) == len(rows)  # global ids stay unique


def _legacy_hash(prev: bytes, seq: int, at: datetime, tenant: int | None, n: int) -> bytes:
    """The hash rows had before chains existed (schema/audit.py up to migration 0015)."""
    row = {
        "seq": seq,
        "at": at.isoformat(),
        "tenant_id": tenant,
        "actor": "old",
        "action": "PutObject",
        "resource": f"old/{n}",
        "request_id": f"r{n}",
        "result": "ok",
    }
    return hashlib.sha256(
        prev + json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
    ).digest()


async def test_migration_keeps_the_rows_written_before_chains_verifying() -> None:
    name = f"bp_audit_legacy_{secrets.token_hex(3)}"
    url = f"{PG_BASE}/{name}"
    await ensure_database(url)
    try:
        conn = await asyncpg.connect(url)
        try:
            for version, _, sql in available_migrations():
                if version < 16:
                    await conn.execute(sql)
            at = await conn.fetchval("SELECT now()")
            prev = bytes(32)
            for seq in range(1, 6):
                tenant = seq % 2 or None
                digest = _legacy_hash(prev, seq, at, tenant, seq)
                await conn.execute(
                    "INSERT INTO audit_log (seq, at, tenant_id, actor, action, resource,"
                    " request_id, result, prev_hash, entry_hash)"
                    " VALUES ($1, $2, $3, 'old', 'PutObject', $4, $5, 'ok', $6, $7)",
                    seq,
                    at,
                    tenant,
                    f"old/{seq}",
                    f"r{seq}",
                    prev,
                    digest,
                )
                prev = digest
            await conn.execute("UPDATE audit_head SET seq = 5, entry_hash = $1", prev)
            await conn.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for version, mig, _ in available_migrations():
                if version < 16:
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        mig,
                    )
        finally:
            await conn.close()
        assert 16 in await apply_migrations(url)
        db = await Database.connect(url)
        try:
            store = MetadataStore(db)
            await append(store, entry(1, 1), entry(None, 2))
            report = await verify(store)
            assert report.ok, report.as_dict()
            assert report.chains == {"legacy": 5, "tenant:1": 1, "system": 1}
            async with db.connection() as c:
                ids = [r["seq"] for r in await c.fetch("SELECT seq FROM audit_log ORDER BY seq")]
            # the global id continues after the legacy rows (a chain's first append may skip some)
            assert ids[:5] == [1, 2, 3, 4, 5] and len(ids) == 7 and min(ids[5:]) > 5
            # The legacy chain is sealed: its rows are checked like any other.
            await tamper(store, "UPDATE audit_log SET result = 'forged' WHERE seq = 3")
            first = (await verify(store)).first
            assert first is not None
            assert (first.chain_id, first.kind, first.row_id) == ("legacy", "entry_hash", 3)
        finally:
            await db.close()
    finally:
        admin = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_an_altered_row_is_named(store: MetadataStore) -> None:
    await append(store, *[entry(7, n) for n in range(5)])
    target = await row_id(store, "tenant:7", 3)
    await tamper(store, f"UPDATE audit_log SET bytes = 999 WHERE seq = {target}")
    report = await verify(store)
    assert not report.ok and report.first is not None
    assert (report.first.chain_id, report.first.chain_seq, report.first.row_id) == (
        "tenant:7",
        3,
        target,
    )
    assert report.first.kind == "entry_hash"
    assert f"row id {target}" in report.as_dict()["first_break"]["message"]


async def test_a_deleted_row_is_a_gap(store: MetadataStore) -> None:
    await append(store, *[entry(7, n) for n in range(5)])
    await append(store, entry(8, 0))
    target = await row_id(store, "tenant:7", 2)
    await tamper(store, f"DELETE FROM audit_log WHERE seq = {target}")
    report = await verify(store)
    assert [(b.chain_id, b.kind, b.chain_seq) for b in report.breaks] == [("tenant:7", "gap", 3)]
    assert report.chains["tenant:8"] == 1


async def test_inserted_rows_are_named(store: MetadataStore) -> None:
    await append(store, *[entry(7, n) for n in range(3)])
    first = await row_id(store, "tenant:7", 1)
    # A copy of row 2 placed at the same position (the uniqueness constraint dropped first).
    await tamper(
        store,
        "ALTER TABLE audit_log DROP CONSTRAINT audit_log_chain_link",
        "INSERT INTO audit_log (seq, chain_id, chain_seq, at, tenant_id, actor, action, resource,"
        " request_id, result, role, bytes, prev_hash, entry_hash)"
        " SELECT 1000, chain_id, chain_seq, at, tenant_id, actor, action, 'b/forged',"
        " request_id, result, role, bytes, prev_hash, sha256(entry_hash) FROM audit_log"
        f" WHERE seq = {first + 1}",
    )
    report = await verify(store)
    assert report.first is not None
    assert (report.first.kind, report.first.chain_seq) in {("extra_row", 2), ("entry_hash", 2)}
    assert report.first.row_id in {1000, first + 1}


async def test_a_row_appended_past_the_head_is_named(store: MetadataStore) -> None:
    """A perfectly chained forged row (the hash has no secret) is still past the head."""
    await append(store, *[entry(7, n) for n in range(3)])
    async with store.db.connection() as conn:
        last = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE chain_id = 'tenant:7' AND chain_seq = 3"
        )
    forged = AuditRow(
        5000,
        "tenant:7",
        4,
        last["at"],
        7,
        "x",
        "DeleteObject",
        "b/x",
        "r",
        "ok",
        None,
        None,
        bytes(last["entry_hash"]),
        b"",
    )
    digest = row_digest(forged.prev_hash, forged)
    await tamper(
        store,
        "INSERT INTO audit_log (seq, chain_id, chain_seq, at, tenant_id, actor, action, resource,"
        " request_id, result, prev_hash, entry_hash) VALUES (5000, 'tenant:7', 4,"
        f" '{last['at'].isoformat()}', 7, 'x', 'DeleteObject', 'b/x', 'r', 'ok',"
        f" '\\x{last['entry_hash'].hex()}', '\\x{digest.hex()}')",
    )
    report = await verify(store)
    assert [(b.chain_id, b.kind) for b in report.breaks] == [("tenant:7", "extra_row")]


async def test_deleting_the_newest_rows_is_seen_through_the_checkpoint(
    store: MetadataStore, trail: AuditTrail
) -> None:
    await append(store, *[entry(7, n) for n in range(5)])
    await append(store, entry(None, 1))
    result = await trail.checkpoint()
    assert (
        result["chains"] == 2 and len(list(trail.outside.directory.glob("checkpoint-*.json"))) == 1
    )
    assert (await trail.verify()).ok
    await append(store, entry(7, 99))  # rows after the checkpoint are fine
    assert (await trail.verify()).ok
    async with store.db.connection() as conn:
        hash4 = bytes(
            await conn.fetchval(
                "SELECT entry_hash FROM audit_log WHERE chain_id = 'tenant:7' AND chain_seq = 4"
            )
        )
    # The newest two checkpointed rows and the one after go, and the head is rewound to match:
    # the chain alone is consistent again, only the signed checkpoint shows the loss.
    await tamper(
        store,
        "DELETE FROM audit_log WHERE chain_id = 'tenant:7' AND chain_seq >= 5",
        f"UPDATE audit_heads SET seq = 4, entry_hash = '\\x{hash4.hex()}'"
        " WHERE chain_id = 'tenant:7'",
    )
    assert (await verify(store)).ok  # without the checkpoint nothing is seen
    report = await trail.verify()
    assert [(b.chain_id, b.kind) for b in report.breaks] == [("tenant:7", "missing_rows")]
    assert "seq 5 (signed checkpoint)" in report.breaks[0].describe()
    # Deleting the checkpoint's database copy too: the copy outside still tells.
    await tamper(store, "DELETE FROM audit_checkpoints")
    report = await trail.verify()
    kinds = {(b.chain_id, b.kind) for b in report.breaks}
    assert kinds == {("tenant:7", "missing_rows"), (CHECKPOINTS_CHAIN, "checkpoint_missing")}


async def test_a_forged_checkpoint_is_refused(store: MetadataStore, trail: AuditTrail) -> None:
    await append(store, *[entry(7, n) for n in range(3)])
    await trail.checkpoint()
    [copy] = list(trail.outside.directory.glob("checkpoint-*.json"))
    signed = json.loads(copy.read_text())
    signed["statement"]["heads"]["tenant:7"]["seq"] = 2
    copy.write_text(json.dumps(signed))
    report = await trail.verify()
    assert [(b.chain_id, b.kind) for b in report.breaks] == [
        (CHECKPOINTS_CHAIN, "checkpoint_signature")
    ]
    assert report.checkpoint is not None and report.checkpoint["source"].startswith("database")


def _cli(url: str, state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BP_DATABASE_URL": url, "BP_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", "audit", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_verify_and_export(tmp_path: Path) -> None:
    """``bulletproof audit verify`` exits 0 on a sound log and 1 naming the row of a break,
    also one seen only through the checkpoint; ``export`` writes every row, enough to
    recompute each chain elsewhere."""
    state = tmp_path / "state"
    state.mkdir()
    master = generate_master_key()
    (state / "master.key").write_bytes(master + b"\n")
    async with private_database_url("bp_audit_cli") as url:
        db = await Database.connect(url)
        try:
            store = MetadataStore(db)
            await append(store, *[entry(3, n) for n in range(4)], entry(None, 9))
            trail = AuditTrail(
                store, DeploymentKey.from_master(MasterKey(master)), OutsideStore(state / "audit")
            )
            await trail.checkpoint()
            done = await asyncio.to_thread(_cli, url, state, "verify")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "5 entries in 2 chains" in done.stdout and "ok" in done.stdout
            out = tmp_path / "export.jsonl"
            done = await asyncio.to_thread(_cli, url, state, "export", "--out", str(out))
            assert done.returncode == 0, done.stderr
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            assert len(lines) == 5
            prev: dict[str, bytes] = {}
            for line in sorted(lines, key=lambda r: (r["chain_id"], r["chain_seq"])):
                row = AuditRow(
                    line["seq"], line["chain_id"], line["chain_seq"],
                    datetime.fromisoformat(line["at"]), line["tenant_id"], line["actor"],
                    line["action"], line["resource"], line["request_id"], line["result"],
                    line["role"], line["bytes"], bytes.fromhex(line["prev_hash"]),
                    bytes.fromhex(line["entry_hash"]),
                )  # fmt: skip
                assert row.prev_hash == prev.get(row.chain_id, bytes(32))
                assert row_digest(row.prev_hash, row) == row.entry_hash
                prev[row.chain_id] = row.entry_hash
            target = await row_id(store, "tenant:3", 2)
            await tamper(store, f"UPDATE audit_log SET actor = 'someone' WHERE seq = {target}")
            done = await asyncio.to_thread(_cli, url, state, "verify")
            assert done.returncode == 1
            assert f"BROKEN chain tenant:3 seq 2 (row id {target}): entry_hash" in done.stdout
            await tamper(
                store,
                f"UPDATE audit_log SET actor = 'AKTEST' WHERE seq = {target}",
                "DELETE FROM audit_log WHERE chain_id = 'system'",
                "DELETE FROM audit_heads WHERE chain_id = 'system'",
            )
            done = await asyncio.to_thread(_cli, url, state, "verify", "--json")
            assert done.returncode == 1
            report = json.loads(done.stdout)
            assert [(b["chain_id"], b["kind"]) for b in report["breaks"]] == [
                ("system", "missing_rows")
            ]
            since = "2000-01-01T00:00:00+00:00"
            done = await asyncio.to_thread(_cli, url, state, "verify", "--since", since)
            assert done.returncode == 1 and "BROKEN chain system" in done.stdout
            done = await asyncio.to_thread(_cli, url, state, "verify", "--since", "yesterday")
            assert done.returncode == 2 and "ISO 8601" in done.stderr
        finally:
            await db.close()

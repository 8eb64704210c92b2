"""Audit archives against real PostgreSQL and Redis, with a local-directory backend designated
for archives (no Ray: the backends are reached by clients built in this process). The
archiver seals each chain's segments to the archive public key in the client SDK's format
(the client opens them with the private key and finds the rows), stores them on the archive
backend, and the signed checkpoints go there too; altering or dropping a segment is seen by
``verify``; a row altered after it was archived is seen through the index."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from actors.audit_trail import AuditTrail
from actors.healing import HealingContext
from client import unseal
from core.sealing import generate_master_key
from core.settings import Settings
from jobs.audit_archiver import ARCHIVE_BUCKET, AuditArchiver
from jobs.audit_checkpointer import AuditCheckpointer
from jobs.snapshot_format import BINDING_TENANT, read_descriptor
from schema.audit import AuditEntry
from tests.support.database import private_database_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[HealingContext]:
    state = tmp_path / "state"
    state.mkdir()
    (state / "master.key").write_bytes(generate_master_key() + b"\n")
    async with private_database_url("bp_audit_archive") as url:
        settings = Settings(database_url=url, state_dir=str(state))
        context = await HealingContext.connect(settings, use_ray=False)
        try:
            yield context
        finally:
            await context.store.close()


@pytest.fixture
def archive_key(tmp_path: Path) -> tuple[x25519.X25519PrivateKey, str]:
    key = x25519.X25519PrivateKey.generate()
    path = tmp_path / "archive.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, str(path)


async def add_archive_backend(ctx: HealingContext, where: Path) -> int:
    where.mkdir()
    async with ctx.store.db.transaction() as conn:
        record = await ctx.store.backends.add(
            conn,
            name="vault",
            kind="local",
            path=str(where),
            region="eu-central",
            country="DE",
            jurisdiction="EU",
            provider="local",
            settings={"backend_type": "local", "archive": True},
        )
    await ctx.registry.refresh()
    return record.id


async def append(ctx: HealingContext, tenant: int | None, n: int) -> None:
    entries = [
        AuditEntry("AK", "GetObject", f"b/{i}", f"r{i}", "ok", tenant, size=i) for i in range(n)
    ]
    async with ctx.store.db.transaction() as conn:
        await ctx.store.audit.append_many(conn, entries)


def segment_files(where: Path) -> list[Path]:
    return sorted(p for p in where.rglob("*") if p.is_file() and p.parent.name != "cc")


async def test_segments_are_sealed_to_the_archive_key_and_stored_on_the_archive_backend(
    ctx: HealingContext, archive_key: tuple[x25519.X25519PrivateKey, str], tmp_path: Path
) -> None:
    private, public_file = archive_key
    vault = tmp_path / "vault"
    backend_id = await add_archive_backend(ctx, vault)
    await append(ctx, 5, 7)
    await append(ctx, None, 2)
    archiver = AuditArchiver(ctx, public_key_file=public_file, segment_rows=4)
    assert await archiver.run_once() == {"segments": 3, "rows": 9, "chains_stopped": 0}
    assert await archiver.run_once() == {"segments": 0, "rows": 0, "chains_stopped": 0}
    async with ctx.store.db.connection() as conn:
        index = await ctx.store.audit.archives(conn)
    assert [(r["chain_id"], r["first_seq"], r["last_seq"]) for r in index] == [
        ("system", 1, 2),
        ("tenant:5", 1, 4),
        ("tenant:5", 5, 7),
    ]
    assert {r["backend_id"] for r in index} == {backend_id}
    # Nothing went to the directory: the archive backend holds them, under opaque names.
    assert not (ctx.settings.audit_checkpoint_path / "segments").exists()
    files = segment_files(vault)
    assert len(files) == 3 and all("tenant" not in str(p) for p in files)
    # The client SDK opens a segment with the private key and finds the rows.
    seg = index[2]
    raw = (vault / seg["locator"]).read_bytes()
    handle = io.BytesIO(raw)
    descriptor = read_descriptor(handle)
    plaintext = unseal(
        handle.read(),
        descriptor["envelope"],
        private,
        tenant=BINDING_TENANT,
        bucket=ARCHIVE_BUCKET,
        key="tenant:5/5-7",
    )
    lines = [json.loads(line) for line in plaintext.decode().splitlines()]
    assert [(r["chain_id"], r["chain_seq"], r["bytes"]) for r in lines] == [
        ("tenant:5", 5, 4),
        ("tenant:5", 6, 5),
        ("tenant:5", 7, 6),
    ]
    assert lines[-1]["entry_hash"] == bytes(seg["last_hash"]).hex()
    # Checkpoints go to the archive backend too, and verify finds them there.
    await AuditCheckpointer(ctx).run_once()
    assert list((vault / "cc").iterdir())
    report = await AuditTrail.of(ctx).verify()
    assert report.ok, report.as_dict()
    assert report.checkpoint is not None and report.checkpoint["source"].startswith("database")


async def test_an_altered_or_dropped_segment_is_detected(
    ctx: HealingContext, archive_key: tuple[x25519.X25519PrivateKey, str], tmp_path: Path
) -> None:
    vault = tmp_path / "vault"
    await add_archive_backend(ctx, vault)
    await append(ctx, 5, 6)
    await append(ctx, 6, 3)
    await AuditArchiver(ctx, public_key_file=archive_key[1], segment_rows=3).run_once()
    trail = AuditTrail.of(ctx)
    assert (await trail.verify()).ok
    async with ctx.store.db.connection() as conn:
        index = {(r["chain_id"], r["first_seq"]): r for r in await ctx.store.audit.archives(conn)}
    altered = vault / index[("tenant:5", 4)]["locator"]
    data = bytearray(altered.read_bytes())
    data[-1] ^= 1
    altered.write_bytes(bytes(data))
    (vault / index[("tenant:6", 1)]["locator"]).unlink()
    report = await trail.verify()
    assert {(b.chain_id, b.kind, b.chain_seq) for b in report.breaks} == {
        ("tenant:5", "archive_sha256", 4),
        ("tenant:6", "archive_missing", 1),
    }


async def test_a_row_altered_after_archiving_is_seen_through_the_index(
    ctx: HealingContext, archive_key: tuple[x25519.X25519PrivateKey, str]
) -> None:
    """Without an archive backend the segments go to the configured directory. A superuser
    who rewrites an archived chain end to end (rows and head, hashes recomputed) still
    differs from the entry hash the index recorded."""
    await append(ctx, 5, 3)
    await AuditArchiver(ctx, public_key_file=archive_key[1]).run_once()
    assert len(segment_files(ctx.settings.audit_checkpoint_path / "segments")) == 1
    from core.audit_chain import GENESIS, row_digest
    from schema.audit import row_of

    async with ctx.store.db.transaction() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        rows = [row_of(r) for r in await ctx.store.audit.chain_rows(conn, "tenant:5", 1, 3)]
        prev = GENESIS
        for row in rows:
            forged = row.__class__(**{**row.__dict__, "actor": "nobody", "prev_hash": prev})
            digest = row_digest(prev, forged)
            await conn.execute(
                "UPDATE audit_log SET actor = 'nobody', prev_hash = $2, entry_hash = $3"
                " WHERE seq = $1",
                row.id,
                prev,
                digest,
            )
            prev = digest
        await conn.execute(
            "UPDATE audit_heads SET entry_hash = $1 WHERE chain_id = 'tenant:5'", prev
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
    async with ctx.store.db.connection() as conn:
        assert (await ctx.store.audit.verify(conn)).ok  # the chain alone is consistent
    report = await AuditTrail.of(ctx).verify()
    assert [(b.chain_id, b.kind) for b in report.breaks] == [("tenant:5", "archive_index")]

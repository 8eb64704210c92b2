"""Access entries group-committed by ``GroupAppender`` (real PostgreSQL, a private database, no
Ray): concurrent callers share transactions yet every entry lands on its tenant's chain in
arrival order and the chains verify; each caller returns only once its entry is committed; one
entry the database refuses fails alone; a caller that goes away still has its entry written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from schema.audit import AuditEntry, GroupAppender
from schema.store import MetadataStore
from tests.support.database import private_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def store() -> AsyncIterator[MetadataStore]:
    async with private_database("bp_audit_group", max_size=10) as db:
        yield MetadataStore(db)


def access(tenant: int, n: int, resource: str | None = None) -> AuditEntry:
    return AuditEntry(
        "AKGROUP", "GetObject", resource or f"b/k{n}", f"req-{n}", "ok 200", tenant, size=n
    )


async def chain_rows(store: MetadataStore, tenant: int) -> list[str]:
    async with store.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT request_id FROM audit_log WHERE chain_id = $1 ORDER BY chain_seq",
            f"tenant:{tenant}",
        )
    return [r["request_id"] for r in rows]


async def test_concurrent_entries_share_transactions_and_verify(store: MetadataStore) -> None:
    appender = GroupAppender(store.db, store.audit)
    entries = [access(1 + n % 3, n) for n in range(60)]
    await asyncio.gather(*(appender.append(e) for e in entries))
    assert appender.appended == 60
    assert appender.transactions < 60  # grouped: fewer transactions than entries
    for tenant in (1, 2, 3):
        # Every entry is on its own tenant's chain, in the order the callers arrived.
        assert await chain_rows(store, tenant) == [
            e.request_id for e in entries if e.tenant_id == tenant
        ]
    async with store.db.connection() as conn:
        report = await store.audit.verify(conn)
    assert report.ok, report.as_dict()
    assert report.entries == 60


async def test_append_returns_after_commit_and_alone_costs_one_transaction(
    store: MetadataStore,
) -> None:
    appender = GroupAppender(store.db, store.audit)
    for n in range(3):
        await appender.append(access(7, n))
        # Committed before append returned: another connection sees it.
        assert await chain_rows(store, 7) == [f"req-{i}" for i in range(n + 1)]
    assert appender.transactions == 3


async def test_a_refused_entry_fails_alone(store: MetadataStore) -> None:
    appender = GroupAppender(store.db, store.audit)
    bad = access(4, 99, resource="b/nul\x00key")  # PostgreSQL text cannot hold NUL
    good = [access(4, n) for n in range(5)]
    results = await asyncio.gather(
        *(appender.append(e) for e in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False, False, False]
    assert await chain_rows(store, 4) == [e.request_id for e in good]
    async with store.db.connection() as conn:
        assert (await store.audit.verify(conn)).ok


async def test_a_caller_that_goes_away_still_has_its_entry_written(store: MetadataStore) -> None:
    appender = GroupAppender(store.db, store.audit)
    first = asyncio.create_task(appender.append(access(5, 1)))
    second = asyncio.create_task(appender.append(access(5, 2)))
    await asyncio.sleep(0)  # both queued
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    # Both were queued before the flush started, so the flush ``first`` waited for holds both.
    assert await chain_rows(store, 5) == ["req-1", "req-2"]

"""Listing a real source (moto server processes) into the manifest in real PostgreSQL: 1,000+
keys with URL-hostile names and empty objects become Parquet segments and rows page by page;
a lister that fails, crashes inside a transaction or is SIGKILLed resumes with no gap and no
duplicate; a re-run lists only new or changed objects as work; each source failure is its own
clear error."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from actors.source_bucket import SourceBucket, open_source
from core.credential_seal import SealOpenFailed, seal
from core.errors import Conflict
from core.import_source import (
    SourceAccessDenied,
    SourceBucketMissing,
    SourceCredentials,
    SourceLocation,
    SourceUnreachable,
)
from core.import_state import Color
from jobs.import_manifest import ManifestLister, read_segment
from schema.db import Database
from schema.import_records import ImportRun, ImportSource, KeyRef, ManifestEntry
from schema.imports import ImportRepository
from schema.tenants import TenantRepository
from tests.support.database import private_database_url
from tests.support.import_rows import SPECIAL_KEYS, destination, stored_version
from tests.support.processes import MotoServer, free_port
from tests.support.source_moto import iam_source

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
R = ImportRepository()
PASS = "source passphrase, never stored"
BUCKET = "legacy"
EMPTY_KEYS = [f"empty/{i}" for i in range(12)]
DATA_KEYS = [f"data/{i:05d}.bin" for i in range(1040)]


def s3(endpoint: str, access_key: str = "any", secret_key: str = "any") -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def expected(moto: MotoServer) -> list[tuple[str, int, str]]:
    """The source bucket, filled once: (key, size, etag) as a direct listing sees it."""
    client = s3(moto.endpoint)
    client.create_bucket(Bucket=BUCKET)
    bodies = {k: b"" for k in EMPTY_KEYS}
    bodies.update({k: f"special {k}".encode() for k in SPECIAL_KEYS})
    bodies.update({k: os.urandom(i % 7 * 37) for i, k in enumerate(DATA_KEYS)})
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), bodies.items()
            )
        )
    listed = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        listed += [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in page.get("Contents", [])]
    assert sorted(k for k, _, _ in listed) == sorted(bodies)
    return listed


@pytest.fixture(scope="module")
async def db_url() -> AsyncIterator[str]:
    async with private_database_url("bp_import_manifest") as url:
        yield url


@pytest.fixture(scope="module")
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(db_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
async def tenant_id(db: Database) -> int:
    async with db.transaction() as conn:
        return (await TenantRepository().create(conn, f"t-{secrets.token_hex(4)}")).id


async def new_source(
    db: Database, tenant_id: int, endpoint: str, *, prefix: str = "", bucket: str = BUCKET
) -> ImportSource:
    sealed = seal({"access_key": "AKIDEXAMPLE", "secret_key": "source-secret-xyz"}, PASS)
    async with db.transaction() as conn:
        return await R.create_source(
            conn,
            tenant_id,
            f"src-{secrets.token_hex(3)}",
            endpoint=endpoint,
            bucket=bucket,
            prefix=prefix,
            sealed=sealed,
        )


async def new_run(db: Database, tenant_id: int, source: ImportSource) -> ImportRun:
    async with db.transaction() as conn:
        return await R.create_run(
            conn, tenant_id, source.id, "dest", recipients=[KeyRef("tenant-key", 1)]
        )


async def manifest(db: Database, run_id: int) -> list[ManifestEntry]:
    """Every segment of the run, read back from its Parquet bytes, checked for contiguity."""
    async with db.connection() as conn:
        segments = await R.segments(conn, run_id)
        assert [s.seq for s in segments] == list(range(len(segments)))
        for before, after in zip(segments, segments[1:], strict=False):
            assert before.last_key < after.first_key
        entries: list[ManifestEntry] = []
        for segment in segments:
            page = read_segment(await R.segment_parquet(conn, run_id, segment.seq))
            assert len(page) == segment.keys
            assert (page[0].key, page[-1].key) == (segment.first_key, segment.last_key)
            entries += page
    return entries


async def rows(db: Database, run_id: int) -> list[tuple[str, int, str]]:
    async with db.connection() as conn:
        found = await R.objects(conn, run_id, limit=1_000_000)
    return [(o.key, o.size, o.etag) for o in found]


def triples(entries: list[ManifestEntry]) -> list[tuple[str, int, str]]:
    return [(e.key, e.size, e.etag) for e in entries]


async def test_a_source_of_1000_plus_keys_becomes_a_manifest(
    db: Database, tenant_id: int, moto: MotoServer, expected: list[tuple[str, int, str]]
) -> None:
    source = await new_source(db, tenant_id, moto.endpoint)
    run = await new_run(db, tenant_id, source)
    lister = ManifestLister(db, page_size=100)
    report = await lister.run(run.id, open_source(source, PASS, timeout_s=10))
    assert len(expected) > 1000
    assert (report.objects, report.skipped, report.complete, report.resumed) == (
        len(expected),
        0,
        True,
        False,
    )
    assert report.segments == -(-len(expected) // 100)
    entries = await manifest(db, run.id)
    assert triples(entries) == expected  # same keys, same order, byte for byte
    assert all(e.last_modified is not None for e in entries)
    assert all(e.checksum is None or e.checksum.endswith(":") for e in entries)
    assert await rows(db, run.id) == expected
    by_key = {k: size for k, size, _ in expected}
    assert all(by_key[k] == 0 for k in EMPTY_KEYS) and set(SPECIAL_KEYS) <= set(by_key)
    async with db.connection() as conn:
        done = await R.get_run(conn, run.id)
        assert (done.state, done.manifest_complete) == ("running", True)
        assert (done.objects_total, done.bytes_total) == (
            len(expected),
            sum(s for _, s, _ in expected),
        )
        parquet = await R.segment_parquet(conn, run.id, 3)
    metadata = pq.read_schema(io.BytesIO(parquet)).metadata
    assert metadata[b"run_id"] == str(run.id).encode() and metadata[b"seq"] == b"3"
    again = await lister.run(run.id, open_source(source, PASS))
    assert (again.segments, again.objects, again.complete) == (0, 0, True)


async def test_only_the_prefix_is_listed(
    db: Database, tenant_id: int, moto: MotoServer, expected: list[tuple[str, int, str]]
) -> None:
    source = await new_source(db, tenant_id, moto.endpoint, prefix="data/009")
    run = await new_run(db, tenant_id, source)
    await ManifestLister(db, page_size=7).run(run.id, open_source(source, PASS))
    assert await rows(db, run.id) == [t for t in expected if t[0].startswith("data/009")]


class FailingSource:
    """The real source, failing (connection lost) after ``pages`` pages."""

    def __init__(self, real: SourceBucket, pages: int) -> None:
        self.real, self.left = real, pages

    def pages(self, **kw: Any) -> Iterator[list[ManifestEntry]]:
        for page in self.real.pages(**kw):
            if self.left == 0:
                raise SourceUnreachable("source lost: ConnectionClosedError")
            self.left -= 1
            yield page


class CrashingRepository(ImportRepository):
    """Dies inside the transaction of segment ``seq``, after its rows were written."""

    def __init__(self, seq: int) -> None:
        self.seq = seq

    async def add_segment(self, conn: Any, run_id: int, seq: int, *args: Any) -> tuple[int, int]:
        result = await super().add_segment(conn, run_id, seq, *args)
        if seq == self.seq:
            raise RuntimeError("killed before commit")
        return result


async def test_a_failed_or_crashed_lister_resumes_without_gaps_or_duplicates(
    db: Database, tenant_id: int, moto: MotoServer, expected: list[tuple[str, int, str]]
) -> None:
    source = await new_source(db, tenant_id, moto.endpoint)
    run = await new_run(db, tenant_id, source)
    real = open_source(source, PASS)
    with pytest.raises(SourceUnreachable):
        await ManifestLister(db, page_size=50).run(run.id, FailingSource(real, 4))  # type: ignore[arg-type]
    assert len(await manifest(db, run.id)) == 200
    crashing = ManifestLister(db, page_size=50, repository=CrashingRepository(seq=6))
    with pytest.raises(RuntimeError, match="killed before commit"):
        await crashing.run(run.id, real)
    # segments 4 and 5 stored; segment 6 rolled back with its rows
    assert triples(await manifest(db, run.id)) == expected[:300] == await rows(db, run.id)
    async with db.connection() as conn:
        partial = await R.get_run(conn, run.id)
    assert (partial.state, partial.manifest_complete, partial.objects_total) == (
        "listing",
        False,
        300,
    )
    report = await ManifestLister(db, page_size=50).run(run.id, real)
    assert report.resumed and report.objects == len(expected) - 300
    assert triples(await manifest(db, run.id)) == expected == await rows(db, run.id)


class CancellingRepository(ImportRepository):
    """The tenant cancels the run (another connection) just before segment ``seq`` is stored."""

    def __init__(self, db: Database, seq: int) -> None:
        self.db, self.seq = db, seq

    async def add_segment(self, conn: Any, run_id: int, seq: int, *args: Any) -> tuple[int, int]:
        if seq == self.seq:
            async with self.db.transaction() as other:
                await self.set_state(other, run_id, "cancelled")
        return await super().add_segment(conn, run_id, seq, *args)


async def test_a_cancelled_run_stops_its_lister(
    db: Database, tenant_id: int, moto: MotoServer, expected: list[tuple[str, int, str]]
) -> None:
    source = await new_source(db, tenant_id, moto.endpoint)
    run = await new_run(db, tenant_id, source)
    lister = ManifestLister(db, page_size=100, repository=CancellingRepository(db, seq=2))
    with pytest.raises(Conflict, match="cancelled, not listing"):
        await lister.run(run.id, open_source(source, PASS))
    assert triples(await manifest(db, run.id)) == expected[:200]
    with pytest.raises(Conflict, match="only a pending run is listed"):
        await ManifestLister(db).run(run.id, open_source(source, PASS))


_KILLABLE_LISTER = """
import asyncio, sys, time
from jobs.import_manifest import ManifestLister
from actors.source_bucket import open_source
from schema.db import Database
from schema.imports import ImportRepository

class Slow:
    def __init__(self, real):
        self.real = real
    def pages(self, **kw):
        for page in self.real.pages(**kw):
            time.sleep(0.05)
            yield page

async def main(url, run_id, passphrase):
    db = await Database.connect(url)
    repo = ImportRepository()
    async with db.connection() as conn:
        run = await repo.get_run(conn, run_id)
        source = await repo.get_source(conn, run.source_id)
    await ManifestLister(db, page_size=20).run(run_id, Slow(open_source(source, passphrase)))

passphrase = sys.stdin.readline().rstrip("\\n")  # in memory only: not argv, not environment
asyncio.run(main(sys.argv[1], int(sys.argv[2]), passphrase))
"""


async def test_a_killed_lister_process_resumes_from_its_last_segment(
    db: Database,
    db_url: str,
    tenant_id: int,
    moto: MotoServer,
    expected: list[tuple[str, int, str]],
) -> None:
    source = await new_source(db, tenant_id, moto.endpoint)
    run = await new_run(db, tenant_id, source)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_LISTER, db_url, str(run.id)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(PASS.encode() + b"\n")
        proc.stdin.close()
        deadline = time.monotonic() + 60
        while True:
            async with db.connection() as conn:
                stored = len(await R.segments(conn, run.id))
            if stored >= 5 or proc.poll() is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.kill()  # SIGKILL: no cleanup, mid-listing
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    partial = await manifest(db, run.id)
    assert 5 * 20 <= len(partial) < len(expected)
    assert triples(partial) == expected[: len(partial)] == await rows(db, run.id)
    report = await ManifestLister(db, page_size=20).run(run.id, open_source(source, PASS))
    assert report.resumed and report.objects == len(expected) - len(partial)
    assert triples(await manifest(db, run.id)) == expected == await rows(db, run.id)


async def test_a_rerun_lists_only_new_or_changed_objects_as_work(
    db: Database, tenant_id: int, moto: MotoServer
) -> None:
    client = s3(moto.endpoint)
    bucket = f"rerun-{secrets.token_hex(3)}"
    client.create_bucket(Bucket=bucket)
    keys = [f"r/{i:02d}" for i in range(30)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=f"v1 {key}".encode())
    source = await new_source(db, tenant_id, moto.endpoint, bucket=bucket)
    first = await new_run(db, tenant_id, source)
    await ManifestLister(db, page_size=8).run(first.id, open_source(source, PASS))
    bucket_id, backend_id = await destination(db, tenant_id)
    versions = [(k, await stored_version(db, tenant_id, bucket_id, backend_id, k)) for k in keys]
    async with db.transaction() as conn:
        await R.mark_copied(conn, first.id, versions)
        await R.mark_verified(conn, first.id, keys)
        await R.set_state(conn, first.id, "verifying")
        await R.set_state(conn, first.id, "done")
        assert (await R.status(conn, first.id)).color is Color.GREEN
    for key in keys[:3]:  # changed: new content, new ETag
        client.put_object(Bucket=bucket, Key=key, Body=f"v2 {key}".encode())
    client.put_object(Bucket=bucket, Key="r/new-1", Body=b"new")
    client.put_object(Bucket=bucket, Key="r/new-2", Body=b"")
    client.delete_object(Bucket=bucket, Key=keys[-1])

    second = await new_run(db, tenant_id, source)
    report = await ManifestLister(db, page_size=8).run(second.id, open_source(source, PASS))
    assert (report.objects, report.skipped) == (31, 26)
    async with db.connection() as conn:
        pending = [o.key for o in await R.pending_objects(conn, second.id)]
        run = await R.get_run(conn, second.id)
    assert pending == [*keys[:3], "r/new-1", "r/new-2"]
    assert (run.objects_total, run.objects_done) == (31, 26)


# -- each source failure is its own clear error --------------------------------------------

CREDS = SourceCredentials("AKIDEXAMPLE", "source-secret-xyz")


async def test_an_unreachable_source_is_a_clear_error_and_fails_the_run_red(
    db: Database, tenant_id: int
) -> None:
    refused = SourceBucket(
        SourceLocation(f"http://127.0.0.1:{free_port()}", BUCKET), CREDS, max_attempts=1
    )
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match="unreachable: EndpointConnectionError") as err:
        refused.probe()
    assert "source-secret-xyz" not in str(err.value) and err.value.__cause__ is None
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        hung = SourceBucket(
            SourceLocation(f"http://127.0.0.1:{port}", BUCKET), CREDS, timeout_s=0.5, max_attempts=1
        )
        with pytest.raises(SourceUnreachable, match="ReadTimeoutError"):
            list(hung.pages())
    assert time.monotonic() - started < 20

    source = await new_source(db, tenant_id, f"http://127.0.0.1:{free_port()}")
    run = await new_run(db, tenant_id, source)
    with pytest.raises(SourceUnreachable) as caught:
        await ManifestLister(db).run(run.id, open_source(source, PASS, max_attempts=1))
    async with db.transaction() as conn:
        assert (await R.get_run(conn, run.id)).state == "listing"  # the driver decides
        await R.set_state(conn, run.id, "failed", error=str(caught.value))
        status = await R.status(conn, run.id)
    assert status.color is Color.RED and "unreachable" in status.reason


async def test_a_wrong_passphrase_opens_nothing(db: Database, tenant_id: int) -> None:
    source = await new_source(db, tenant_id, "http://127.0.0.1:9")
    with pytest.raises(SealOpenFailed, match="wrong passphrase"):
        open_source(source, "not the passphrase")


@pytest.fixture(scope="module")
def auth_moto() -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto server that checks credentials (IAM): a user who may do anything with a bucket
    holding one object, and a user with no permission."""
    with iam_source(BUCKET, {"one": b"1"}) as source:
        yield source


def test_bad_credentials_and_a_missing_bucket_are_clear_errors(
    auth_moto: tuple[MotoServer, dict[str, str]],
) -> None:
    server, keys = auth_moto
    here = SourceLocation(server.endpoint, BUCKET)
    good = SourceCredentials(keys["access_key"], keys["secret_key"])
    assert [e.key for page in SourceBucket(here, good).pages() for e in page] == ["one"]
    cases = [
        (SourceCredentials("AKIAUNKNOWNKEY000000", "x" * 40), "InvalidAccessKeyId"),
        (SourceCredentials(keys["access_key"], "wrong-secret"), "SignatureDoesNotMatch"),
        (SourceCredentials(keys["nobody_access_key"], keys["nobody_secret_key"]), "AccessDenied"),
    ]
    for credentials, code in cases:
        with pytest.raises(SourceAccessDenied, match=f"refused access: {code}") as err:
            list(SourceBucket(here, credentials, max_attempts=1).pages())
        assert credentials.secret_key not in str(err.value)
        assert credentials.secret_key not in repr(credentials)
    missing = SourceBucket(SourceLocation(server.endpoint, "no-such-bucket"), good)
    with pytest.raises(SourceBucketMissing, match="NoSuchBucket"):
        missing.probe()


async def test_the_source_secret_is_nowhere_in_the_import_tables(
    db: Database, tenant_id: int
) -> None:
    await new_run(db, tenant_id, await new_source(db, tenant_id, "http://127.0.0.1:9"))
    async with db.connection() as conn:
        for table in (
            "import_sources",
            "import_runs",
            "import_objects",
            "import_manifest_segments",
        ):
            dump = await conn.fetchval(f"SELECT string_agg(t::text, '') FROM {table} t")
            assert dump is None or "source-secret-xyz" not in dump
            assert dump is None or PASS not in dump

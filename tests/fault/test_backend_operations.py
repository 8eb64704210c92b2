"""Backends operated at run time (issue 13), against real moto server processes, PostgreSQL,
Redis and Ray: a backend added while running takes new writes; an onboarding probe that fails
registers nothing and names its step; a stopped backend is excluded by the shared health
within a bounded time while writes go on, and once back its pending replicas complete; a
drained backend's ~500 replicated and erasure-coded objects are re-placed per policy, a
region-locked one is reported blocked and never leaves its jurisdiction, and removal is
refused until nothing references the backend."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from actors.healing import HealingContext
from actors.replication_agent import AgentLoop
from jobs.vacuumer import Vacuumer
from tests.integration.test_policy_placement import with_class
from tests.support.cluster import MOTO_KEY, MOTO_SECRET, Federation
from tests.support.processes import MotoServer, free_port
from tests.support.tamper_proxy import TamperProxy

pytestmark = pytest.mark.fault

EC_CLASS = "DrainEC"


def _with_ec_class(cluster: Federation) -> str:
    """The policy in force plus ``EC_CLASS`` (the session federation is shared: classes other
    tests' buckets use must stay, or the document is refused)."""
    current = cluster.admin("GET", "/admin/policy")
    assert current.status_code == 200, current.text
    document = yaml.safe_load(current.json()["document"]) or {}
    document.setdefault("version", 1)
    document.setdefault("classes", {})[EC_CLASS] = {"erasure": {"k": 2, "m": 1}}
    return str(yaml.safe_dump(document, sort_keys=False))


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def clean_slate(cluster: Federation) -> None:
    """Start from a federation without other modules' objects and queued work (their damage
    would otherwise be healed by this module's agents); see test_self_healing.clean_slate."""
    cluster.sql("DELETE FROM jobs")
    cluster.sql("DELETE FROM object_versions")


@pytest.fixture(scope="module")
async def heal(cluster: Federation) -> AsyncIterator[HealingContext]:
    settings = dataclasses.replace(
        cluster.settings, agent_lease_s=5.0, agent_poll_s=0.2, job_backoff_base_s=0.2
    )
    ctx = await HealingContext.connect(settings, use_ray=True)
    yield ctx
    await ctx.close()


def moto_payload(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "minio",
        "endpoint": endpoint,
        "bucket": f"store-{name}",
        "access_key": MOTO_KEY,
        "secret_key": MOTO_SECRET,
        "region": "ap-south",
        "country": "IN",
        "jurisdiction": "IN",
        **extra,
    }


def registered(cluster: Federation, name: str) -> int:
    rows = cluster.sql("SELECT count(*) AS n FROM backends WHERE name = $1", name)
    return int(rows[0]["n"])


def show(cluster: Federation, name: str) -> dict[str, Any]:
    response = cluster.admin("GET", f"/admin/backends/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def new_tenant(cluster: Federation) -> tuple[str, Any]:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    return name, cluster.s3(key, secret)


def set_allowed(cluster: Federation, tenant: str, backends: list[str] | None) -> None:
    response = cluster.admin(
        "PUT", f"/admin/tenants/{tenant}/placement", {"allowed_backends": backends}
    )
    assert response.status_code == 200, response.text


def placed(cluster: Federation, bucket: str, key: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in cluster.replicas(bucket, key):
        out.setdefault(r["backend"], set()).add(r["status"])
    return out


@contextlib.contextmanager
def extra_moto() -> Iterator[MotoServer]:
    moto = MotoServer()
    moto.start()
    try:
        yield moto
    finally:
        moto.stop()


@contextlib.contextmanager
def iam_moto(bucket: str) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto server with IAM on: ``full`` may do anything, ``nodelete`` anything but delete
    objects; one bucket exists."""
    server = MotoServer()
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "6"  # the IAM set-up below, then auth is on
    try:
        server.start()
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        keys: dict[str, str] = {}
        for user, statements in (
            ("full", [{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
            (
                "nodelete",
                [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
                ],
            ),
        ):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(
                UserName=user,
                PolicyName="p",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )
            keys[f"{user}_key"], keys[f"{user}_secret"] = key["AccessKeyId"], key["SecretAccessKey"]
        boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["full_key"],
            aws_secret_access_key=keys["full_secret"],
        ).create_bucket(Bucket=bucket)
        yield server, keys
    finally:
        server.stop()


async def asql(cluster: Federation, query: str, *args: Any) -> list[dict[str, Any]]:
    """``cluster.sql`` from an async test (it runs its own event loop, so in a thread)."""
    return await asyncio.to_thread(cluster.sql, query, *args)


async def aplaced(cluster: Federation, bucket: str, key: str) -> dict[str, set[str]]:
    return await asyncio.to_thread(placed, cluster, bucket, key)


async def run_agent(heal: HealingContext, done: Any, *, timeout_s: float, defer_s: float) -> None:
    """An in-process agent leasing data jobs until ``done()`` (bounded)."""
    agent = AgentLoop(heal, "ops-agent", lease_s=5.0, poll_s=0.2, defer_s=defer_s, concurrency=8)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await heal.registry.refresh()
        await agent.run_once()
        if await done():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not done within {timeout_s}s: agent stats {agent.snapshot()}")


# -- 1. added at run time ---------------------------------------------------------------------
def test_backend_added_at_run_time_takes_new_writes(cluster: Federation) -> None:
    with extra_moto() as moto:
        added = cluster.admin(
            "POST",
            "/admin/add-storage",
            moto_payload(
                "late2",
                moto.endpoint,
                create_bucket=True,
                signing_region="ap-south-1",
                sla={"availability": 99.9, "latency_ms": 250},
                flags={"residency": True, "supports_sse": False},
                capacity_bytes=10**9,
            ),
        )
        assert added.status_code == 200, added.text
        body = added.json()
        assert body["probe"]["bucket_created"] and body["probe"]["rtt_ms"] > 0
        assert body["probe"]["throughput_mbps"] > 0
        assert (body["type"], body["signing_region"], body["sla"]["latency_ms"]) == (
            "minio",
            "ap-south-1",
            250,
        )
        tenant, s3 = new_tenant(cluster)
        set_allowed(cluster, tenant, ["b0", "b2", "late2"])
        s3.create_bucket(Bucket="runtime-new")
        s3.put_object(Bucket="runtime-new", Key="k", Body=b"lands on the new backend")
        assert set(placed(cluster, "runtime-new", "k")) == {"b0", "b2", "late2"}
        cluster.wait_for(  # the new actor's first write may finish just after the quorum
            lambda: placed(cluster, "runtime-new", "k")["late2"] == {"ok"},
            what="the new backend's replica to be stored",
        )
        row = next(r for r in cluster.replicas("runtime-new", "k") if r["backend"] == "late2")
        direct = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_SECRET,
            region_name="ap-south-1",
        )
        assert direct.head_object(Bucket="store-late2", Key=row["locator"])["ContentLength"] > 0

        # Served to one tenant only: another tenant's writes may not go there.
        served = cluster.admin("PATCH", "/admin/backends/late2", {"tenants": [tenant]})
        assert served.status_code == 200, served.text
        assert served.json()["tenants"] == [tenant]
        other, other_s3 = new_tenant(cluster)
        set_allowed(cluster, other, ["b0", "b2", "late2"])
        other_s3.create_bucket(Bucket="runtime-other")
        with pytest.raises(ClientError) as exc:
            other_s3.put_object(Bucket="runtime-other", Key="k", Body=b"x")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "only 2 permitted backends" in exc.value.response["Error"]["Message"]
        # Served to every tenant again: the same write is placed.
        everyone = cluster.admin("PATCH", "/admin/backends/late2", {"tenants": None})
        assert everyone.status_code == 200 and everyone.json()["tenants"] is None
        cluster.wait_for(  # every gateway replica reloads the tenant lists with the bucket's
            lambda: _puts(other_s3, "runtime-other", "k"), what="the write to be placed"
        )

        # Validation errors are S3 XML 400s naming the field; the backend is not changed.
        bad = cluster.admin("PATCH", "/admin/backends/late2", {"endpoint": "http://x"})
        assert bad.status_code == 400 and "<Error>" in bad.text and "cannot change" in bad.text
        missing = cluster.admin("GET", "/admin/backends/nope")
        assert missing.status_code == 404 and "<Error>" in missing.text
        # Referenced: removal refused, naming what references it.
        refused = cluster.admin("DELETE", "/admin/backends/late2")
        assert refused.status_code == 409 and "stored pieces" in refused.text
        cluster.sql("DELETE FROM object_versions WHERE bucket_id IN (SELECT id FROM buckets"
                    " WHERE name IN ('runtime-new', 'runtime-other'))")  # fmt: skip
        cluster.sql("DELETE FROM garbage WHERE backend_id = (SELECT id FROM backends"
                    " WHERE name = 'late2' AND state <> 'removed')")  # fmt: skip
        removed = cluster.admin("DELETE", "/admin/backends/late2")
        assert removed.status_code == 200, removed.text
        row = cluster.sql("SELECT state, sealed_credentials FROM backends WHERE name = 'late2'")
        assert row == [{"state": "removed", "sealed_credentials": None}]


def _puts(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    except ClientError:
        return False
    return True


# -- 2. the onboarding probe ------------------------------------------------------------------
def _refused(cluster: Federation, payload: dict[str, Any], step: str) -> None:
    response = cluster.admin("POST", "/admin/add-storage", payload)
    assert response.status_code == 400, response.text
    assert "<Error>" in response.text and f"probe failed at step '{step}'" in response.text
    assert registered(cluster, payload["name"]) == 0


def test_each_probe_failure_registers_nothing_and_names_its_step(cluster: Federation) -> None:
    port = free_port()
    _refused(cluster, moto_payload("p-unreach", f"http://127.0.0.1:{port}"), "unreachable")
    with extra_moto() as plain:
        tls = moto_payload("p-tls", f"https://127.0.0.1:{plain.port}", create_bucket=True)
        _refused(cluster, tls, "tls")
        _refused(cluster, moto_payload("p-nobucket", plain.endpoint), "bucket-missing")
        proxy = TamperProxy(target=plain.endpoint)
        proxy.start()
        try:
            lying = moto_payload("p-lies", proxy.endpoint, create_bucket=True)
            _refused(cluster, lying, "read-after-write")
        finally:
            proxy.stop()
    with iam_moto("probe-bucket") as (server, keys):
        base = moto_payload("p-iam", server.endpoint, bucket="probe-bucket")
        wrong = {**base, "access_key": keys["full_key"], "secret_key": keys["full_secret"] + "x"}
        _refused(cluster, wrong, "credentials")
        _refused(
            cluster,
            {**base, "access_key": keys["nodelete_key"], "secret_key": keys["nodelete_secret"]},
            "delete-refused",
        )
        ok = cluster.admin(
            "POST",
            "/admin/add-storage",
            {**base, "access_key": keys["full_key"], "secret_key": keys["full_secret"]},
        )
        assert ok.status_code == 200, ok.text
        assert not ok.json()["probe"]["bucket_created"]
        removed = cluster.admin("DELETE", "/admin/backends/p-iam")  # never used: removable
        assert removed.status_code == 200, removed.text
    # Bad input never reaches the probe.
    bad = cluster.admin("POST", "/admin/add-storage", moto_payload("p-bad", "ftp://h"))
    assert bad.status_code == 400 and "'endpoint'" in bad.text and "<Error>" in bad.text


# -- 3. a backend stopped, then back -----------------------------------------------------------
async def test_stopped_backend_is_excluded_then_its_pending_replicas_complete(
    cluster: Federation, heal: HealingContext
) -> None:
    _, s3 = new_tenant(cluster)
    s3.create_bucket(Bucket="down-up")
    moto = cluster.motos[2]
    moto.kill()
    started = time.monotonic()
    try:
        cluster.wait_for(
            lambda: show(cluster, "b2")["health"]["state"] == "down",
            timeout_s=30,
            what="b2 to be recorded down",
        )
        print(f"b2 recorded down after {time.monotonic() - started:.1f} s")
        keys = [f"k{i}" for i in range(6)]
        for key in keys:  # writes go on: acknowledged at the quorum, b2's copy pending
            s3.put_object(Bucket="down-up", Key=key, Body=os.urandom(5000))
            assert await aplaced(cluster, "down-up", key) == {
                "b0": {"ok"}, "b1": {"ok"}, "b2": {"pending"}
            }  # fmt: skip
        # An agent finds b2 down and defers the jobs far into the future.
        agent = AgentLoop(heal, "ops-defer", lease_s=5.0, poll_s=0.2, defer_s=3600.0)
        await heal.registry.refresh()
        await agent.run_once()
        waiting = await asql(
            cluster,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'replicate' AND status = 'queued'"
            " AND run_after > now() + interval '30 minutes'",
        )
        assert waiting[0]["n"] == len(keys)
    finally:
        moto.start()  # empty, like a replaced disk; the managed bucket is recreated
    cluster.wait_for(
        lambda: show(cluster, "b2")["health"]["state"] != "down",
        timeout_s=30,
        what="b2 to be recorded back",
    )
    # Back: its jobs are due now (not in an hour), and an agent completes them.
    due = await asql(
        cluster,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'replicate' AND status = 'queued'"
        " AND run_after <= now()",
    )
    assert due[0]["n"] == len(keys)

    async def complete() -> bool:
        want = {"b0": {"ok"}, "b1": {"ok"}, "b2": {"ok"}}
        return all([await aplaced(cluster, "down-up", k) == want for k in keys])

    await run_agent(heal, complete, timeout_s=60, defer_s=3600.0)
    assert s3.get_object(Bucket="down-up", Key="k0")["ContentLength"] == 5000


# -- 4. drain and removal ---------------------------------------------------------------------
def _put_all(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=os.urandom(3000)), keys))


async def test_drain_replaces_every_piece_per_policy_blocks_the_locked_one_then_removes(
    cluster: Federation, heal: HealingContext
) -> None:
    applied = cluster.admin("PUT", "/admin/policy", {"document": _with_ec_class(cluster)})
    assert applied.status_code == 200, applied.text
    with extra_moto() as moto:
        add = cluster.admin(
            "POST",
            "/admin/add-storage",
            {**moto_payload("dr", moto.endpoint, create_bucket=True),
             "region": "eu-north", "country": "SE", "jurisdiction": "EU"},
        )  # fmt: skip
        assert add.status_code == 200, add.text
        tenant, key_id, secret = cluster.create_tenant(allow_plaintext=True)
        s3 = cluster.s3(key_id, secret)
        set_allowed(cluster, tenant, ["b0", "b2", "dr"])  # every object gets a piece on dr
        s3.create_bucket(Bucket="drain-rep")
        s3.create_bucket(Bucket="drain-ec")
        replicated = [f"r{i:03d}" for i in range(400)]
        coded = [f"e{i:03d}" for i in range(100)]
        _put_all(s3, "drain-rep", replicated)
        _put_all(with_class(cluster.s3(key_id, secret), EC_CLASS), "drain-ec", coded)
        set_allowed(cluster, tenant, None)
        # A region-locked object: StandardClass in the EU needs b0, b1 and dr, nothing else.
        s3.create_bucket(Bucket="drain-eu")
        locked = cluster.admin(
            "PUT", f"/admin/tenants/{tenant}/buckets/drain-eu/placement", {"region_lock": ["eu"]}
        )
        assert locked.status_code == 200, locked.text
        s3.put_object(Bucket="drain-eu", Key="stays", Body=b"eu only")
        assert set(await aplaced(cluster, "drain-eu", "stays")) == {"b0", "b1", "dr"}

        drained = cluster.admin("POST", "/admin/backends/dr/drain")
        assert drained.status_code == 200, drained.text
        body = drained.json()
        assert body["state"] == "draining" and body["moves_queued"] == 501
        assert body["drain"]["objects_left"] == 501 and not body["drain"]["done"]
        # No new writes land on a draining backend.
        s3.put_object(Bucket="drain-rep", Key="after", Body=b"new")
        assert "dr" not in await aplaced(cluster, "drain-rep", "after")

        async def only_blocked_left() -> bool:
            drain = show(cluster, "dr")["drain"]
            return drain["objects_left"] == 1 and drain["blocked_objects"] == 1

        started = time.monotonic()
        await run_agent(heal, only_blocked_left, timeout_s=400, defer_s=3600.0)
        print(f"drained 500 objects in {time.monotonic() - started:.1f} s")
        drain = show(cluster, "dr")["drain"]
        (blocked,) = drain["blocked"]
        assert (blocked["bucket"], blocked["key"]) == ("drain-eu", "stays")
        assert "region lock eu" in blocked["rule"], blocked
        # Never moved out of its jurisdiction: still on its three EU backends.
        assert await aplaced(cluster, "drain-eu", "stays") == {
            "b0": {"ok"},
            "b1": {"ok"},
            "dr": {"ok"},
        }
        for key in replicated[::40]:
            assert await aplaced(cluster, "drain-rep", key) == {
                "b0": {"ok"},
                "b1": {"ok"},
                "b2": {"ok"},
            }
        for key in coded[::10]:
            rows = await asyncio.to_thread(cluster.replicas, "drain-ec", key)
            assert {r["backend"] for r in rows} == {"b0", "b1", "b2"}
            assert {r["status"] for r in rows} == {"ok"}
            assert sorted(r["shard_index"] for r in rows) == [0, 1, 2]
        left = await asql(
            cluster,
            "SELECT count(*) AS n FROM replicas r JOIN backends b ON b.id = r.backend_id"
            " WHERE b.name = 'dr' AND b.state <> 'removed'",
        )
        assert left[0]["n"] == 1
        assert s3.get_object(Bucket="drain-ec", Key="e042")["ContentLength"] == 3000

        refused = cluster.admin("DELETE", "/admin/backends/dr")
        assert refused.status_code == 409 and "stored pieces" in refused.text
        s3.delete_object(Bucket="drain-eu", Key="stays")  # the operator's way out
        cluster.wait_for(
            lambda: show(cluster, "dr")["drain"]["done"], what="the locked object to be gone"
        )
        # The moved pieces' old copies are garbage the vacuumer deletes (a periodic worker: a
        # pass can leave some for the next one when a delete times out on a loaded machine).
        for _ in range(20):
            await heal.registry.ping_all()
            await Vacuumer(heal, list_backends=False).run_once()
            if show(cluster, "dr")["drain"]["removable"]:
                break
            await asyncio.sleep(1)
        removed = cluster.admin("DELETE", "/admin/backends/dr")
        assert removed.status_code == 200, removed.text
        assert "dr" not in {b["name"] for b in cluster.admin("GET", "/admin/backends").json()}
        row = await asql(cluster, "SELECT sealed_credentials FROM backends WHERE name = 'dr'")
        assert row == [{"sealed_credentials": None}]
    await asql(cluster, "DELETE FROM object_versions WHERE redundancy_class = $1", EC_CLASS)

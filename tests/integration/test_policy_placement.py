"""Placement enforced on the write path, with six backends (three added at run time): the
class comes from the request, the bucket, the tenant or the policy; RegionalClass stays in one
country; an EU-locked bucket never touches a US backend, even with every EU backend down (a
clean 503); 3-of-5 replication acknowledges at 3 and finishes the other 2 in the background;
tenant allow-lists hold; erasure-coded objects round-trip with one shard per backend."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.test_policy_admin import HOT, apply
from tests.integration.test_s3_api import error_of
from tests.support.cluster import BACKENDS, MOTO_KEY, MOTO_SECRET, Federation
from tests.support.processes import MotoServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
EU = {"b0", "b1", "pl3", "pl4"}
US = {"b2", "pl5"}
COUNTRY = {"b0": "DE", "b1": "FR", "b2": "US", "pl3": "SE", "pl4": "DE", "pl5": "US"}


class Fleet:
    """The session's three backends plus extra moto servers added for one module; kills and
    restarts any of them by name."""

    def __init__(self, cluster: Federation, extra: dict[str, MotoServer]) -> None:
        self.cluster = cluster
        self.extra = extra
        self.base = {name: i for i, (name, *_) in enumerate(BACKENDS)}

    def moto(self, name: str) -> MotoServer:
        if name in self.base:
            return self.cluster.motos[self.base[name]]
        return self.extra[name]

    def kill(self, *names: str) -> None:
        for name in names:
            self.moto(name).kill()

    def revive(self) -> None:
        """Every killed backend started again (empty) and every frozen one thawed."""
        for name in [*self.base, *self.extra]:
            moto = self.moto(name)
            if not moto.running:
                moto.start()
            else:
                moto.thaw()
        self.cluster.ping_backends()

    def client(self, name: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.moto(name).endpoint,
            aws_access_key_id=MOTO_KEY,
            aws_secret_access_key=MOTO_SECRET,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )

    def keys(self, name: str) -> set[str]:
        """Object names on one backend (empty if its bucket does not exist)."""
        with contextlib.suppress(ClientError):
            listing = self.client(name).list_objects_v2(Bucket=f"store-{name}")
            return {o["Key"] for o in listing.get("Contents", [])}
        return set()

    def read(self, name: str, locator: str) -> bytes:
        obj = self.client(name).get_object(Bucket=f"store-{name}", Key=locator)
        body: bytes = obj["Body"].read()
        return body

    def write(self, name: str, locator: str, data: bytes) -> None:
        self.client(name).put_object(Bucket=f"store-{name}", Key=locator, Body=data)


@contextlib.contextmanager
def extra_backends(
    cluster: Federation, specs: list[tuple[str, str, str, str]]
) -> Iterator[dict[str, MotoServer]]:
    """Moto servers registered as backends for the duration; then marked removed (so the
    session's other tests see the three usual backends again) and stopped by PID."""
    motos: dict[str, MotoServer] = {}
    try:
        for name, region, country, jurisdiction in specs:
            moto = MotoServer()
            moto.start()
            motos[name] = moto
            cluster.add_moto_backend(name, moto, region, country, jurisdiction)
        yield motos
    finally:
        names = list(motos)
        cluster.sql("UPDATE backends SET state = 'removed' WHERE name = ANY($1::text[])", names)
        cluster.wait_for(
            lambda: (
                not set(names) & {b["name"] for b in cluster.admin("GET", "/admin/backends").json()}
            ),
            what="the registry to drop the extra backends",
        )
        for moto in motos.values():
            moto.stop()


@pytest.fixture(scope="module")
def fleet(cluster: Federation) -> Iterator[Fleet]:
    specs = [
        ("pl3", "eu-north", "SE", "EU"),
        ("pl4", "eu-west", "DE", "EU"),
        ("pl5", "us-west", "US", "US"),
    ]
    with extra_backends(cluster, specs) as motos:
        yield Fleet(cluster, motos)


@pytest.fixture
def tenant(cluster: Federation, fleet: Fleet) -> Iterator[tuple[str, Any]]:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    yield name, cluster.s3(key, secret)
    fleet.revive()


def with_class(s3: Any, name: str) -> Any:
    """``s3`` sending ``X-Redundancy-Class: name`` on every PutObject."""

    def add_header(request: Any, **_: Any) -> None:
        if "X-Redundancy-Class" in request.headers:  # a later with_class() wins
            del request.headers["X-Redundancy-Class"]
        request.headers["X-Redundancy-Class"] = name

    s3.meta.events.register("before-sign.s3.PutObject", add_header)
    return s3


def placed(cluster: Federation, bucket: str, key: str) -> dict[str, str]:
    return {r["backend"]: r["status"] for r in cluster.replicas(bucket, key)}


def stored_class(s3: Any, bucket: str, key: str) -> str:
    head = s3.head_object(Bucket=bucket, Key=key)
    return str(head["ResponseMetadata"]["HTTPHeaders"]["x-bp-redundancy-class"])


def test_class_from_request_bucket_tenant_or_policy(cluster: Federation, tenant) -> None:
    name, s3 = tenant
    s3.create_bucket(Bucket="classes")
    s3.put_object(Bucket="classes", Key="policy-default", Body=b"a")
    assert stored_class(s3, "classes", "policy-default") == "StandardClass"
    s3.put_object(Bucket="classes", Key="storage-class", Body=b"a", StorageClass="RegionalClass")
    assert stored_class(s3, "classes", "storage-class") == "RegionalClass"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="classes", Key="x", Body=b"a", StorageClass="GLACIER")
    assert error_of(exc) == (400, "InvalidStorageClass")

    cluster.admin("PUT", f"/admin/tenants/{name}/placement", {"default_class": "RegionalClass"})
    s3.put_object(Bucket="classes", Key="tenant-default", Body=b"a")
    assert stored_class(s3, "classes", "tenant-default") == "RegionalClass"
    cluster.admin(
        "PUT",
        f"/admin/tenants/{name}/buckets/classes/placement",
        {"default_class": "ColdArchiveClass"},
    )
    s3.put_object(Bucket="classes", Key="bucket-default", Body=b"a")
    assert stored_class(s3, "classes", "bucket-default") == "ColdArchiveClass"
    with_class(s3, "StandardClass").put_object(Bucket="classes", Key="header", Body=b"a")
    assert stored_class(s3, "classes", "header") == "StandardClass"
    with pytest.raises(ClientError) as exc:
        with_class(s3, "NoSuchClass").put_object(Bucket="classes", Key="bad", Body=b"a")
    assert error_of(exc) == (400, "InvalidArgument")


def test_regional_class_keeps_both_copies_in_one_country(cluster: Federation, tenant) -> None:
    name, s3 = tenant
    s3.create_bucket(Bucket="regional")
    s3 = with_class(s3, "RegionalClass")
    for i in range(4):
        data = os.urandom(1000 + i)
        s3.put_object(Bucket="regional", Key=f"k{i}", Body=data)
        backends = placed(cluster, "regional", f"k{i}")
        assert len(backends) == 2 and set(backends.values()) == {"ok"}
        assert len({COUNTRY[b] for b in backends}) == 1, backends
        assert s3.get_object(Bucket="regional", Key=f"k{i}")["Body"].read() == data
    # Locked to the US, the only country with two US backends is the US itself.
    cluster.admin("PUT", f"/admin/tenants/{name}/placement", {"region_lock": ["us"]})
    s3.put_object(Bucket="regional", Key="us", Body=b"u")
    assert set(placed(cluster, "regional", "us")) == US


def test_eu_locked_bucket_never_writes_to_a_us_backend(
    cluster: Federation, fleet: Fleet, tenant
) -> None:
    name, s3 = tenant
    s3.create_bucket(Bucket="eu-only")
    cluster.admin(
        "PUT", f"/admin/tenants/{name}/buckets/eu-only/placement", {"region_lock": ["eu"]}
    )
    us_keys = {b: fleet.keys(b) for b in US}
    for i in range(3):
        s3.put_object(Bucket="eu-only", Key=f"k{i}", Body=os.urandom(MIB + i))
        assert set(placed(cluster, "eu-only", f"k{i}")) <= EU
    # Every EU backend down, first before the gateway notices, then after: a 503 each time.
    fleet.kill(*EU)
    for detected in (False, True):
        if detected:
            cluster.ping_backends()
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="eu-only", Key=f"down-{detected}", Body=os.urandom(2 * MIB))
        assert error_of(exc) == (503, "ServiceUnavailable")
        assert not any(b in exc.value.response["Error"]["Message"] for b in EU | US)
    assert {b: fleet.keys(b) for b in US} == us_keys, "a US backend received data"
    assert (
        cluster.sql(
            "SELECT 1 FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
            " WHERE b.name = 'eu-only' AND v.key LIKE 'down-%'"
        )
        == []
    )


def test_three_of_five_acknowledges_at_three_and_finishes_two_in_the_background(
    cluster: Federation, fleet: Fleet, tenant
) -> None:
    name, s3 = tenant
    assert apply(cluster, HOT).status_code == 200  # defines Hot5 (or finds it defined)
    s3.create_bucket(Bucket="hot")
    explained = cluster.admin(
        "POST",
        "/admin/policy/explain",
        {"tenant": name, "bucket": "hot", "key": "k", "class": "Hot5"},
    ).json()
    targets = explained["targets"]
    assert len(targets) == 5
    slow = targets[-2:]
    data = os.urandom(300_000)
    fleet.moto(slow[0]).freeze()
    fleet.moto(slow[1]).freeze()
    try:
        start = time.monotonic()
        with_class(s3, "Hot5").put_object(Bucket="hot", Key="k", Body=data)
        elapsed = time.monotonic() - start
        at_ack = placed(cluster, "hot", "k")
    finally:
        fleet.moto(slow[0]).thaw()
        fleet.moto(slow[1]).thaw()
    assert elapsed < 4, f"the PUT waited for the frozen backends ({elapsed:.1f}s)"
    assert at_ack == {b: ("pending" if b in slow else "ok") for b in targets}
    jobs = cluster.sql(
        "SELECT j.status FROM jobs j JOIN object_versions v"
        " ON v.id = (j.payload->>'version_pk')::bigint JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = 'hot' AND j.kind = 'replicate'"
    )
    assert len(jobs) == 2
    cluster.wait_for(
        lambda: set(placed(cluster, "hot", "k").values()) == {"ok"},
        timeout_s=30,
        what="the two stragglers to finish",
    )
    statuses = {
        r["status"]
        for r in cluster.sql(
            "SELECT j.status FROM jobs j JOIN object_versions v"
            " ON v.id = (j.payload->>'version_pk')::bigint JOIN buckets b ON b.id = v.bucket_id"
            " WHERE b.name = 'hot' AND j.kind = 'replicate'"
        )
    }
    assert statuses == {"done"}
    assert s3.get_object(Bucket="hot", Key="k")["Body"].read() == data


def test_tenant_allow_list_is_enforced(cluster: Federation, tenant) -> None:
    name, s3 = tenant
    s3.create_bucket(Bucket="allowed")
    cluster.admin(
        "PUT", f"/admin/tenants/{name}/placement", {"allowed_backends": ["b0", "b1", "b2"]}
    )
    for i in range(3):
        s3.put_object(Bucket="allowed", Key=f"k{i}", Body=b"x")
        assert set(placed(cluster, "allowed", f"k{i}")) == {"b0", "b1", "b2"}
    with pytest.raises(ClientError) as exc:
        with_class(s3, "ColdArchiveClass").put_object(Bucket="allowed", Key="ec", Body=b"x")
    assert error_of(exc) == (400, "InvalidRequest")
    message = exc.value.response["Error"]["Message"]
    assert message == (
        "tenant allow-list: only 3 permitted backends, class ColdArchiveClass needs 6"
    )


@pytest.mark.parametrize("size", [0, 10, MIB, 3 * MIB + MIB // 2 + 7])
def test_erasure_coded_objects_round_trip(cluster: Federation, fleet: Fleet, tenant, size) -> None:
    _, s3 = tenant
    bucket = f"ec-{size}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    with_class(s3, "ColdArchiveClass").put_object(Bucket=bucket, Key="obj", Body=data)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-bp-redundancy-class"] == "ColdArchiveClass"
    # Acknowledged at 4 of 6 shards; the other two land in the background.
    cluster.wait_for(
        lambda: {r["status"] for r in cluster.replicas(bucket, "obj")} == {"ok"},
        what="every shard to be stored",
    )
    rows = cluster.replicas(bucket, "obj")
    parts = max(1, -(-size // MIB))
    assert len(rows) == 6 * parts and {r["status"] for r in rows} == {"ok"}
    for part in range(parts):
        shards = {r["shard_index"]: r for r in rows if r["part_number"] == part}
        assert sorted(shards) == list(range(6))
        assert len({r["backend"] for r in shards.values()}) == 6  # one shard per backend
        part_bytes = data[part * MIB : (part + 1) * MIB]
        assert {r["size"] for r in shards.values()} == {-(-len(part_bytes) // 2)}  # k = 2
        # What each backend holds is the shard its row describes (parity from the coding
        # task included), and the code is systematic: shard 0 is the start of the part.
        stored = {i: fleet.read(r["backend"], r["locator"]) for i, r in shards.items()}
        for i, r in shards.items():
            assert hashlib.sha256(stored[i]).digest() == bytes(r["sha256"]), (part, i)
        assert stored[0][: len(part_bytes)] == part_bytes[: len(stored[0])]
    recorded = cluster.sql(
        "SELECT p.part_number, p.size, p.sha256, p.k, p.m FROM parts p"
        " JOIN object_versions v ON v.id = p.version_pk JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 ORDER BY p.part_number",
        bucket,
    )
    assert [(r["part_number"], r["k"], r["m"]) for r in recorded] == [
        (i, 2, 4) for i in range(parts)
    ]
    for r in recorded:
        chunk = data[r["part_number"] * MIB : (r["part_number"] + 1) * MIB]
        assert (r["size"], bytes(r["sha256"])) == (len(chunk), hashlib.sha256(chunk).digest())
    if size > 2 * MIB:
        first, last = MIB - 5, 2 * MIB + 5
        ranged = s3.get_object(Bucket=bucket, Key="obj", Range=f"bytes={first}-{last}")
        assert ranged["Body"].read() == data[first : last + 1]

"""Proof of placement against the real federation (issue 14): a tenant's signed proof verifies
under the published deployment key (server and client verifiers, and ``bp verify
--placement``), names the jurisdictions of the backends that really hold the pieces, hides
the backends' names, refuses another tenant like any S3 read, fails verification when a lying
gateway alters it, reports a piece its backend has not yet stored (and so does ``bulletproof
compliance report``), and changes when a drain moves a piece to another country."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from actors.healing import HealingContext
from client.api import GatewayApi
from client.cli import main as bp_main
from client.errors import ProofInvalid
from client.placement_proof import parse_published_keys, verify_placement_proof
from client.remote import ObjectNotFound
from client.s3url import S3Url
from cluster.cli import main as bulletproof_main
from core.deployment_key import DeploymentKey, SignatureInvalid, verify_signed
from core.sealing import MasterKey
from jobs.scrubber import Scrubber
from jobs.vacuumer import Vacuumer
from tests.fault.test_backend_operations import (
    asql,
    extra_moto,
    moto_payload,
    run_agent,
    set_allowed,
    show,
)
from tests.support.cluster import BACKENDS, Federation
from tests.support.tamper_proxy import TamperProxy

pytestmark = pytest.mark.fault

LOCATION = {name: (region, country, jur) for name, region, country, jur in BACKENDS}


@pytest.fixture(scope="module")
async def heal(cluster: Federation) -> AsyncIterator[HealingContext]:
    settings = dataclasses.replace(
        cluster.settings, agent_lease_s=5.0, agent_poll_s=0.2, job_backoff_base_s=0.2
    )
    ctx = await HealingContext.connect(settings, use_ray=True)
    yield ctx
    await ctx.close()


@dataclasses.dataclass
class Owner:
    tenant: str
    key: str
    secret: str
    s3: Any

    def api(self, cluster: Federation, endpoint: str | None = None) -> GatewayApi:
        return GatewayApi(
            endpoint or cluster.endpoint, self.key, self.secret, region=cluster.settings.region
        )


def new_owner(cluster: Federation) -> Owner:
    tenant, key, secret = cluster.create_tenant(allow_plaintext=True)
    return Owner(tenant, key, secret, cluster.s3(key, secret))


def published(cluster: Federation) -> dict[str, Any]:
    answer = httpx.get(f"{cluster.endpoint}/.well-known/bulletproof/deployment-key", timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def proof_of(cluster: Federation, owner: Owner, bucket: str, key: str, **kw: Any) -> Any:
    with owner.api(cluster) as api:
        return api.placement_proof(S3Url(bucket, key), kw.get("version_id"))


def bp(
    mp: pytest.MonkeyPatch, cluster: Federation, owner: Owner, *args: str, endpoint: str = ""
) -> tuple[int, str, str]:
    for name in list(os.environ):
        if name.startswith(("BP_", "AWS_")):
            mp.delenv(name)
    mp.setenv("BP_CONFIG", "/nonexistent/bp.yaml")
    mp.setenv("BP_ENDPOINT", endpoint or cluster.endpoint)
    mp.setenv("BP_TENANT", owner.tenant)
    mp.setenv("BP_REGION", cluster.settings.region)
    mp.setenv("AWS_ACCESS_KEY_ID", owner.key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", owner.secret)
    out, err = io.StringIO(), io.StringIO()
    code = bp_main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def compliance(
    mp: pytest.MonkeyPatch, cluster: Federation, tenant: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    """``bulletproof compliance report --tenant T --json`` against the federation."""
    mp.setenv("BP_HTTP_PORT", str(cluster.settings.http_port))
    mp.setenv("BP_ADMIN_TOKEN", cluster.admin_token)
    capsys.readouterr()
    code = bulletproof_main(["compliance", "report", "--tenant", tenant, "--json"])
    return code, json.loads(capsys.readouterr().out)


def pieces_by_location(statement: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (p["region"], p["country"], p["jurisdiction"], p["state"]) for p in statement["pieces"]
    )


def expected_locations(cluster: Federation, bucket: str, key: str) -> list[tuple[str, ...]]:
    return sorted((*LOCATION[r["backend"]], r["status"]) for r in cluster.replicas(bucket, key))


# -- 1. the proof verifies, is true, and says nothing it should not ---------------------------
def test_proof_verifies_names_the_right_jurisdictions_and_hides_backends(
    cluster: Federation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    owner = new_owner(cluster)
    owner.s3.create_bucket(Bucket="proof-a")
    owner.s3.put_bucket_versioning(Bucket="proof-a", VersioningConfiguration={"Status": "Enabled"})
    first = owner.s3.put_object(Bucket="proof-a", Key="doc", Body=os.urandom(3000))["VersionId"]
    owner.s3.put_object(Bucket="proof-a", Key="doc", Body=os.urandom(2500))

    document = published(cluster)
    keys = parse_published_keys(document)
    signed = proof_of(cluster, owner, "proof-a", "doc")
    statement = verify_signed(signed, keys)  # the server's verifier
    proof = verify_placement_proof(signed, keys, bucket="proof-a", key="doc", tenant=owner.tenant)
    assert proof.statement == statement

    # True: each piece's location is its backend's configured one (StandardClass: b0, b1, b2).
    assert pieces_by_location(statement) == expected_locations(cluster, "proof-a", "doc")
    assert proof.jurisdictions == ["EU", "US"] and proof.fully_placed
    rows = cluster.replicas("proof-a", "doc")
    assert sorted(p["sha256"] for p in statement["pieces"]) == sorted(
        bytes(r["sha256"]).hex() for r in rows
    )
    assert all(p["verified_at"] for p in statement["pieces"])
    assert len({p["holder"] for p in statement["pieces"]}) == 3
    policy = cluster.admin("GET", "/admin/policy").json()
    assert statement["policy_version"] == policy["version"]
    assert (statement["tenant"], statement["redundancy_class"]) == (owner.tenant, "StandardClass")
    # Backend names, buckets and endpoints never appear.
    text = json.dumps(signed)
    for index, (name, *_rest) in enumerate(BACKENDS):
        assert f"store-{name}" not in text and cluster.motos[index].endpoint not in text
        assert name not in [v for p in statement["pieces"] for v in p.values()]

    # A named version: the first one, with its own size.
    old = verify_placement_proof(
        proof_of(cluster, owner, "proof-a", "doc", version_id=first),
        keys,
        bucket="proof-a",
        key="doc",
        version_id=first,
    )
    assert old.statement["size"] == 3000 and statement["size"] == 2500

    # Tampered: any change fails both verifiers.
    tampered = copy.deepcopy(signed)
    us = next(p for p in tampered["statement"]["pieces"] if p["jurisdiction"] == "US")
    us["jurisdiction"] = "EU"
    with pytest.raises(SignatureInvalid):
        verify_signed(tampered, keys)
    with pytest.raises(ProofInvalid):
        verify_placement_proof(tampered, keys, bucket="proof-a", key="doc")

    # Another tenant: the normal S3 answer, as for any request on a bucket not its own.
    stranger = new_owner(cluster)
    with pytest.raises(ObjectNotFound) as refused:
        proof_of(cluster, stranger, "proof-a", "doc")
    assert refused.value.code == "NoSuchBucket"

    # bp: fetched key, pinned key, another deployment's pinned key, a lying gateway.
    code, out, err = bp(monkeypatch, cluster, owner, "verify", "--placement", "s3://proof-a/doc")
    assert code == 0, err
    assert "jurisdictions: EU, US" in out and "fully placed" in out and "not pinned" in out
    pinned = tmp_path / "deployment-key.json"
    pinned.write_text(json.dumps(document))
    args = ("verify", "--placement", "s3://proof-a/doc", "--deployment-key", str(pinned))
    code, out, err = bp(monkeypatch, cluster, owner, *args)
    assert code == 0 and f"pinned {pinned}" in out, err
    foreign = tmp_path / "other-deployment.json"
    other = DeploymentKey.from_master(MasterKey.from_file_text(Fernet.generate_key().decode()))
    foreign.write_text(json.dumps(other.published()))
    code, out, err = bp(monkeypatch, cluster, owner, *args[:3], "--deployment-key", str(foreign))
    assert code == 5 and "not a trusted deployment key" in err, (out, err)
    liar = TamperProxy(target=cluster.endpoint, mode="proof")
    liar.start()
    try:
        code, out, err = bp(monkeypatch, cluster, owner, *args, endpoint=liar.endpoint)
        assert code == 5 and "altered" in err, (out, err)
        code, out, err = bp(monkeypatch, cluster, owner, *args[:3], endpoint=liar.endpoint)
        assert code == 5 and "altered" in err, (out, err)
    finally:
        liar.stop()


# -- 2. a piece not yet stored: the proof, bp and the compliance report say so ----------------
async def test_a_pending_piece_is_reported_until_it_is_stored(
    cluster: Federation,
    heal: HealingContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner = new_owner(cluster)
    owner.s3.create_bucket(Bucket="proof-b")
    owner.s3.put_object(Bucket="proof-b", Key="placed", Body=os.urandom(1000))
    keys = parse_published_keys(published(cluster))

    def placed_proof() -> Any:
        signed = proof_of(cluster, owner, "proof-b", "placed")
        return verify_placement_proof(signed, keys, bucket="proof-b", key="placed").statement

    # verified_at is the scrubber's: a month-old verification, then a scrub pass re-reads them.
    await asql(
        cluster,
        "UPDATE replicas SET verified_at = now() - interval '30 days' WHERE version_pk ="
        " (SELECT v.id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = 'proof-b' AND v.key = 'placed')",
    )
    aged = await asyncio.to_thread(placed_proof)
    month_ago = {p["verified_at"][:10] for p in aged["pieces"]}
    assert len(month_ago) == 1 and month_ago.pop() < aged["issued_at"][:10]
    await heal.registry.ping_all()
    report = await Scrubber(heal, batch=50, bytes_per_s=0, listing_interval_s=0).run_once()
    assert report["verified"] >= 3, report
    scrubbed = await asyncio.to_thread(placed_proof)
    assert all(p["verified_at"] > aged["issued_at"] for p in scrubbed["pieces"]), scrubbed

    moto = cluster.motos[2]  # b2, the only US backend
    moto.freeze()  # unreachable, its data kept
    try:
        await asyncio.to_thread(
            cluster.wait_for,
            lambda: show(cluster, "b2")["health"]["state"] == "down",
            30,
            "b2 to be recorded down",
        )
        owner.s3.put_object(Bucket="proof-b", Key="short", Body=os.urandom(2000))
        proof = verify_placement_proof(
            await asyncio.to_thread(proof_of, cluster, owner, "proof-b", "short"),
            keys,
            bucket="proof-b",
            key="short",
        )
        states = {p["jurisdiction"]: p["state"] for p in proof.statement["pieces"]}
        assert states["US"] == "pending" and not proof.fully_placed
        assert proof.jurisdictions == ["EU"]
        assert proof.statement["shortfall"] == [{"part": 0, "ok": 2, "required": 3}]
        code, out, err = bp(
            monkeypatch, cluster, owner, "verify", "--placement", "s3://proof-b/short"
        )
        assert code == 1 and "NOT fully placed: part 0: 2 ok of 3" in out, (out, err)

        code, report = await asyncio.to_thread(
            compliance, monkeypatch, cluster, owner.tenant, capsys
        )
        assert code == 1
        assert report["versions"] == 2 and report["not_fully_placed_total"] == 1
        (item,) = report["not_fully_placed"]
        assert (item["bucket"], item["key"]) == ("proof-b", "short")
        held = {j["jurisdiction"]: j for j in report["jurisdictions"]}
        assert held["EU"]["objects"] == 2 and held["EU"]["pieces"] == 4
        assert held["EU"]["countries"] == ["DE", "FR"]
        assert held["US"]["objects"] == 1 and held["US"]["bytes"] == 1000
    finally:
        moto.thaw()
    await asyncio.to_thread(
        cluster.wait_for,
        lambda: show(cluster, "b2")["health"]["state"] != "down",
        30,
        "b2 to be recorded back",
    )

    async def stored() -> bool:
        signed = await asyncio.to_thread(proof_of, cluster, owner, "proof-b", "short")
        return bool(
            verify_placement_proof(signed, keys, bucket="proof-b", key="short").fully_placed
        )

    await run_agent(heal, stored, timeout_s=90, defer_s=3600.0)
    code, report = await asyncio.to_thread(compliance, monkeypatch, cluster, owner.tenant, capsys)
    assert code == 0 and report["not_fully_placed_total"] == 0


# -- 3. a drain moves a piece: the next proof says where it went ------------------------------
async def test_proof_changes_after_a_drain(cluster: Federation, heal: HealingContext) -> None:
    keys = parse_published_keys(published(cluster))
    with extra_moto() as moto:
        add = cluster.admin(
            "POST",
            "/admin/add-storage",
            {**moto_payload("pp", moto.endpoint, create_bucket=True),
             "region": "eu-north", "country": "SE", "jurisdiction": "EU"},
        )  # fmt: skip
        assert add.status_code == 200, add.text
        owner = new_owner(cluster)
        set_allowed(cluster, owner.tenant, ["b0", "b2", "pp"])
        owner.s3.create_bucket(Bucket="proof-c")
        owner.s3.put_object(Bucket="proof-c", Key="moving", Body=os.urandom(4000))
        set_allowed(cluster, owner.tenant, None)

        def proof() -> Any:
            signed = proof_of(cluster, owner, "proof-c", "moving")
            return verify_placement_proof(signed, keys, bucket="proof-c", key="moving")

        before = await asyncio.to_thread(proof)
        assert sorted(p["country"] for p in before.statement["pieces"]) == ["DE", "SE", "US"]

        drained = cluster.admin("POST", "/admin/backends/pp/drain")
        assert drained.status_code == 200, drained.text

        async def moved() -> bool:
            rows = await asyncio.to_thread(cluster.replicas, "proof-c", "moving")
            return {r["backend"] for r in rows} == {"b0", "b1", "b2"} and all(
                r["status"] == "ok" for r in rows
            )

        await run_agent(heal, moved, timeout_s=120, defer_s=3600.0)
        after = await asyncio.to_thread(proof)
        assert after.fully_placed and after.jurisdictions == ["EU", "US"]
        assert sorted(p["country"] for p in after.statement["pieces"]) == ["DE", "FR", "US"]
        where = await asyncio.to_thread(expected_locations, cluster, "proof-c", "moving")
        assert pieces_by_location(after.statement) == where
        gone = {p["holder"] for p in before.statement["pieces"]} - {
            p["holder"] for p in after.statement["pieces"]
        }
        assert len(gone) == 1  # the drained backend's pseudonym, replaced by b1's
        assert after.statement["issued_at"] > before.statement["issued_at"]

        # Leave the federation as found: the drained backend removed.
        owner.s3.delete_object(Bucket="proof-c", Key="moving")
        for _ in range(30):
            await heal.registry.ping_all()
            await Vacuumer(heal, list_backends=False).run_once()
            if show(cluster, "pp")["drain"]["removable"]:
                break
            await asyncio.sleep(1)
        removed = cluster.admin("DELETE", "/admin/backends/pp")
        assert removed.status_code == 200, removed.text

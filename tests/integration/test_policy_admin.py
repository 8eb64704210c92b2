"""The policy engine's admin API and CLI against a running gateway: versioned policy documents
(apply, show, history, refusals, audit), explanations, bucket and tenant placement settings,
backend relocation, and the placement-check jobs that every such change enqueues."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.cli_policy import register
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

HOT = """
version: 1
# comments are kept in the source, not in the canonical document
classes:
  Hot5: {replication: {copies: 5, write_quorum: 3}}
  Duo: {replication: {copies: 2}, min_regions: 2}
"""


def apply(cluster: Federation, document: str, comment: str = "") -> Any:
    return cluster.admin("PUT", "/admin/policy", {"document": document, "comment": comment})


def cli(cluster: Federation, tmp_path: Path, *argv: str) -> int:
    """Run ``bulletproof <argv>`` through ``register`` with a config file naming the gateway."""
    config = tmp_path / "bp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "http_host": cluster.settings.http_host,
                "http_port": cluster.settings.http_port,
                "state_dir": cluster.settings.state_dir,
            }
        )
    )
    parser = argparse.ArgumentParser(prog="bulletproof")
    parser.add_argument("--config")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(config), *argv])
    return int(args.func(args))


def placement_checks(cluster: Federation, version_pks: list[int]) -> list[dict[str, Any]]:
    rows = cluster.sql(
        "SELECT payload FROM jobs WHERE kind = 'placement_check' AND status = 'queued'"
        " AND (payload->>'version_pk')::bigint = ANY($1::bigint[])",
        version_pks,
    )
    return [
        r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]) for r in rows
    ]


def version_pks(cluster: Federation, bucket: str) -> list[int]:
    rows = cluster.sql(
        "SELECT v.id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 ORDER BY v.id",
        bucket,
    )
    return [r["id"] for r in rows]


def test_apply_show_history_and_refusals(cluster: Federation, tmp_path: Path, capsys) -> None:
    before = cluster.admin("GET", "/admin/policy").json()["version"]
    applied = apply(cluster, HOT, "hot tier")
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["version"] == before + 1 and "Hot5" in body["added"] + body["changed"]
    again = apply(cluster, HOT).json()
    assert again == {"version": before + 1, "unchanged": True, "marked_objects": 0}

    shown = cluster.admin("GET", "/admin/policy").json()
    assert shown["version"] == before + 1 and shown["in_force_here"]
    assert shown["source"] == HOT and "comments" not in shown["document"]
    assert yaml.safe_load(shown["document"])["classes"]["Hot5"] == {
        "replication": {"copies": 5, "write_quorum": 3}
    }
    assert (
        shown["classes"]["Duo"] == "replication 2 copies, write quorum 2, >= 2 regions, "
        "distinct backends"
    )
    history = cluster.admin("GET", "/admin/policy/history").json()
    assert history[0]["version"] == before + 1 and history[0]["comment"] == "hot tier"
    builtin = cluster.admin("GET", "/admin/policy?version=0").json()
    assert builtin["applied_by"] == "built-in" and "Hot5" not in builtin["classes"]

    bad = apply(
        cluster, "version: 1\nclasses:\n  Hot5: {replication: {copies: 5, write_quorum: 7}}\n"
    )
    assert bad.status_code == 400 and "<Error>" in bad.text
    assert "classes.Hot5.replication.write_quorum: must be between 1 and copies (5)" in bad.text
    assert cluster.admin("GET", "/admin/policy").json()["version"] == before + 1

    # A class in use may not disappear: the bucket default below uses Duo.
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket="uses-duo")
    tenant = cluster.sql(
        "SELECT t.name FROM tenants t JOIN buckets b ON b.tenant_id = t.id WHERE b.name = $1",
        "uses-duo",
    )[0]["name"]
    set_class = cluster.admin(
        "PUT", f"/admin/tenants/{tenant}/buckets/uses-duo/placement", {"default_class": "Duo"}
    )
    assert set_class.status_code == 200, set_class.text
    dropped = apply(
        cluster, "version: 1\nclasses:\n  Hot5: {replication: {copies: 5, write_quorum: 3}}\n"
    )
    assert dropped.status_code == 400
    assert "drops classes still in use: Duo (1 bucket default)" in dropped.text
    # One audit entry per stored version: refused and unchanged applies store nothing.
    audited = cluster.sql("SELECT resource FROM audit_log WHERE action = 'ApplyPolicy'")
    assert f"policy/{before + 1}" in {r["resource"] for r in audited}
    assert len(audited) == before + 1

    # The CLI module says the same things.
    assert cli(cluster, tmp_path, "policy", "show") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# policy version {before + 1}, applied by admin")
    assert "Hot5:" in out
    doc = tmp_path / "p.yaml"
    doc.write_text(HOT)
    assert cli(cluster, tmp_path, "policy", "apply", str(doc)) == 0
    assert f"version {before + 1} is already this document" in capsys.readouterr().out
    assert cli(cluster, tmp_path, "policy", "history") == 0
    assert "hot tier" in capsys.readouterr().out


def test_explain_through_the_api_and_the_cli(cluster: Federation, tmp_path: Path, capsys) -> None:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket="explained")
    s3.put_object(Bucket="explained", Key="k", Body=os.urandom(1000))
    got = cluster.admin(
        "POST", "/admin/policy/explain", {"bucket": "explained", "key": "k", "tenant": name}
    ).json()
    assert got["placeable"] and got["class"] == "StandardClass"
    assert got["class_source"] == "the object's class"
    assert len(got["targets"]) == 3
    assert {p["backend"] for p in got["object"]["pieces"]} == {"b0", "b1", "b2"}
    assert all(p["compliant"] for p in got["object"]["pieces"])
    assert any(line.startswith("target 0: ") for line in got["lines"])

    # Lock the bucket to the EU: the stored US copy no longer complies, and StandardClass
    # (3 copies) has only two EU backends here: impossible, and explain says which rule.
    locked = cluster.admin(
        "PUT", f"/admin/tenants/{name}/buckets/explained/placement", {"region_lock": ["EU"]}
    )
    assert locked.status_code == 200 and locked.json()["region_lock"] == ["eu"]
    got = cluster.admin(
        "POST", "/admin/policy/explain", {"bucket": "explained", "key": "k", "tenant": name}
    ).json()
    assert not got["placeable"]
    assert got["error"].startswith("PolicyViolation: region lock eu: only 2 permitted backends")
    verdicts = {p["backend"]: p["violation"] for p in got["object"]["pieces"]}
    assert verdicts["b0"] is None
    assert verdicts["b2"] == "outside region lock eu (region us-east, jurisdiction US)"

    assert (
        cli(
            cluster,
            tmp_path,
            "policy",
            "explain",
            "explained",
            "new-key",
            "--tenant",
            name,
            "--class",
            "RegionalClass",
        )
        == 1
    )  # DE + FR: no shared country
    out = capsys.readouterr().out
    assert "class RegionalClass from request" in out
    assert "cannot place: PolicyViolation: region lock eu" in out or "same country" in out
    missing = cluster.admin("POST", "/admin/policy/explain", {"bucket": "nope", "key": "k"})
    assert missing.status_code == 404 and "<Code>NoSuchBucket</Code>" in missing.text


def test_settings_changes_mark_objects_for_the_placement_checker(
    cluster: Federation, tmp_path: Path, capsys
) -> None:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket="marked")
    for i in range(3):
        s3.put_object(Bucket="marked", Key=f"k{i}", Body=b"x" * i)
    pks = version_pks(cluster, "marked")
    assert placement_checks(cluster, pks) == []

    changed = cluster.admin(
        "PUT", f"/admin/tenants/{name}/buckets/marked/placement", {"default_class": "StandardClass"}
    ).json()
    assert changed["marked_objects"] == 3
    jobs = placement_checks(cluster, pks)
    assert sorted(j["version_pk"] for j in jobs) == pks
    assert "default class None -> StandardClass" in jobs[0]["reason"]
    # Marking again while the checks are still queued adds nothing.
    assert cli(cluster, tmp_path, "policy", "tenant", name, "--region-lock", "eu,us") == 0
    assert "region_lock: eu,us" in capsys.readouterr().out
    assert len(placement_checks(cluster, pks)) == 3

    for payload, message in (
        ({"allowed_backends": ["b0", "nope"]}, "no backend 'nope'"),
        ({"allowed_backends": []}, "use null to remove the allow-list"),
        ({"default_class": "Nope"}, "unknown redundancy class 'Nope'"),
        ({"region_lock": "eu"}, "must be a list"),
        ({"colour": "blue"}, "unknown field(s): colour"),
    ):
        refused = cluster.admin("PUT", f"/admin/tenants/{name}/placement", payload)
        assert refused.status_code == 400 and message in refused.text, refused.text
    shown = cluster.admin("GET", f"/admin/tenants/{name}/placement").json()
    assert shown == {
        "tenant": name,
        "default_class": None,
        "region_lock": ["eu", "us"],
        "jurisdiction_allow": [],
        "jurisdiction_deny": [],
        "allowed_backends": None,
    }
    allowed = cluster.admin(
        "PUT",
        f"/admin/tenants/{name}/placement",
        {"allowed_backends": ["b0", "b1", "b2"], "jurisdiction_deny": ["cn"]},
    ).json()
    assert allowed["allowed_backends"] == ["b0", "b1", "b2"]
    assert allowed["jurisdiction_deny"] == ["CN"]
    s3.put_object(Bucket="marked", Key="after", Body=b"y")  # still placeable: all three allowed
    cluster.admin(
        "PUT",
        f"/admin/tenants/{name}/placement",
        {"allowed_backends": None, "region_lock": [], "jurisdiction_deny": []},
    )

    # A backend that moves marks every object with a piece on it.
    cluster.sql("UPDATE jobs SET status = 'done' WHERE kind = 'placement_check'")
    moved = cluster.admin(
        "PUT",
        "/admin/backends/b2/location",
        {"region": "us-east-2", "country": "us", "jurisdiction": "us"},
    )
    assert moved.status_code == 200, moved.text
    try:
        assert moved.json()["marked_objects"] >= 4
        assert len(placement_checks(cluster, version_pks(cluster, "marked"))) == 4
    finally:
        back = cluster.admin(
            "PUT",
            "/admin/backends/b2/location",
            {"region": "us-east", "country": "US", "jurisdiction": "US"},
        )
        assert back.status_code == 200
    audit = {r["action"] for r in cluster.sql("SELECT action FROM audit_log")}
    assert {"SetBucketPlacement", "SetTenantPlacement", "RelocateBackend"} <= audit

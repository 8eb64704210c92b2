"""Placement proofs without services: the "fully placed" rule, the statement, and the two
verifiers (the server's ``core.deployment_key.verify_signed`` and the client's own
``client.placement_proof``) agreeing on the signed format, including refusing any change."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from client.errors import ProofInvalid
from client.placement_proof import (
    canonical_json as client_canonical_json,
)
from client.placement_proof import (
    parse_published_keys,
    verify_placement_proof,
)
from core.deployment_key import DeploymentKey, SignatureInvalid, canonical_json, verify_signed
from core.placement_proof import (
    PieceFacts,
    holder_pseudonym,
    placement_shortfall,
    placement_statement,
)
from core.policy import RedundancyClass
from core.sealing import MasterKey
from gateway.s3 import errors as s3e
from gateway.s3.operations import GetPlacementProof, parse_operation

REP = RedundancyClass("Std", "replication", copies=3, write_quorum=2)
EC = RedundancyClass("Ec", "erasure", k=2, m=1)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _piece(backend: int, part: int = 0, shard: int = -1, state: str = "ok", jur: str = "EU"):
    return PieceFacts(
        backend_id=backend,
        part_number=part,
        shard_index=shard,
        size=10,
        sha256=bytes([backend]) * 32,
        state=state,
        region=f"r{backend}",
        country="DE" if jur == "EU" else "US",
        jurisdiction=jur,
        holder_state="active",
        verified_at=NOW if state == "ok" else None,
    )


def _statement(pieces: list[PieceFacts], rc: RedundancyClass | None = REP) -> dict[str, object]:
    return placement_statement(
        tenant="acme",
        bucket="b",
        key="k/ü",
        version_id="null",
        size=10,
        sha256=b"\x01" * 32,
        redundancy_class="Std",
        rc=rc,
        part_count=1,
        pieces=pieces,
        pseudonym_key=b"p" * 32,
        tenant_id=7,
        policy_version=3,
        issued_at=NOW,
    )


def _key() -> DeploymentKey:
    return DeploymentKey.from_master(MasterKey.from_file_text(Fernet.generate_key().decode()))


def test_shortfall_counts_distinct_holders_or_shards() -> None:
    assert placement_shortfall(REP, 1, [(0, -1, 1), (0, -1, 2), (0, -1, 3)]) == []
    (short,) = placement_shortfall(REP, 1, [(0, -1, 1), (0, -1, 1), (0, -1, 2)])
    assert (short.part_number, short.ok, short.required) == (0, 2, 3)
    # a part with no ok piece at all is short too
    assert [
        s.part_number for s in placement_shortfall(REP, 2, [(0, -1, b) for b in (1, 2, 3)])
    ] == [1]
    assert placement_shortfall(EC, 1, [(0, 0, 1), (0, 1, 2), (0, 2, 3)]) == []
    assert placement_shortfall(EC, 1, [(0, 0, 1), (0, 0, 2), (0, 2, 3)])[0].ok == 2
    # a class the policy no longer defines is never called placed
    assert placement_shortfall(None, 1, [(0, -1, 1)])[0].required == 0


def test_statement_names_locations_not_backends_and_judges_placement() -> None:
    full = _statement([_piece(1), _piece(2), _piece(3, jur="US")])
    assert full["fully_placed"] is True and full["jurisdictions"] == ["EU", "US"]
    assert [p["holder"] for p in full["pieces"]] == [  # type: ignore[index]
        holder_pseudonym(b"p" * 32, 7, b) for b in (1, 2, 3)
    ]
    assert "backend" not in json.dumps(full)
    short = _statement([_piece(1), _piece(2), _piece(3, state="corrupt", jur="US")])
    assert short["fully_placed"] is False and short["jurisdictions"] == ["EU"]
    assert short["shortfall"] == [{"part": 0, "ok": 2, "required": 3}]
    assert short["pieces"][2]["verified_at"] is None  # type: ignore[index]


def test_pseudonyms_are_per_tenant() -> None:
    key = b"k" * 32
    assert holder_pseudonym(key, 1, 5) == holder_pseudonym(key, 1, 5)
    assert holder_pseudonym(key, 1, 5) != holder_pseudonym(key, 2, 5)
    assert holder_pseudonym(key, 1, 5) != holder_pseudonym(b"j" * 32, 1, 5)


def test_client_and_server_agree_and_refuse_any_change() -> None:
    deployment = _key()
    signed = deployment.sign(_statement([_piece(1), _piece(2), _piece(3, jur="US")]))
    # one canonical form on both sides (non-ASCII key included)
    assert client_canonical_json(signed["statement"]) == canonical_json(signed["statement"])
    keys = parse_published_keys(json.loads(json.dumps(deployment.published())))
    assert verify_signed(signed, keys) == signed["statement"]
    proof = verify_placement_proof(signed, keys, bucket="b", key="k/ü", tenant="acme")
    assert proof.fully_placed and proof.jurisdictions == ["EU", "US"]

    tampered = copy.deepcopy(signed)
    tampered["statement"]["pieces"][2]["jurisdiction"] = "EU"
    with pytest.raises(SignatureInvalid):
        verify_signed(tampered, keys)
    with pytest.raises(ProofInvalid, match="altered"):
        verify_placement_proof(tampered, keys, bucket="b", key="k/ü")
    # another object's genuine proof is not this object's
    with pytest.raises(ProofInvalid, match="key"):
        verify_placement_proof(signed, keys, bucket="b", key="other")
    with pytest.raises(ProofInvalid, match="tenant"):
        verify_placement_proof(signed, keys, bucket="b", key="k/ü", tenant="mallory")
    # a pinned key of another deployment does not verify it
    others = parse_published_keys(_key().published())
    with pytest.raises(ProofInvalid, match="not a trusted"):
        verify_placement_proof(signed, others, bucket="b", key="k/ü")


def test_published_key_ids_must_match_their_keys() -> None:
    published = _key().published()
    kid, value = next(iter(published["keys"].items()))
    with pytest.raises(ProofInvalid):
        parse_published_keys({**published, "keys": {"0" * 16: value}})
    with pytest.raises(ProofInvalid):
        parse_published_keys({"algorithm": "RSA", "keys": {kid: value}})


def test_operation_parsing() -> None:
    op = parse_operation("GET", "/bkt/k", [("placement-proof", "")], {})
    assert op == GetPlacementProof("bkt", "k", None)
    versioned = parse_operation("GET", "/bkt/k", [("placement-proof", ""), ("versionId", "v")], {})
    assert versioned == GetPlacementProof("bkt", "k", "v")
    with pytest.raises(s3e.MethodNotAllowed):
        parse_operation("PUT", "/bkt/k", [("placement-proof", "")], {})

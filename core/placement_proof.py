"""Proof of placement: the statement the deployment signs about where an object's pieces are.

Pure: the gateway hands in plain facts (the version, each stored piece with its backend's
declared location, the class in force) and gets back the statement that
``core.deployment_key.DeploymentKey.sign`` covers; the compliance report asks the same
``placement_shortfall`` rule, so "fully placed" means one thing everywhere. The format is
written down in ``docs/placement-proof.md`` (``client/placement_proof.py`` verifies it without
importing this module).

What it deliberately leaves out: backend names and endpoints (invariant 2). A piece's holder
is a per-tenant pseudonym, ``HMAC-SHA256(key, "<tenant id>:<backend id>")`` truncated, so a
tenant sees which of its pieces share a backend (distinctness is part of the promise) but
cannot correlate backends with another tenant's proofs or learn their names.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.policy import RedundancyClass

__all__ = [
    "PROOF_FORMAT",
    "PROOF_TYPE",
    "PSEUDONYM_PURPOSE",
    "PieceFacts",
    "PartShortfall",
    "holder_pseudonym",
    "placement_shortfall",
    "placement_statement",
]

PROOF_TYPE = "bulletproof.placement-proof"
PROOF_FORMAT = 1
#: The ``MasterKey.derive`` purpose of the pseudonym key (never equal to the signing seed).
PSEUDONYM_PURPOSE = "bulletproof/placement-pseudonym/v1"


@dataclass(frozen=True)
class PieceFacts:
    """One stored piece (a replica of a part, or one shard of it) and its holder's location.

    ``state`` is the replica row's status (ok, pending, corrupt, missing, deleting);
    ``holder_state`` the backend's (active, draining, removed); ``verified_at`` when the piece's
    length and SHA-256 were last confirmed (acknowledged by its write or re-read by the
    scrubber or an import verification), None if never."""

    backend_id: int
    part_number: int
    shard_index: int
    size: int
    sha256: bytes
    state: str
    region: str
    country: str
    jurisdiction: str
    holder_state: str
    verified_at: datetime | None


@dataclass(frozen=True)
class PartShortfall:
    """A part with fewer ``ok`` pieces on distinct holders than its class requires."""

    part_number: int
    ok: int
    required: int


def holder_pseudonym(key: bytes, tenant_id: int, backend_id: int) -> str:
    """The opaque name a tenant's proofs give a backend: stable for that tenant, unlinkable
    across tenants without the key."""
    mac = hmac.new(key, f"{tenant_id}:{backend_id}".encode(), hashlib.sha256).hexdigest()
    return f"h-{mac[:16]}"


def _required(rc: RedundancyClass) -> int:
    """Pieces of each part a fully placed object has: every copy, or every shard (k + m)."""
    return rc.width


def placement_shortfall(
    rc: RedundancyClass | None,
    part_count: int,
    ok_pieces: Iterable[tuple[int, int, int]],
) -> list[PartShortfall]:
    """Parts short of their class, from the ``ok`` pieces as (part, shard, backend id).

    A replicated part counts distinct holders; an erasure-coded part counts distinct shard
    indexes (each on its own holder). A class no longer in the policy (``rc`` None) cannot be
    judged: every part is reported short with ``required`` 0, so a report never calls it
    placed by default."""
    holders: dict[int, set[int]] = {}
    for part, shard, backend_id in ok_pieces:
        token = shard if rc is not None and rc.kind == "erasure" else backend_id
        holders.setdefault(part, set()).add(token)
    parts = set(range(part_count)) | set(holders)
    short: list[PartShortfall] = []
    for part in sorted(parts):
        ok = len(holders.get(part, ()))
        required = _required(rc) if rc is not None else 0
        if rc is None or ok < required:
            short.append(PartShortfall(part, ok, required))
    return short


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def placement_statement(
    *,
    tenant: str,
    bucket: str,
    key: str,
    version_id: str,
    size: int,
    sha256: bytes | None,
    redundancy_class: str,
    rc: RedundancyClass | None,
    part_count: int,
    pieces: Sequence[PieceFacts],
    pseudonym_key: bytes,
    tenant_id: int,
    policy_version: int,
    issued_at: datetime,
) -> dict[str, Any]:
    """The statement to sign (``docs/placement-proof.md``): JSON values only, no floats, so
    its canonical JSON is the same bytes in every implementation."""
    ordered = sorted(pieces, key=lambda p: (p.part_number, p.shard_index, p.backend_id))
    entries = [
        {
            "piece": index,
            "holder": holder_pseudonym(pseudonym_key, tenant_id, p.backend_id),
            "part": p.part_number,
            "shard": p.shard_index if p.shard_index >= 0 else None,
            "size": p.size,
            "sha256": p.sha256.hex(),
            "region": p.region,
            "country": p.country,
            "jurisdiction": p.jurisdiction,
            "state": p.state,
            "holder_state": p.holder_state,
            "verified_at": _iso(p.verified_at),
        }
        for index, p in enumerate(ordered)
    ]
    ok = [(p.part_number, p.shard_index, p.backend_id) for p in ordered if p.state == "ok"]
    short = placement_shortfall(rc, part_count, ok)
    return {
        "type": PROOF_TYPE,
        "format": PROOF_FORMAT,
        "issued_at": _iso(issued_at),
        "policy_version": policy_version,
        "tenant": tenant,
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
        "size": size,
        "sha256": sha256.hex() if sha256 else None,
        "redundancy_class": redundancy_class,
        "class": None
        if rc is None
        else {"kind": rc.kind, "copies": rc.copies, "k": rc.k, "m": rc.m, "required": rc.width},
        "parts": part_count,
        "pieces": entries,
        "jurisdictions": sorted({p.jurisdiction for p in ordered if p.state == "ok"}),
        "fully_placed": not short,
        "shortfall": [{"part": s.part_number, "ok": s.ok, "required": s.required} for s in short],
    }

"""``GET /{bucket}/{key}?placement-proof[&versionId=V]``: the signed proof of placement.

A Bulletproof extension, SigV4-authenticated and authorized like any S3 read (the bucket is
resolved inside the caller's tenant, so another tenant gets NoSuchBucket). The answer is JSON:
``{"statement": ..., "key_id": ..., "signature": ...}``, signed with the deployment's Ed25519
key (``core/deployment_key.py``); the statement is ``core.placement_proof.placement_statement``
over the replica rows as committed now, read from PostgreSQL (never the cache: a proof states
what the metadata says at the time it names). Format: ``docs/placement-proof.md``.

Read-only: nothing is fetched from a backend, marked or written.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Response
from fastapi.responses import JSONResponse

from actors.reads import named_version
from core.placement_proof import placement_statement
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call
from gateway.s3.operations import GetPlacementProof
from gateway.s3.versions import is_version_id
from schema.placement_facts import PlacementFactsRepository
from schema.records import ObjectVersion

__all__ = ["get_placement_proof"]

_facts = PlacementFactsRepository()


async def _version(ctx: GatewayContext, auth: Authorized, op: GetPlacementProof) -> ObjectVersion:
    """The stored version the proof is about; the S3 errors a GET would answer otherwise."""
    bucket = auth.bucket
    assert bucket is not None
    resource = f"/{bucket.name}/{op.key}"
    if op.version_id is None:
        async with ctx.store.db.connection() as conn:
            version = await ctx.store.versions.get_latest(conn, bucket.id, op.key)
        if version is None or version.is_delete_marker:
            raise s3e.NoSuchKey(resource=resource)
        return version
    if not is_version_id(op.version_id):
        raise s3e.NoSuchVersion(resource=resource)
    found = await named_version(ctx, bucket, op.key, op.version_id)
    if found is None:
        raise s3e.NoSuchVersion(resource=resource)
    if found.is_delete_marker:
        raise s3e.MethodNotAllowed(
            "The specified method is not allowed against a delete marker.", resource=resource
        )
    return found


async def get_placement_proof(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, GetPlacementProof) and auth.bucket is not None
    version = await _version(ctx, auth, op)
    policy = await ctx.current_policy()
    policy_version = ctx.policy_version
    async with ctx.store.db.connection() as conn:
        pieces = await _facts.pieces(conn, version.id)
    statement = placement_statement(
        tenant=auth.principal.tenant_name,
        bucket=auth.bucket.name,
        key=version.key,
        version_id=version.api_version_id,
        size=version.size,
        sha256=version.sha256,
        redundancy_class=version.redundancy_class,
        rc=policy.classes.get(version.redundancy_class),
        part_count=version.part_count,
        pieces=pieces,
        pseudonym_key=ctx.pseudonym_key,
        tenant_id=auth.principal.tenant_id,
        policy_version=policy_version,
        issued_at=datetime.now(UTC),
    )
    return JSONResponse(ctx.deployment_key.sign(statement))

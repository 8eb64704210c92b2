"""Authentication and authorization: runs once, before any handler (invariant 7).

``authenticate`` turns a SigV4- (or SigV2-) signed request into a ``Principal`` (one tenant).
``authorize`` resolves the operation's bucket *within that tenant's namespace*: a handler
receives the bucket record and never looks buckets up itself, so no handler can reach another
tenant's data, and a foreign bucket is indistinguishable from a missing one.
Admin requests are authenticated by ``gateway/admin/identity.py`` (bearer JWT or bootstrap
token, each with a role).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.sealing import SealBroken
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import sigv2, sigv4
from gateway.s3.operations import BucketOp, ObjectOp, Operation
from schema.audit import Caller
from schema.records import Bucket

__all__ = ["Authorized", "Principal", "authenticate", "authorize"]


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    tenant_name: str
    access_key_id: str
    allow_plaintext: bool
    verified: sigv4.VerifiedRequest
    #: The tenant's own rate limits (None: the deployment's; ``gateway/admission.py``).
    requests_per_s: float | None = None
    bytes_per_s: int | None = None


@dataclass(frozen=True)
class Authorized:
    principal: Principal
    op: Operation
    bucket: Bucket | None
    #: CopyObject / UploadPartCopy: the source bucket, resolved in the same tenant only.
    source_bucket: Bucket | None = None

    def caller(self, request_id: str) -> Caller:
        """This request's actor as the audit log names it (the access key, in its tenant)."""
        return Caller(self.principal.access_key_id, request_id, self.principal.tenant_id)


async def authenticate(ctx: GatewayContext, view: sigv4.HttpRequestView) -> Principal:
    """The principal a signed request names: SigV4, or SigV2 (``gateway/s3/sigv2.py``)
    unless ``BP_SIGV2=off``, which leaves SigV2 an unsupported mechanism (InvalidRequest)."""
    v2 = ctx.settings.sigv2 and sigv2.is_sigv2(view)
    access_key_id = (
        sigv2.parse_access_key(view) if v2 else sigv4.parse_credential(view).access_key_id
    )
    key = await ctx.meta.access_key(access_key_id)
    if key is None:
        raise s3e.InvalidAccessKeyId()
    try:
        secret = ctx.master_key.open(key.sealed_secret).decode()
    except SealBroken as exc:
        raise s3e.InternalError() from exc
    now = datetime.now(UTC)
    if v2:
        verified = sigv2.verify(
            view, secret, now=now, resource_path=view.routed_path or view.raw_path
        )
    else:
        verified = sigv4.verify(view, secret, region=ctx.settings.region, now=now)
    return Principal(
        tenant_id=key.tenant_id,
        tenant_name=key.tenant_name,
        access_key_id=key.access_key_id,
        allow_plaintext=key.allow_plaintext,
        verified=verified,
        requests_per_s=key.requests_per_s,
        bytes_per_s=key.bytes_per_s,
    )


async def authorize(ctx: GatewayContext, principal: Principal, op: Operation) -> Authorized:
    """Resolve the bucket an operation addresses, inside the principal's tenant only.

    CreateBucket addresses a bucket that does not exist yet; its handler creates it in the
    principal's namespace. A copy's source bucket is resolved the same way: copies never
    cross tenants.
    """
    from gateway.s3.operations import CopyObject, CreateBucket, UploadPartCopy

    bucket = None
    if isinstance(op, BucketOp | ObjectOp) and not isinstance(op, CreateBucket):
        bucket = await ctx.meta.bucket(principal.tenant_id, op.bucket)
    source_bucket = None
    if isinstance(op, CopyObject | UploadPartCopy):
        source_bucket = await ctx.meta.bucket(principal.tenant_id, op.source.bucket)
    return Authorized(principal=principal, op=op, bucket=bucket, source_bucket=source_bucket)

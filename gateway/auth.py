"""Authentication and authorization: runs once, before any handler (invariant 7).

``authenticate`` turns a SigV4- (or SigV2-) signed request into a ``Principal`` (one tenant).
``authorize`` resolves the operation's bucket *within that tenant's namespace*: a handler
receives the bucket record and never looks buckets up itself, so no handler can reach another
tenant's data, and a foreign bucket is indistinguishable from a missing one.
Admin requests are authenticated by ``gateway/admin/identity.py`` (bearer JWT or bootstrap
token, each with a role).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from core.sealing import SealBroken
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import sigv2, sigv4
from gateway.s3.operations import BucketOp, ObjectOp, Operation
from schema.audit import Caller
from schema.records import AccessKey, Bucket

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
    now = datetime.now(UTC)
    if key.expires_at is not None:
        _check_session(key, view, now)
    try:
        secret = ctx.master_key.open(key.sealed_secret).decode()
    except SealBroken as exc:
        raise s3e.InternalError() from exc
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


def _check_session(key: AccessKey, view: sigv4.HttpRequestView, now: datetime) -> None:
    """Temporary credentials (``gateway/sts.py``): the request must carry the session token
    (``X-Amz-Security-Token`` header, or query parameter when presigned; the signature covers
    it) and the credentials must not have expired. A revoked session never gets here: its row
    is no longer an access key (``TenantRepository.get_access_key``)."""
    token = view.headers.get("x-amz-security-token")
    if token is None:
        token = dict(parse_qsl(view.query_string, keep_blank_values=True)).get(
            "X-Amz-Security-Token"
        )
    expected = key.session_token_sha256 or b""
    given = hashlib.sha256((token or "").encode("utf-8", "surrogateescape")).digest()
    if token is None or not hmac.compare_digest(given, expected):
        raise s3e.InvalidToken()
    if key.expires_at is not None and key.expires_at <= now:
        raise s3e.ExpiredToken()


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

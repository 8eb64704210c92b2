"""ACLs: every bucket and object is private to its tenant, and that is the only ACL.

Bulletproof has no cross-tenant grants and never serves anything anonymously (invariant 7),
so ACLs are not a permission system here. Clients that read an ACL get the one that is true
(the owning tenant, FULL_CONTROL); clients that set one may set only that: the canned
``private`` ACL or a policy document granting the owner FULL_CONTROL and nothing else.
``check_canned_acl`` applies the same rule to the ``x-amz-acl`` / ``x-amz-grant-*`` headers
of every request (PutObject, CreateBucket, CopyObject, CreateMultipartUpload...): public
ACLs are AccessDenied, other canned ACLs and grants NotImplemented.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response

from actors.reads import latest_or_404
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.body import read_small_body
from gateway.s3.call import S3Call
from gateway.s3.operations import GetAcl, PutAcl

__all__ = ["check_canned_acl", "get_acl", "put_acl"]

_PUBLIC = frozenset({"public-read", "public-read-write", "authenticated-read"})
#: Canned ACLs that say "private" here: the bucket owner is always the object owner (one
#: tenant owns both), so granting the bucket owner control adds nothing. Tools send
#: ``bucket-owner-full-control`` routinely.
_PRIVATE = frozenset({"private", "bucket-owner-full-control"})
_MAX_ACL_BYTES = 64 * 1024


def check_canned_acl(headers: Mapping[str, str]) -> None:
    """Refuse any ACL but ``private`` carried by request headers."""
    canned = headers.get("x-amz-acl")
    if canned is not None:
        canned = canned.strip().lower()
        if canned in _PUBLIC:
            raise s3e.AccessDenied(
                f"The canned ACL {canned!r} would expose data: Bulletproof objects and buckets"
                " are always private to their tenant"
            )
        if canned not in _PRIVATE:
            raise s3e.NotImplemented(
                f"The canned ACL {canned!r} is not supported: only 'private' (and"
                " 'bucket-owner-full-control', the same thing here) is"
            )
    grants = sorted(name for name in headers if name.startswith("x-amz-grant-"))
    if grants:
        raise s3e.NotImplemented(f"{grants[0]}: ACL grants are not supported (always private)")


async def _exists(ctx: GatewayContext, auth: Authorized, key: str | None) -> None:
    if key is None:
        return
    assert auth.bucket is not None
    await latest_or_404(ctx, auth.bucket, key)


async def get_acl(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, GetAcl)
    await _exists(ctx, auth, op.key)
    return Response(
        xml.private_acl_document(auth.principal.tenant_name), media_type="application/xml"
    )


def _owner_only(document: bytes, owner: str) -> bool:
    """A policy whose every grant gives the owner FULL_CONTROL (the private ACL)."""
    root = xml.parse_xml(document)
    if xml.local_name(root) != "AccessControlPolicy":
        raise s3e.MalformedXML()
    grants = [e for e in root.iter() if xml.local_name(e) == "Grant"]
    for grant in grants:
        ids = [e.text or "" for e in grant.iter() if xml.local_name(e) in ("ID", "URI")]
        perms = [e.text or "" for e in grant.iter() if xml.local_name(e) == "Permission"]
        if ids != [owner] or perms != ["FULL_CONTROL"]:
            return False
    return True


async def put_acl(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, PutAcl)
    await _exists(ctx, auth, op.key)
    check_canned_acl(call.headers)  # also done by the dispatcher; here for the body rule
    body = await read_small_body(call.body, auth.principal.verified, call.headers, _MAX_ACL_BYTES)
    if body.strip() and not _owner_only(body, auth.principal.tenant_name):
        raise s3e.NotImplemented("Only the private ACL (the owner with FULL_CONTROL) is supported")
    if not body.strip() and "x-amz-acl" not in call.headers:
        raise s3e.MalformedXML("PutAcl needs x-amz-acl or an AccessControlPolicy document")
    return Response(status_code=200)

"""``AssumeRoleWithWebIdentity``: an OIDC token of a configured issuer exchanged for temporary
SigV4 credentials of one tenant, compatible with AWS STS (boto3's ``sts`` client pointed at the
gateway works unchanged).

Where it arrives: ``POST /`` with a form body ``Action=AssumeRoleWithWebIdentity&...`` (or the
same parameters in the query string), unsigned as in AWS (the token is the credential). The S3
dispatcher (``gateway/s3/dispatch.py``) hands such requests here before SigV4; S3 itself has no
``POST /``, so nothing is ambiguous.

In order, each failure answered in the STS XML error format (``ErrorResponse``):

1. Parameters: ``RoleArn``, ``RoleSessionName`` (2..64 of ``[\\w+=,.@-]``),
   ``WebIdentityToken``, optional ``DurationSeconds`` (default 3600). A missing or malformed
   one is ``ValidationError`` (400).
2. The token is verified by ``gateway/oidc.py`` against the tenant identity file's issuers
   (``BP_TENANT_OIDC_FILE``, ``core/tenant_identities.py``): signature with the issuer's pinned
   algorithms, issuer, audience, expiry. Any failure is ``InvalidIdentityToken`` (400).
3. The first trust rule of that issuer matching the subject, claims and RoleArn names the
   tenant; none is ``AccessDenied`` (403), as is a tenant that does not exist or is disabled.
4. ``DurationSeconds`` above the rule's maximum (at most 3600) or below 900 is
   ``ValidationError``, as AWS answers a duration beyond the role's maximum (never clamped).
5. One transaction stores the credentials (``schema/sessions.py``: an access key row whose
   secret is sealed with the master key, the SHA-256 of the session token, the expiry, the
   issuer and subject) and the audit entry (actor ``oidc:<issuer name>:<subject>``).

Requests with these credentials are SigV4 requests that must carry the session token
(``gateway/auth.py``); after the expiry they are refused with ``ExpiredToken``, after
revocation (``/admin/sessions``, ``bulletproof session revoke``) at once on every replica.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from fastapi import Request, Response

from core.sealing import new_secret
from core.tenant_identities import MAX_SESSION_S, MIN_SESSION_S
from gateway.context import GatewayContext
from gateway.oidc import InvalidJwt
from gateway.s3 import errors as s3e
from gateway.s3.sigv4 import HttpRequestView
from schema.audit import Caller

__all__ = ["STS_ACTION", "handle_sts", "is_sts_request"]

log = logging.getLogger(__name__)

STS_ACTION = "AssumeRoleWithWebIdentity"
_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
_MAX_BODY = 64 * 1024
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_MAX_TOKEN = 20_000


class StsError(Exception):
    """An STS error: HTTP status, code and message (rendered as ``ErrorResponse``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validation(message: str) -> StsError:
    return StsError(400, "ValidationError", message)


def is_sts_request(view: HttpRequestView) -> bool:
    """An STS call: ``/`` with an ``Action`` parameter in the query, or an unsigned form POST
    to ``/`` (boto3 sends the action in the body)."""
    if (view.routed_path or view.raw_path).split("?", 1)[0] != "/":
        return False
    if "Action" in dict(parse_qsl(view.query_string, keep_blank_values=True)):
        return True
    content_type = view.headers.get("content-type", "").lower()
    return (
        view.method == "POST"
        and content_type.startswith("application/x-www-form-urlencoded")
        and "authorization" not in view.headers
    )


async def _parameters(request: Request, view: HttpRequestView) -> dict[str, str]:
    params = dict(parse_qsl(view.query_string, keep_blank_values=True))
    if view.method == "POST":
        # gateway.admin.route imports the S3 dispatcher, which imports this module: lazily.
        from gateway.admin.route import read_document

        try:
            body = await read_document(request, _MAX_BODY)
        except s3e.S3Error as exc:
            raise StsError(exc.status, exc.code, exc.message) from None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _validation("the request body is not UTF-8") from None
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def _duration(raw: str | None, allowed: int) -> int:
    if raw is None or raw == "":
        return min(MAX_SESSION_S, allowed)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise _validation("DurationSeconds must be an integer")
    value = int(raw)
    if value < MIN_SESSION_S:
        raise _validation(
            f"1 validation error detected: Value '{value}' at 'durationSeconds' failed to"
            f" satisfy constraint: Member must have value greater than or equal to {MIN_SESSION_S}"
        )
    if value > allowed:
        raise _validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role"
            f" ({allowed} seconds)."
        )
    return value


def _required(params: dict[str, str], name: str, limit: int) -> str:
    value = params.get(name)
    if not value:
        raise _validation(f"1 validation error detected: Value null at '{name}' failed to satisfy"
                          " constraint: Member must not be null")  # fmt: skip
    if len(value) > limit:
        raise _validation(f"{name} is longer than {limit} characters")
    return value


async def _assume(ctx: GatewayContext, params: dict[str, str], request_id: str) -> bytes:
    if params.get("Action") != STS_ACTION:
        raise StsError(400, "InvalidAction", f"Could not find operation {params.get('Action')}")
    role_arn = _required(params, "RoleArn", 2048)
    session_name = _required(params, "RoleSessionName", 64)
    if not _SESSION_NAME.match(session_name):
        raise _validation("RoleSessionName must be 2 to 64 characters of [\\w+=,.@-]")
    token = _required(params, "WebIdentityToken", _MAX_TOKEN)
    if ctx.tenant_identities is None or ctx.tenant_oidc is None:
        raise StsError(400, "InvalidIdentityToken", "No OpenIDConnect provider is configured")
    try:
        identity = await ctx.tenant_oidc.verify(token)
    except InvalidJwt as exc:
        raise StsError(
            400, "InvalidIdentityToken", f"The web identity token is invalid: {exc}"
        ) from None
    grant = ctx.tenant_identities.grant(
        identity.issuer.issuer, identity.subject, identity.claims, role_arn
    )
    if grant is None:
        raise StsError(403, "AccessDenied", f"Not authorized to perform sts:{STS_ACTION}")
    duration = _duration(params.get("DurationSeconds"), grant.max_session_s)
    access_key_id = "ASIA" + secrets.token_hex(8).upper()
    secret = new_secret()
    session_token = "BPS1" + secrets.token_urlsafe(48)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=duration)
    actor = f"oidc:{identity.issuer.name}:{identity.subject}"
    async with ctx.store.db.transaction() as conn:
        tenant = await ctx.store.tenants.find_active(conn, grant.tenant)
        if tenant is None:
            raise StsError(403, "AccessDenied", f"Not authorized to perform sts:{STS_ACTION}")
        await ctx.store.sessions.create(
            conn,
            tenant_id=tenant,
            access_key_id=access_key_id,
            sealed_secret=ctx.master_key.seal(secret.encode()),
            token_sha256=hashlib.sha256(session_token.encode()).digest(),
            expires_at=expires,
            issuer=identity.issuer.issuer,
            subject=identity.subject,
        )
        await ctx.store.audit.append(
            conn,
            Caller(actor, request_id, tenant).entry(
                STS_ACTION,
                f"session/{access_key_id}",
                f"ok tenant {grant.tenant} until {expires.isoformat()}",
            ),
        )
    role_name = role_arn.rsplit("/", 1)[-1] or "role"
    audience = identity.claims.get("aud")
    return _success(
        request_id,
        subject=identity.subject,
        audience=audience if isinstance(audience, str) else ",".join(map(str, audience or [])),
        provider=identity.issuer.issuer,
        arn=f"arn:aws:sts::{grant.tenant}:assumed-role/{role_name}/{session_name}",
        role_id=f"{access_key_id}:{session_name}",
        access_key_id=access_key_id,
        secret=secret,
        session_token=session_token,
        expiration=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _element(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, name)
    if text is not None:
        child.text = text
    return child


def _success(request_id: str, **f: str) -> bytes:
    root = ET.Element(f"{STS_ACTION}Response", xmlns=_NS)
    result = _element(root, f"{STS_ACTION}Result")
    _element(result, "SubjectFromWebIdentityToken", f["subject"])
    _element(result, "Audience", f["audience"])
    user = _element(result, "AssumedRoleUser")
    _element(user, "Arn", f["arn"])
    _element(user, "AssumedRoleId", f["role_id"])
    creds = _element(result, "Credentials")
    _element(creds, "AccessKeyId", f["access_key_id"])
    _element(creds, "SecretAccessKey", f["secret"])
    _element(creds, "SessionToken", f["session_token"])
    _element(creds, "Expiration", f["expiration"])
    _element(result, "Provider", f["provider"])
    _element(_element(root, "ResponseMetadata"), "RequestId", request_id)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def _error(err: StsError, request_id: str) -> Response:
    root = ET.Element("ErrorResponse", xmlns=_NS)
    error = _element(root, "Error")
    _element(error, "Type", "Sender" if err.status < 500 else "Receiver")
    _element(error, "Code", err.code)
    _element(error, "Message", err.message)
    _element(root, "RequestId", request_id)
    return Response(
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root),
        status_code=err.status,
        media_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )


async def handle_sts(
    ctx: GatewayContext, request: Request, view: HttpRequestView, request_id: str
) -> Response:
    """Answer one STS request (module docstring); never raises."""
    try:
        params = await _parameters(request, view)
        body = await _assume(ctx, params, request_id)
    except StsError as err:
        return _error(err, request_id)
    except Exception as exc:
        log.error("STS request %s failed", request_id, exc_info=exc)
        failure = s3e.to_s3_error(exc)
        status = failure.status if failure.status >= 500 else 500
        return _error(StsError(status, "InternalFailure", "internal failure"), request_id)
    return Response(body, media_type="text/xml", headers={"x-amzn-RequestId": request_id})

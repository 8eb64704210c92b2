"""Who is calling ``/admin``: the bootstrap token, or an OIDC bearer JWT, and the role each has.

``authenticate_admin`` reads only the ``Authorization`` header (never the body):

- a JWT (three dot-separated segments) when OIDC issuers are configured is verified by
  ``gateway.oidc.OidcVerifier`` (signature, pinned algorithm, ``iss``, ``aud``, ``exp``,
  ``nbf``); its role comes from the issuer's table. An invalid token is 401; a valid one that
  the table grants no role is 403.
- anything else is looked up as the bootstrap token by its SHA-256 (the table holds hashes
  only; a rotated token is revoked in the same transaction that stores its successor, so it is
  refused at once on every replica: there is no cache).

The principal names the caller as the audit log records it: ``admin`` for the bootstrap token
(the name every earlier entry used), ``oidc:<issuer name>:<subject>`` for a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.admin_roles import Role
from core.errors import InvalidInput
from core.sealing import hash_token
from gateway.context import GatewayContext
from gateway.oidc import InvalidJwt, looks_like_jwt
from gateway.s3 import errors as s3e

__all__ = ["BOOTSTRAP_ACTOR", "AdminPrincipal", "InvalidToken", "authenticate_admin"]

#: The actor the bootstrap token acts as in the audit log.
BOOTSTRAP_ACTOR = "admin"


class InvalidToken(s3e.S3Error):
    """No bearer token, or one that is not valid: 401 with ``WWW-Authenticate: Bearer``."""

    status = 401
    code = "InvalidToken"
    default_message = "The admin bearer token is missing or not valid."


@dataclass(frozen=True)
class AdminPrincipal:
    actor: str
    role: Role


async def authenticate_admin(ctx: GatewayContext, authorization: str | None) -> AdminPrincipal:
    """The principal of the request's bearer token (module docstring), or an error."""
    if not authorization or not authorization[:7].lower() == "bearer ":
        raise InvalidToken("An admin bearer token is required")
    token = authorization[7:].strip()
    if not token or len(token) > 16 * 1024:
        raise InvalidToken()
    if ctx.oidc is not None and looks_like_jwt(token):
        try:
            identity = await ctx.oidc.verify(token)
        except InvalidJwt as exc:
            raise InvalidToken(f"The bearer token is not valid: {exc}") from None
        if identity.role is None:
            raise s3e.AccessDenied("This identity has no admin role")
        return AdminPrincipal(f"oidc:{identity.issuer.name}:{identity.subject}", identity.role)
    async with ctx.store.db.connection() as conn:
        role = await ctx.store.admin_tokens.role(conn, hash_token(token))
    if role is None:
        raise InvalidToken("The admin token is not valid")
    try:
        return AdminPrincipal(BOOTSTRAP_ACTOR, Role.parse(role))
    except InvalidInput:
        raise s3e.AccessDenied("The admin token has no known role") from None

"""OAuth2 bearer tokens (JWTs) from the configured OIDC issuers: the only importer of PyJWT.

``OidcVerifier.verify(token)`` answers the issuer, subject and role of a token, or raises
``InvalidJwt`` (the caller answers 401). In order, with nothing taken from the token on trust:

1. The token's ``iss`` (read unverified, only to pick the configuration) must be a configured
   issuer, exactly; its header's ``alg`` must be one the issuer is pinned to (so ``none`` and
   every HMAC algorithm are refused before any key is looked at: an RSA public key used as an
   HMAC secret never gets near a verifier).
2. The key is the issuer's JWKS entry with the header's ``kid``: the JWKS is found through the
   issuer's discovery document (whose ``issuer`` must match) and cached for ``jwks_cache_s``.
   An unknown ``kid`` refetches the JWKS once, at most every ``jwks_refetch_min_s`` per issuer
   (keys rotated at the issuer are picked up; a stream of made-up kids costs one fetch per
   interval). A key whose own ``alg`` differs from the header's, or that is not a signing key,
   is refused.
3. PyJWT checks the signature with that key and the pinned algorithms, and ``iss``, ``aud``,
   ``exp``, ``nbf`` and ``iat`` with the issuer's leeway; ``exp``, ``iat``, ``iss``, ``aud``
   and the subject claim are required.
4. The role comes from the explicit table (``core.admin_roles.role_of``); None when no row
   matches (the caller answers 403).

Fetches use one ``httpx.AsyncClient`` per verifier, no redirects, a 5 s timeout and a 1 MiB
cap on documents. A failed refresh keeps serving the keys already held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt.api_jwk import PyJWK

from core.admin_roles import IdentityConfig, IssuerConfig, Role, https_url, role_of
from core.errors import InvalidInput

__all__ = ["InvalidJwt", "OidcIdentity", "OidcVerifier", "looks_like_jwt"]

log = logging.getLogger(__name__)

_MAX_DOCUMENT = 1024 * 1024


class InvalidJwt(Exception):
    """The bearer token is not a valid token of a configured issuer (why, in the message)."""


@dataclass(frozen=True)
class OidcIdentity:
    issuer: IssuerConfig
    subject: str
    role: Role | None
    claims: dict[str, Any]


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated segments: a JWS compact serialisation (the bootstrap token has no
    dots)."""
    return token.count(".") == 2


@dataclass
class _KeySet:
    """One issuer's signing keys by ``kid``, and when they were fetched."""

    keys: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None
    fetches: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class OidcVerifier:
    """Verifies bearer JWTs against ``config``'s issuers (module docstring)."""

    def __init__(
        self,
        config: IdentityConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 5.0,
    ) -> None:
        self.config = config
        self._clock = clock
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._sets: dict[str, _KeySet] = {i.issuer: _KeySet() for i in config.issuers}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def fetches(self, issuer: str) -> int:
        """How many JWKS fetches were made for ``issuer`` (for tests and metrics)."""
        return self._sets[issuer].fetches

    # -- verification --------------------------------------------------------------------------
    async def verify(self, token: str) -> OidcIdentity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidJwt(f"malformed token: {exc}") from None
        issuer = self.config.by_issuer(unverified.get("iss"))
        if issuer is None:
            raise InvalidJwt("the token's issuer is not trusted")
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise InvalidJwt(f"algorithm {alg!r} is not allowed for this issuer")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidJwt("malformed token: kid must be a string")
        entry = await self._key(issuer, kid)
        if entry is None:
            raise InvalidJwt(f"no signing key {kid!r} at the issuer")
        if entry.get("alg", alg) != alg:
            raise InvalidJwt(f"key {kid!r} is not a {alg} key")
        try:
            key = PyJWK(entry, algorithm=alg)  # refuses a key of another type than alg's
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(issuer.audience),
                issuer=issuer.issuer,
                leeway=issuer.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", issuer.subject_claim]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidJwt(str(exc) or type(exc).__name__) from None
        subject = claims.get(issuer.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidJwt(f"claim {issuer.subject_claim!r} must be a non-empty string")
        return OidcIdentity(issuer, subject, role_of(issuer, claims), claims)

    # -- keys ----------------------------------------------------------------------------------
    async def _key(self, issuer: IssuerConfig, kid: str | None) -> dict[str, Any] | None:
        held = self._sets[issuer.issuer]
        now = self._clock()
        stale = held.fetched_at is None or now - held.fetched_at > issuer.jwks_cache_s
        if not stale and (kid in held.keys or (kid is None and len(held.keys) == 1)):
            return self._pick(held, kid)
        async with held.lock:
            now = self._clock()
            stale = held.fetched_at is None or now - held.fetched_at > issuer.jwks_cache_s
            known = kid in held.keys or (kid is None and len(held.keys) == 1)
            allowed = (
                held.attempted_at is None or now - held.attempted_at >= issuer.jwks_refetch_min_s
            )
            if (stale or not known) and allowed:
                held.attempted_at = now
                held.fetches += 1
                try:
                    held.keys = await self._fetch_keys(issuer)
                    held.fetched_at = self._clock()
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("JWKS of %s not refreshed: %r", issuer.name, exc)
            return self._pick(held, kid)

    @staticmethod
    def _pick(held: _KeySet, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            return next(iter(held.keys.values())) if len(held.keys) == 1 else None
        return held.keys.get(kid)

    async def _document(self, url: str) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        async with self._client.stream("GET", url, headers={"accept": "application/json"}) as r:
            if r.status_code != 200:
                raise ValueError(f"{url}: HTTP {r.status_code}")
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > _MAX_DOCUMENT:
                    raise ValueError(f"{url}: larger than {_MAX_DOCUMENT} bytes")
        document = json.loads(bytes(body))
        if not isinstance(document, dict):
            raise ValueError(f"{url}: not a JSON object")
        return document

    async def _fetch_keys(self, issuer: IssuerConfig) -> dict[str | None, dict[str, Any]]:
        jwks_uri = issuer.jwks_uri
        if jwks_uri is None:
            discovery = await self._document(issuer.discovery_url)
            if discovery.get("issuer") != issuer.issuer:
                raise ValueError("the discovery document names another issuer")
            found = discovery.get("jwks_uri")
            if not isinstance(found, str):
                raise ValueError("the discovery document has no jwks_uri")
            jwks_uri = _checked_url(found, issuer)
        document = await self._document(jwks_uri)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ValueError("the JWKS has no key list")
        keys: dict[str | None, dict[str, Any]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg") not in (None, *issuer.algorithms) or "d" in entry:
                continue  # a key for another algorithm, or a private key published by mistake
            keys[entry.get("kid")] = entry
        return keys


def _checked_url(url: str, issuer: IssuerConfig) -> str:
    """A URL from a discovery document obeys the same https rule as configured ones."""
    try:
        return https_url(url, f"{issuer.name}: jwks_uri")
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None

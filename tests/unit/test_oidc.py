"""Bearer JWT verification (``gateway/oidc.py``) against a real issuer: discovery and JWKS
served over HTTP on 127.0.0.1 by a thread, from keys generated here (tests/support).

Every way a token can be wrong is refused with ``InvalidJwt``; a valid token gets the role the
table grants, or None. JWKS fetches are counted at the issuer: an unknown kid refetches once
per ``jwks_refetch_min_s`` (driven here by an injected clock, not by sleeping)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from core.admin_roles import Role, load_identity_config
from core.errors import InvalidInput
from gateway.oidc import InvalidJwt, OidcVerifier
from tests.support.oidc_issuer import OidcIssuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    found = OidcIssuer()
    try:
        yield found
    finally:
        found.stop()


def _verifier(issuer: OidcIssuer, clock: Clock | None = None, **overrides: Any) -> OidcVerifier:
    text = yaml.safe_dump({"issuers": [issuer.config(jwks_refetch_min_s=30, **overrides)]})
    return OidcVerifier(load_identity_config(text), clock=clock or Clock())


def _verify(verifier: OidcVerifier, token: str) -> Any:
    async def run() -> Any:
        try:
            return await verifier.verify(token)
        finally:
            await verifier.close()

    return asyncio.run(run())


def test_valid_tokens_get_their_role(issuer: OidcIssuer) -> None:
    verifier = _verifier(issuer)
    for groups, role in (
        (["bp-admins"], Role.ADMIN),
        (["x", "bp-operators"], Role.OPERATOR),
        (["bp-viewers"], Role.VIEWER),
        (["bp-viewers", "bp-admins"], Role.ADMIN),  # the highest row that matches
        (["other"], None),
    ):
        found = _verify(verifier, issuer.token("alice", groups=groups))
        assert (found.subject, found.role, found.issuer.name) == ("alice", role, "test")
    assert issuer.discovery_fetches == 1 and issuer.jwks_fetches == 1  # cached


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        (lambda i: i.token(exp=int(time.time()) - 120), "expired"),
        (lambda i: i.token(aud="someone-else"), "(?i)audience"),
        (lambda i: i.token(iss="http://127.0.0.1:1/evil"), "issuer is not trusted"),
        (lambda i: i.token(nbf=int(time.time()) + 600), "not yet valid"),
        (lambda i: i.alg_none(groups=["bp-admins"]), "algorithm 'none' is not allowed"),
        (lambda i: i.hs256_with_public_key(groups=["bp-admins"]), "'HS256' is not allowed"),
        (lambda i: i.token(kid="unknown-kid"), "no signing key"),
        (
            lambda i: i.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "Signature verification failed",
        ),
        (lambda i: "not.a.token", "malformed"),
    ],
)
def test_bad_tokens_are_refused(issuer: OidcIssuer, forge: Any, why: str) -> None:
    with pytest.raises(InvalidJwt, match=why):
        _verify(_verifier(issuer), forge(issuer))


def test_required_claims(issuer: OidcIssuer) -> None:
    import jwt

    claims = issuer.claims("alice")
    del claims["exp"]
    token = jwt.encode(claims, issuer._keys[-1][1], algorithm="RS256", headers={"kid": issuer.kid})
    with pytest.raises(InvalidJwt, match="exp"):
        _verify(_verifier(issuer), token)


def test_key_rotated_at_the_issuer_is_fetched_once(issuer: OidcIssuer) -> None:
    clock = Clock()
    verifier = _verifier(issuer, clock)

    async def run() -> None:
        old = issuer.token(groups=["bp-admins"])
        assert (await verifier.verify(old)).role is Role.ADMIN
        assert issuer.jwks_fetches == 1
        issuer.rotate()
        new = issuer.token(groups=["bp-admins"])
        # Within jwks_refetch_min_s of the last fetch: the new kid is not fetched yet.
        clock.now += 10
        with pytest.raises(InvalidJwt, match="no signing key"):
            await verifier.verify(new)
        assert issuer.jwks_fetches == 1
        # After it: one refetch finds the new key; the old key is gone from the JWKS.
        clock.now += 30
        assert (await verifier.verify(new)).role is Role.ADMIN
        assert issuer.jwks_fetches == 2
        with pytest.raises(InvalidJwt, match="no signing key"):
            await verifier.verify(old)
        # A stream of made-up kids costs at most one fetch per interval.
        clock.now += 30
        for n in range(20):
            with pytest.raises(InvalidJwt, match="no signing key"):
                await verifier.verify(issuer.token(kid=f"made-up-{n}"))
        assert issuer.jwks_fetches == 3
        # The cache lifetime (300 s) ends: the JWKS is fetched again on use.
        clock.now += 301
        assert (await verifier.verify(new)).role is Role.ADMIN
        assert issuer.jwks_fetches == 4
        await verifier.close()

    asyncio.run(run())


def test_jwks_uri_from_configuration_skips_discovery(issuer: OidcIssuer) -> None:
    verifier = _verifier(issuer, jwks_uri=f"{issuer.url}/jwks")
    assert _verify(verifier, issuer.token(groups=["bp-viewers"])).role is Role.VIEWER
    assert issuer.discovery_fetches == 0


def test_discovery_naming_another_issuer_is_refused(issuer: OidcIssuer) -> None:
    other = OidcIssuer()
    try:
        # Configured as `other`, but its discovery URL is `issuer`'s (which names itself).
        verifier = _verifier(other, discovery_url=f"{issuer.url}/.well-known/openid-configuration")
        with pytest.raises(InvalidJwt, match="no signing key"):
            _verify(verifier, other.token(groups=["bp-admins"]))
        assert other.jwks_fetches == 0 and issuer.jwks_fetches == 0
    finally:
        other.stop()


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"algorithms": ["HS256"]}, "not allowed"),
        ({"algorithms": ["none"]}, "not allowed"),
        ({"issuer": "http://idp.example.com"}, "https"),
        ({"roles": [{"claim": "groups", "value": "x", "role": "root"}]}, "unknown role"),
        ({"roles": []}, "non-empty"),
        ({"audience": []}, "audience"),
        ({"color": "red"}, "unknown field"),
        ({"leeway_s": 9999}, "leeway_s"),
    ],
)
def test_identity_file_is_checked(issuer: OidcIssuer, entry: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        load_identity_config(yaml.safe_dump({"issuers": [issuer.config(**entry)]}))


def test_identity_file_examples() -> None:
    text = """
issuers:
  - name: corp
    issuer: https://idp.example.com/realms/corp
    audience: [bulletproof-admin, other]
    algorithms: [RS256, ES256]
    roles:
      - {claim: realm_access.roles, value: bp-operators, role: operator}
      - {claim: sub, value: svc-monitor, role: viewer}
"""
    config = load_identity_config(text)
    (corp,) = config.issuers
    assert corp.discovery_url == (
        "https://idp.example.com/realms/corp/.well-known/openid-configuration"
    )
    assert config.by_issuer("https://idp.example.com/realms/corp") is corp
    assert config.by_issuer("https://idp.example.com/realms/corp/") is None  # exact match
    from core.admin_roles import role_of

    assert role_of(corp, {"realm_access": {"roles": ["bp-operators"]}}) is Role.OPERATOR
    assert role_of(corp, {"sub": "svc-monitor"}) is Role.VIEWER
    assert role_of(corp, {"realm_access": "bp-operators-not"}) is None
    with pytest.raises(InvalidInput, match="twice"):
        load_identity_config(text.replace("issuers:\n", "issuers:\n" + text.split("\n", 2)[2]))


def test_bootstrap_refuses_a_bad_identity_file(tmp_path: Any, issuer: OidcIssuer) -> None:
    from cluster.bootstrap import prepare_state
    from core.settings import Settings

    bad = tmp_path / "identity.yaml"
    bad.write_text(yaml.safe_dump({"issuers": [issuer.config(algorithms=["HS256"])]}))
    state = str(tmp_path / "state")
    with pytest.raises(SystemExit, match="'HS256' is not allowed"):
        prepare_state(Settings(state_dir=state, admin_oidc_file=str(bad)))
    with pytest.raises(SystemExit, match="absolute path"):
        prepare_state(Settings(state_dir=state, admin_oidc_file="identity.yaml"))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"issuers": [issuer.config()]}))
    prepare_state(Settings(state_dir=state, admin_oidc_file=str(good)))
    assert (tmp_path / "state" / "admin.token").exists()

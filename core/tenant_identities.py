"""Which tenant an OIDC identity may act as: the trust rules of the STS endpoint
(``AssumeRoleWithWebIdentity``, ``gateway/sts.py``).

The tenant identity file (``BP_TENANT_OIDC_FILE``, YAML) has the admin identity file's issuer
entries (``core/admin_roles.py``: issuer, audience, pinned algorithms, discovery/JWKS, leeway)
with ``tenants`` rules instead of ``roles``::

    issuers:
      - name: corp
        issuer: https://idp.example.com/realms/corp
        audience: bulletproof-sts                   # the token's aud must contain it
        algorithms: [RS256]
        tenants:
          - tenant: acme                            # the tenant the credentials act as
            subject: 2b1f0c9e-ci                    # optional: sub must equal it
            claims: {groups: acme-writers}          # optional: every claim must match
            role_arn: arn:aws:iam::000000000000:role/acme-ci   # optional: RoleArn must equal
            max_session_s: 3600                     # optional, 900..3600 (default 3600)

A token (already verified: signature, issuer, audience, expiry) is granted the FIRST rule, in
file order, whose conditions all hold: the subject (if set), each claim (equal to the value, or
a list holding it; dotted names walk nested objects), the RoleArn (if set). A rule must name at
least a subject or one claim: a rule matching every token of an issuer is refused at load (an
issuer's every user would become the tenant). No matching rule: no grant (AccessDenied).

Durations follow AWS: ``DurationSeconds`` 900..43200 is the API's range, and a request above
the rule's maximum (at most one hour here) is refused with ``ValidationError``, never clamped.

Pure: parsing and matching only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.admin_roles import (
    IdentityConfig,
    IssuerConfig,
    claim_of,
    issuer_nodes,
    parse_issuer,
    unique_issuers,
)
from core.errors import InvalidInput

__all__ = [
    "MAX_SESSION_S",
    "MIN_SESSION_S",
    "TenantGrant",
    "TenantIdentityConfig",
    "TenantRule",
    "load_tenant_identities",
]

MIN_SESSION_S = 900
MAX_SESSION_S = 3600
_RULE_KEYS = {"tenant", "subject", "claims", "role_arn", "max_session_s"}


@dataclass(frozen=True)
class TenantRule:
    tenant: str
    subject: str | None
    claims: tuple[tuple[str, str], ...]
    role_arn: str | None
    max_session_s: int

    def matches(self, subject: str, claims: Mapping[str, Any], role_arn: str) -> bool:
        if self.subject is not None and subject != self.subject:
            return False
        if self.role_arn is not None and role_arn != self.role_arn:
            return False
        for name, value in self.claims:
            held = claim_of(claims, name)
            if not (held == value or (isinstance(held, list) and value in held)):
                return False
        return True


@dataclass(frozen=True)
class TenantGrant:
    """What a matching rule grants: act as ``tenant`` for at most ``max_session_s``."""

    tenant: str
    max_session_s: int


@dataclass(frozen=True)
class TenantIdentityConfig:
    issuers: tuple[IssuerConfig, ...] = ()
    rules: Mapping[str, tuple[TenantRule, ...]] = field(default_factory=dict)

    @property
    def identity(self) -> IdentityConfig:
        """The issuers as the token verifier (``gateway/oidc.py``) takes them."""
        return IdentityConfig(self.issuers)

    def grant(
        self, issuer: str, subject: str, claims: Mapping[str, Any], role_arn: str
    ) -> TenantGrant | None:
        """The first rule of ``issuer`` that these verified claims satisfy, or None."""
        for rule in self.rules.get(issuer, ()):
            if rule.matches(subject, claims, role_arn):
                return TenantGrant(rule.tenant, rule.max_session_s)
        return None


def _text(node: Mapping[str, Any], key: str, where: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}.{key}: must be a non-empty string")
    return value


def _rule(node: object, where: str) -> TenantRule:
    if not isinstance(node, dict):
        raise InvalidInput(f"{where}: must be a mapping")
    unknown = set(node) - _RULE_KEYS
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    tenant = _text(node, "tenant", where)
    if tenant is None:
        raise InvalidInput(f"{where}.tenant: required")
    claims_node = node.get("claims") or {}
    if not isinstance(claims_node, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in claims_node.items()
    ):
        raise InvalidInput(f"{where}.claims: must map claim names to non-empty strings")
    subject = _text(node, "subject", where)
    if subject is None and not claims_node:
        raise InvalidInput(
            f"{where}: name a subject or at least one claim (a rule matching every token of "
            "the issuer is not allowed)"
        )
    max_session = node.get("max_session_s", MAX_SESSION_S)
    if (
        isinstance(max_session, bool)
        or not isinstance(max_session, int)
        or not MIN_SESSION_S <= max_session <= MAX_SESSION_S
    ):
        raise InvalidInput(
            f"{where}.max_session_s: must be an integer between {MIN_SESSION_S} and {MAX_SESSION_S}"
        )
    return TenantRule(
        tenant=tenant,
        subject=subject,
        claims=tuple(sorted(claims_node.items())),
        role_arn=_text(node, "role_arn", where),
        max_session_s=max_session,
    )


def load_tenant_identities(text: str) -> TenantIdentityConfig:
    """Parse the tenant identity file (module docstring); ``InvalidInput`` names the first bad
    field."""
    nodes = issuer_nodes(text, "tenant identity file")
    issuers = []
    rules: dict[str, tuple[TenantRule, ...]] = {}
    for n, node in enumerate(nodes):
        where = f"issuers[{n}]"
        config, rules_node = parse_issuer(node, where, rules_key="tenants")
        if not isinstance(rules_node, list) or not rules_node:
            raise InvalidInput(f"{where}.tenants: must be a non-empty list of rules")
        issuers.append(config)
        rules[config.issuer] = tuple(
            _rule(r, f"{where}.tenants[{i}]") for i, r in enumerate(rules_node)
        )
    unique_issuers(tuple(issuers))
    return TenantIdentityConfig(tuple(issuers), rules)

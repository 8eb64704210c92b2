"""Who may do what on ``/admin``: the three roles, and the explicit table that maps an OIDC
issuer's claim values to them.

Roles are ordered: ``viewer`` (read-only) < ``operator`` (backends, drain, workers) <
``admin`` (everything: tenants, keys, policy, the bootstrap token). A route names the least
role it needs (``gateway/admin/router.py``); a caller holding a higher role passes.

The identity file (``BP_ADMIN_OIDC_FILE``, YAML) lists the trusted issuers::

    issuers:
      - name: corp                                  # names the caller in the audit log
        issuer: https://idp.example.com/realms/corp # must equal the token's ``iss``
        audience: bulletproof-admin                 # the token's ``aud`` must contain it
        algorithms: [RS256]                         # pinned; never taken from the token
        roles:
          - {claim: groups, value: bp-admins, role: admin}
          - {claim: realm_access.roles, value: bp-operators, role: operator}
          - {claim: sub, value: 2b1f0c9e-monitoring, role: viewer}

Optional per issuer: ``discovery_url`` (default ``<issuer>/.well-known/openid-configuration``),
``jwks_uri`` (skips discovery), ``leeway_s`` (clock skew, default 30, at most 300),
``jwks_cache_s`` (default 300), ``jwks_refetch_min_s`` (the least time between two JWKS fetches,
default 30: an unknown ``kid`` refetches once, not once per request), ``subject_claim``
(default ``sub``).

Rules, each refused at load with ``InvalidInput`` naming the field: only asymmetric signature
algorithms (an HMAC algorithm would let anyone holding the published public key sign, and
``none`` signs nothing); issuer, discovery and JWKS URLs are ``https``, except on a loopback
host; issuers are unique; every rule names a known role. A token gets the highest role among
the rows that match it (a claim matches when it equals the value, or is a list holding it;
dotted claim names walk nested objects); no matching row means no role.

Pure: parsing and matching only; fetching keys and checking signatures is ``gateway/oidc.py``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import yaml

from core.errors import InvalidInput

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "IdentityConfig",
    "IssuerConfig",
    "Role",
    "RoleRule",
    "claim_of",
    "https_url",
    "issuer_nodes",
    "load_identity_config",
    "parse_issuer",
    "role_of",
    "unique_issuers",
]

#: The algorithms an issuer may be pinned to: asymmetric signatures only.
SIGNATURE_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_MAX_FILE = 64 * 1024


class Role(enum.IntEnum):
    """An admin role; a higher value may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role:
        for role in cls:
            if value == role.label:
                return role
        raise InvalidInput(f"unknown role {value!r} (roles: {', '.join(r.label for r in cls)})")

    def allows(self, needed: Role) -> bool:
        return self >= needed


@dataclass(frozen=True)
class RoleRule:
    """``claim`` (dotted path) equal to, or a list holding, ``value`` grants ``role``."""

    claim: str
    value: str
    role: Role


@dataclass(frozen=True)
class IssuerConfig:
    name: str
    issuer: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...]
    rules: tuple[RoleRule, ...]
    discovery_url: str
    jwks_uri: str | None = None
    leeway_s: float = 30.0
    jwks_cache_s: float = 300.0
    jwks_refetch_min_s: float = 30.0
    subject_claim: str = "sub"


@dataclass(frozen=True)
class IdentityConfig:
    issuers: tuple[IssuerConfig, ...] = ()

    def by_issuer(self, iss: object) -> IssuerConfig | None:
        """The issuer whose ``issuer`` equals ``iss`` exactly, or None."""
        return next((i for i in self.issuers if i.issuer == iss), None)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_url(value: object, where: str) -> str:
    """``value`` if it is an https URL, or http on a loopback host; else ``InvalidInput``."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: must be a URL")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return value
    raise InvalidInput(f"{where}: must be an https URL (http only on a loopback host): {value!r}")


def _strings(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{where}: must be a string or a non-empty list of strings")
    if not all(isinstance(v, str) and v for v in items):
        raise InvalidInput(f"{where}: must hold non-empty strings")
    return tuple(items)


def _number(node: Mapping[str, Any], key: str, default: float, top: float, where: str) -> float:
    value = node.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
        raise InvalidInput(f"{where}.{key}: must be a number between 0 and {top}")
    return float(value)


_ISSUER_KEYS = {
    "name",
    "issuer",
    "audience",
    "algorithms",
    "roles",
    "discovery_url",
    "jwks_uri",
    "leeway_s",
    "jwks_cache_s",
    "jwks_refetch_min_s",
    "subject_claim",
}


def parse_issuer(node: object, where: str, *, rules_key: str) -> tuple[IssuerConfig, object]:
    """One issuer entry of an identity file, without its rules: the config (``rules`` empty)
    and the raw node under ``rules_key`` (``roles`` here; ``tenants`` in the tenant identity
    file, ``core/tenant_identities.py``), which the caller parses."""
    if not isinstance(node, dict):
        raise InvalidInput(f"{where}: must be a mapping")
    unknown = set(node) - (_ISSUER_KEYS | {rules_key})
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    issuer = https_url(node.get("issuer"), f"{where}.issuer")  # compared with iss exactly
    name = node.get("name", issuer)
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}.name: must be a non-empty string")
    algorithms = _strings(node.get("algorithms"), f"{where}.algorithms")
    for alg in algorithms:
        if alg not in SIGNATURE_ALGORITHMS:
            raise InvalidInput(
                f"{where}.algorithms: {alg!r} is not allowed (asymmetric signatures only: "
                f"{', '.join(sorted(SIGNATURE_ALGORITHMS))})"
            )
    jwks_uri = node.get("jwks_uri")
    subject_claim = node.get("subject_claim", "sub")
    if not isinstance(subject_claim, str) or not subject_claim:
        raise InvalidInput(f"{where}.subject_claim: must be a claim name")
    config = IssuerConfig(
        name=name,
        issuer=issuer,
        audience=_strings(node.get("audience"), f"{where}.audience"),
        algorithms=algorithms,
        rules=(),
        discovery_url=https_url(
            node.get("discovery_url", issuer.rstrip("/") + "/.well-known/openid-configuration"),
            f"{where}.discovery_url",
        ),
        jwks_uri=None if jwks_uri is None else https_url(jwks_uri, f"{where}.jwks_uri"),
        leeway_s=_number(node, "leeway_s", 30.0, 300.0, where),
        jwks_cache_s=_number(node, "jwks_cache_s", 300.0, 86400.0, where),
        jwks_refetch_min_s=_number(node, "jwks_refetch_min_s", 30.0, 3600.0, where),
        subject_claim=subject_claim,
    )
    return config, node.get(rules_key)


def _issuer(node: object, where: str) -> IssuerConfig:
    config, rules_node = parse_issuer(node, where, rules_key="roles")
    if not isinstance(rules_node, list) or not rules_node:
        raise InvalidInput(f"{where}.roles: must be a non-empty list of {{claim, value, role}}")
    rules = []
    for n, rule in enumerate(rules_node):
        at = f"{where}.roles[{n}]"
        if not isinstance(rule, dict) or set(rule) != {"claim", "value", "role"}:
            raise InvalidInput(f"{at}: must be exactly {{claim, value, role}}")
        claim, value = rule["claim"], rule["value"]
        if not isinstance(claim, str) or not claim or not isinstance(value, str) or not value:
            raise InvalidInput(f"{at}: claim and value must be non-empty strings")
        try:
            role = Role.parse(rule["role"])
        except InvalidInput as exc:
            raise InvalidInput(f"{at}.role: {exc}") from None
        rules.append(RoleRule(claim, value, role))
    return replace(config, rules=tuple(rules))


def unique_issuers(issuers: tuple[IssuerConfig, ...]) -> None:
    """Refuse two entries with the same issuer URL or name (``InvalidInput``)."""
    seen: set[str] = set()
    for found in issuers:
        for key in (found.issuer, "name:" + found.name):
            if key in seen:
                raise InvalidInput(f"issuers: {key.removeprefix('name:')!r} appears twice")
            seen.add(key)


def issuer_nodes(text: str, what: str) -> list[object]:
    """The ``issuers`` list of an identity file's YAML (size-capped, one top-level key)."""
    if len(text.encode("utf-8", errors="replace")) > _MAX_FILE:
        raise InvalidInput(f"{what}: larger than {_MAX_FILE} bytes")
    try:
        root = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what}: not valid YAML: {exc}") from None
    if not isinstance(root, dict) or set(root) - {"issuers"}:
        raise InvalidInput(f"{what}: must be a mapping with one key, 'issuers'")
    nodes = root.get("issuers") or []
    if not isinstance(nodes, list):
        raise InvalidInput("issuers: must be a list")
    return nodes


def load_identity_config(text: str) -> IdentityConfig:
    """Parse the identity file (module docstring); ``InvalidInput`` names the first bad field."""
    nodes = issuer_nodes(text, "identity file")
    issuers = tuple(_issuer(node, f"issuers[{n}]") for n, node in enumerate(nodes))
    unique_issuers(issuers)
    return IdentityConfig(issuers)


def claim_of(claims: Mapping[str, Any], path: str) -> object:
    """The claim at a dotted path (nested objects), or None."""
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def role_of(issuer: IssuerConfig, claims: Mapping[str, Any]) -> Role | None:
    """The highest role the table grants these (verified) claims, or None."""
    best: Role | None = None
    for rule in issuer.rules:
        value = claim_of(claims, rule.claim)
        held = value == rule.value or (isinstance(value, list) and rule.value in value)
        if held and (best is None or rule.role > best):
            best = rule.role
    return best

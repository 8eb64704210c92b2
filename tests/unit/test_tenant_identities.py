"""The STS trust rules (``core/tenant_identities.py``) without services: parsing refuses what
would widen trust, and the first matching rule decides the tenant."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from core.errors import InvalidInput
from core.tenant_identities import load_tenant_identities

ISSUER = "https://idp.example.com/realms/corp"


def _file(*rules: dict[str, Any], **issuer: Any) -> str:
    entry = {
        "name": "corp",
        "issuer": ISSUER,
        "audience": "bulletproof-sts",
        "algorithms": ["RS256"],
        "tenants": list(rules),
        **issuer,
    }
    return yaml.safe_dump({"issuers": [entry]})


def test_first_matching_rule_names_the_tenant() -> None:
    config = load_tenant_identities(
        _file(
            {"tenant": "ops", "subject": "robot", "role_arn": "arn:ops"},
            {"tenant": "acme", "claims": {"groups": "acme", "org.unit": "eng"}},
            {"tenant": "fallback", "claims": {"groups": "acme"}, "max_session_s": 900},
        )
    )
    claims = {"groups": ["staff", "acme"], "org": {"unit": "eng"}}
    grant = config.grant(ISSUER, "alice", claims, "arn:any")
    assert grant is not None and (grant.tenant, grant.max_session_s) == ("acme", 3600)
    # the robot's rule needs its RoleArn too
    robot = config.grant(ISSUER, "robot", {}, "arn:other")
    assert robot is None
    assert config.grant(ISSUER, "robot", {}, "arn:ops").tenant == "ops"  # type: ignore[union-attr]
    other_unit = config.grant(ISSUER, "bob", {"groups": "acme", "org": {"unit": "ops"}}, "x")
    assert other_unit is not None and other_unit.tenant == "fallback"
    assert config.grant(ISSUER, "eve", {"groups": ["staff"]}, "x") is None
    assert config.grant("https://other.example", "alice", claims, "x") is None
    assert [i.issuer for i in config.identity.issuers] == [ISSUER]


@pytest.mark.parametrize(
    "text",
    [
        _file({"tenant": "acme"}),  # would match every token of the issuer
        _file({"subject": "alice"}),  # no tenant
        _file({"tenant": "acme", "subject": "a", "max_session_s": 7200}),  # over one hour
        _file({"tenant": "acme", "subject": "a", "max_session_s": 600}),  # under 15 minutes
        _file({"tenant": "acme", "claims": {"groups": ["a", "b"]}}),  # values are strings
        _file({"tenant": "acme", "subject": "a", "role": "admin"}),  # unknown field
        _file({"tenant": "acme", "subject": "a"}, algorithms=["HS256"]),  # symmetric
        _file({"tenant": "acme", "subject": "a"}, issuer="http://idp.example.com"),  # not https
        _file(),  # no rules
    ],
)
def test_refused_at_load(text: str) -> None:
    with pytest.raises(InvalidInput):
        load_tenant_identities(text)

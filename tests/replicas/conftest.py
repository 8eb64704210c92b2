"""The replicas tier's one federation (two gateway replicas) and its OIDC issuer, shared by
the tier's modules so that ``make test-replicas`` starts Ray and the gateway once.

The issuer (``tests/support/oidc_issuer.py``) is trusted twice: for ``/admin`` bearer tokens
(audience ``bulletproof-admin``, the role table of ``OidcIssuer.config``) and by the STS
endpoint for tenants (audience ``bulletproof-sts``, the rules in ``STS_RULES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.cluster import Federation, start_cluster
from tests.support.oidc_issuer import OidcIssuer

STS_AUDIENCE = "bulletproof-sts"
#: Calls per check that must reach both replicas: Serve spreads them, so with this many both
#: replicas answer some (see test_admin_identity).
SPREAD = 12
#: Trust rules of the STS endpoint (core/tenant_identities.py); the tenants are created by the
#: tests that use them.
STS_RULES: list[dict[str, Any]] = [
    {"tenant": "sts-acme", "claims": {"groups": "acme-writers"}},
    {"tenant": "sts-short", "subject": "short-lived", "max_session_s": 900},
    {"tenant": "sts-missing", "subject": "ghost"},
]


@pytest.fixture(scope="session")
def issuer() -> Iterator[OidcIssuer]:
    found = OidcIssuer()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory, issuer: OidcIssuer) -> Iterator[Federation]:
    state = tmp_path_factory.mktemp("bp-identity")
    identity = state / "identity.yaml"
    identity.write_text(yaml.safe_dump({"issuers": [issuer.config()]}))
    tenants = state / "tenant-identity.yaml"
    sts = {key: value for key, value in issuer.config().items() if key != "roles"}
    sts.update({"name": "test-sts", "audience": STS_AUDIENCE, "tenants": STS_RULES})
    tenants.write_text(yaml.safe_dump({"issuers": [sts]}))
    overrides = {
        "BP_GATEWAY_REPLICAS": "2",
        "BP_ADMIN_OIDC_FILE": str(identity),
        "BP_TENANT_OIDC_FILE": str(tenants),
    }
    with start_cluster(state, overrides=overrides) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def backends_known(fed: Federation) -> None:
    """Both replicas' registries list the three backends before a module writes."""
    fed.wait_backends_known(3, SPREAD)

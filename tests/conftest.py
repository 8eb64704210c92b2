"""Shared fixtures. Service fixtures are session-scoped and lazy: unit tests start nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.support.cluster import Federation, start_cluster

# Property tests check behaviour, never speed: Hypothesis's 200 ms per-example deadline turns a
# loaded machine (CI beside other work) into "Flaky" failures, so no deadline.
settings.register_profile("bulletproof", deadline=None)
settings.load_profile("bulletproof")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with start_cluster(tmp_path_factory.mktemp("bp-state")) as running:
        yield running


@pytest.fixture(scope="session")
def plain_tenant(cluster: Federation) -> tuple[str, Any]:
    """A tenant created with --allow-plaintext (compatibility tests), and its boto3 client."""
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    return name, cluster.s3(key, secret)


@pytest.fixture(scope="session")
def tenant(cluster: Federation) -> tuple[str, Any]:
    """A default tenant: every object must be client-side encrypted."""
    name, key, secret = cluster.create_tenant()
    return name, cluster.s3(key, secret)


@pytest.fixture
def bucket_name() -> str:
    import secrets

    return f"bkt-{secrets.token_hex(4)}"

"""The fuzz tier: property-based requests against the real gateway, schemathesis against the
admin API's generated OpenAPI document, and the secret scan.

They use the session's shared ``cluster`` (tests/conftest.py), so ``make test`` runs them in
the same process as tests/integration: the scan (marked ``scan_last``) is moved to the very
end of the session and sees every secret the whole run created. Run alone
(``pytest tests/fuzz``), they start their own federation as any integration module does.
"""

from __future__ import annotations

import pytest

__all__: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scan_last: runs after every other test of the session (the secret scan)"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the ``scan_last`` tests behind everything else the session collected."""
    last = [item for item in items if item.get_closest_marker("scan_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("scan_last")] + last

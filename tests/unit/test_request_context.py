"""The request id context: safe ids only, scoped, and on every log record made inside."""

from __future__ import annotations

import logging

import pytest

from core.request_context import (
    current_request_id,
    install_log_record_request_id,
    request_scope,
    usable_request_id,
)


@pytest.mark.parametrize(
    ("candidate", "usable"),
    [
        ("0f9e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b", True),
        ("ABCDEF0123456789", True),
        ("short", False),
        ("has space in it", False),
        ("line\nbreak-injected", False),
        ("x" * 65, False),
        (None, False),
        ("", False),
    ],
)
def test_only_safe_ids_are_taken_from_outside(candidate: str | None, usable: bool) -> None:
    taken = usable_request_id(candidate)
    assert (taken is not None) is usable and (taken is None or taken == candidate)


def test_scope_sets_and_restores_and_records_carry_it(caplog: pytest.LogCaptureFixture) -> None:
    install_log_record_request_id()
    install_log_record_request_id()  # idempotent: one wrapper
    log = logging.getLogger("bp.test.request")
    assert current_request_id() is None
    with caplog.at_level(logging.INFO, logger="bp.test.request"):
        with request_scope("REQ-0123456789"):
            assert current_request_id() == "REQ-0123456789"
            log.info("inside")
        log.info("outside")
    assert current_request_id() is None
    inside, outside = caplog.records
    assert inside.request_id == "REQ-0123456789"  # type: ignore[attr-defined]
    assert not hasattr(outside, "request_id")

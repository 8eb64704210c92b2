"""Which class an object gets (request, bucket, tenant, policy default) and what a new policy
document changes."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.policy import (
    CLASS_SOURCES,
    builtin_policy,
    choose_class,
    diff_policies,
    load_policy,
)

DOC = load_policy(
    """
version: 1
default_class: RegionalClass
classes:
  Hot5: {replication: {copies: 5, write_quorum: 3}}
  Wide: {erasure: {k: 6, m: 3}}
"""
)


@pytest.mark.parametrize(
    ("requested", "bucket", "tenant", "expected", "source"),
    [
        ("Hot5", "Wide", "StandardClass", "Hot5", "request"),
        (None, "Wide", "StandardClass", "Wide", "bucket default"),
        (None, None, "StandardClass", "StandardClass", "tenant default"),
        (None, None, None, "RegionalClass", "policy default"),
        ("", "", "", "RegionalClass", "policy default"),
    ],
)
def test_first_source_that_names_a_class_wins(requested, bucket, tenant, expected, source):
    choice = choose_class(DOC, requested=requested, bucket_default=bucket, tenant_default=tenant)
    assert (choice.redundancy_class.name, choice.source) == (expected, source)
    assert choice.source in CLASS_SOURCES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requested": "Nope", "bucket_default": "Hot5"}, r"^request: unknown redundancy class"),
        ({"bucket_default": "Gone", "tenant_default": "Hot5"}, r"^bucket default: unknown"),
        ({"tenant_default": "Gone"}, r"^tenant default: unknown redundancy class 'Gone'"),
    ],
)
def test_an_unknown_name_never_falls_through(kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        choose_class(DOC, **kwargs)


def test_diff() -> None:
    new = load_policy(
        """
version: 1
classes:
  Hot5: {replication: {copies: 5, write_quorum: 4}}
  Cold9: {erasure: {k: 6, m: 3}}
"""
    )
    diff = diff_policies(DOC, new)
    assert diff.added == ("Cold9",)
    assert diff.removed == ("Wide",)
    assert diff.changed == ("Hot5",)
    assert diff.default_changed and not diff.empty
    assert diff_policies(builtin_policy(), builtin_policy()).empty

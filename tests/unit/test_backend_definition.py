"""core/backend_definition.py: every declared field validated, each refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from core.backend_definition import parse_changes, parse_definition
from core.errors import InvalidInput

S3: dict[str, Any] = {
    "name": "wasabi-eu",
    "type": "wasabi",
    "endpoint": "https://s3.eu-central-1.wasabisys.com/",
    "bucket": "bp-store",
    "access_key": "AK",
    "secret_key": "SK",
    "region": "eu-central",
    "country": "de",
    "jurisdiction": "eu",
}


def test_a_full_s3_definition() -> None:
    d = parse_definition(
        {
            **S3,
            "signing_region": "eu-central-1",
            "addressing_style": "virtual",
            "sla": {"availability": 99.9, "latency_ms": 80},
            "flags": {"residency": True, "supports_sse": True},
            "capacity_bytes": 10**12,
            "tenants": ["b", "a", "a"],
            "create_bucket": True,
        }
    )
    assert (d.kind, d.backend_type, d.provider) == ("s3", "wasabi", "wasabi")
    assert d.endpoint == "https://s3.eu-central-1.wasabisys.com"
    assert (d.location.country, d.location.jurisdiction) == ("DE", "EU")
    assert (d.signing_region, d.addressing_style, d.create_bucket) == (
        "eu-central-1",
        "virtual",
        True,
    )
    assert (d.sla.availability, d.sla.latency_ms, d.residency, d.supports_sse) == (
        99.9,
        80.0,
        True,
        True,
    )
    assert d.tenants == ("a", "b")


def test_defaults_and_legacy_type() -> None:
    d = parse_definition({**S3, "type": "s3"})
    assert (d.backend_type, d.signing_region, d.addressing_style, d.create_bucket) == (
        "other",
        "us-east-1",
        "path",
        False,
    )
    assert parse_definition({**S3, "type": "aws"}).addressing_style == "virtual"
    local = parse_definition(
        {"name": "l", "type": "local", "path": "/srv/x", "region": "r", "country": "FR",
         "jurisdiction": "EU"}
    )  # fmt: skip
    assert (local.kind, local.path, local.tenants) == ("local", "/srv/x", None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "bad name"}, "'name'"),
        ({"type": "ftp"}, "'type'"),
        ({"endpoint": "ftp://x"}, "'endpoint'"),
        ({"endpoint": "http://h:99999"}, "'endpoint'"),
        ({"endpoint": None}, "'endpoint'"),
        ({"bucket": "no/slash"}, "'bucket'"),
        ({"secret_key": None}, "'secret_key'"),
        ({"country": "Germany"}, "'country'"),
        ({"jurisdiction": None}, "'jurisdiction'"),
        ({"addressing_style": "sideways"}, "'addressing_style'"),
        ({"sla": {"availability": 120}}, "'sla.availability'"),
        ({"sla": {"latency_ms": -1}}, "'sla.latency_ms'"),
        ({"sla": {"speed": 1}}, "'sla'"),
        ({"flags": {"residency": "yes"}}, "'residency'"),
        ({"capacity_bytes": 0}, "'capacity_bytes'"),
        ({"tenants": []}, "'tenants'"),
        ({"path": "/x"}, "'path'"),
        ({"colour": "red"}, "'colour'"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_definition({**S3, **change})
    assert field in str(exc.value)


def test_changes() -> None:
    c = parse_changes({"access_key": "a", "secret_key": "b", "capacity_bytes": None}, kind="s3")
    assert c.credentials and c.reconnects and c.clear == {"capacity_bytes"}
    c = parse_changes({"region": "eu-west", "country": "ie", "jurisdiction": "eu"}, kind="s3")
    assert c.location is not None and c.location.country == "IE" and not c.reconnects
    for bad, word in (
        ({"endpoint": "http://x"}, "cannot change"),
        ({"bucket": "other"}, "cannot change"),
        ({}, "nothing to change"),
        ({"type": "local"}, "'type'"),
        ({"access_key": "only-one"}, "'secret_key'"),
        ({"region": "x"}, "'country'"),
    ):
        with pytest.raises(InvalidInput) as exc:
            parse_changes(bad, kind="s3")
        assert word in str(exc.value)
    with pytest.raises(InvalidInput):
        parse_changes({"signing_region": "x"}, kind="local")


def test_a_local_backend_may_name_its_node() -> None:
    local = {"name": "disk", "type": "local", "path": "/srv/bp", "region": "eu-north",
             "country": "SE", "jurisdiction": "SE"}  # fmt: skip
    assert parse_definition(local).node is None  # the adding replica's node decides
    assert parse_definition({**local, "node": "io-1"}).node == "io-1"
    with pytest.raises(InvalidInput, match="'node'"):
        parse_definition({**local, "node": "io 1; rm"})
    with pytest.raises(InvalidInput, match="'node' applies only to type local"):
        parse_definition({**S3, "node": "io-1"})


def test_archive_designation() -> None:
    assert parse_definition({**S3, "archive": True}).archive is True
    assert parse_definition(S3).archive is False
    with pytest.raises(InvalidInput, match="archive"):
        parse_definition({**S3, "archive": "yes"})

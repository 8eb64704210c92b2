"""``POST /{bucket}?envelopes`` without a database: routing, item parsing, result shapes
(the handler's SQL and its isolation are proven in tests/integration/test_rotate_envelopes.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.s3 import errors as s3e
from gateway.s3 import operations as ops
from gateway.s3.handlers import envelopes as handler
from schema.wrapped_keys import VersionEnvelope
from tests.support.envelopes import fake_wrapped_key


def parse(method: str, path: str) -> ops.Operation:
    return ops.parse_operation(method, path, [("envelopes", "")], {})


def test_routing_is_a_bucket_post() -> None:
    assert parse("POST", "/bkt") == ops.GetEnvelopes("bkt")
    for method in ("GET", "PUT", "DELETE"):
        with pytest.raises(s3e.MethodNotAllowed):
            parse(method, "/bkt")
    with pytest.raises(s3e.InvalidRequest, match="bucket request"):
        parse("POST", "/bkt/key")


@pytest.mark.parametrize(
    "raw",
    [
        "k",
        {},
        {"key": ""},
        {"key": 7},
        {"key": "x" * 1025},
        {"key": "\u00e9" * 513},  # 1026 bytes of UTF-8
        {"key": "a\x00b"},
        {"key": "\ud800"},
        {"key": "k", "version_id": ""},
        {"key": "k", "version_id": 3},
        {"key": "k", "version_id": "v" * 129},
    ],
)
def test_malformed_items_are_refused(raw: Any) -> None:
    with pytest.raises(s3e.InvalidRequest):
        handler._ref(raw)


def test_well_formed_items() -> None:
    assert handler._ref({"key": "a/b"}) == ("a/b", None)
    assert handler._ref({"key": "k", "version_id": "null"}) == ("k", "null")
    assert handler._ref({"key": "x" * 1024, "version_id": "v" * 128})[1] == "v" * 128


def test_results_say_what_was_found() -> None:
    assert handler._result(("k", None), None)["status"] == "NoSuchKey"
    missing = handler._result(("k", "v1"), None)
    assert (missing["status"], missing["version_id"]) == ("NoSuchVersion", "v1")
    wrapped = fake_wrapped_key(key_id="bp:old", version=1)
    found = VersionEnvelope(
        "k", "null", True, wrapped, "bp:old", 1, "x25519-hkdf-aes256gcm", "ab" * 16, b"h" * 112
    )
    ok = handler._result(("k", None), found)
    assert ok["status"] == "ok" and ok["version_id"] == "null"
    assert base64.b64decode(ok["header"]) == b"h" * 112
    assert ok["metadata"]["x-amz-meta-bp-key-id"] == "bp:old"
    assert ok["metadata"]["x-amz-meta-bp-content-id"] == "ab" * 16
    assert base64.b64decode(ok["metadata"]["x-amz-meta-bp-wrapped-key"]) == wrapped
    old = handler._result(
        ("k", None),
        VersionEnvelope("k", "v", True, wrapped, "bp:old", 1, "x25519-hkdf-aes256gcm", None, None),
    )
    assert old["header"] is None and "x-amz-meta-bp-content-id" not in old["metadata"]
    plain = handler._result(
        ("p", None), VersionEnvelope("p", "null", False, None, None, None, None, None, None)
    )
    assert plain["metadata"] == {} and plain["encrypted"] is False and plain["header"] is None

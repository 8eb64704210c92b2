"""Invariant 1: a default tenant's PUT without a well-formed envelope and BP1 body is refused,
nothing of it becomes visible, and a properly encrypted object round-trips through the
gateway with its envelope (the client SDK decrypts it; the gateway never could)."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import x25519

from client import PublicKeyRef, seal, unseal
from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation
from tests.support.envelopes import bp1_header, fake_envelope, fake_wrapped_key

pytestmark = pytest.mark.integration


def test_encrypted_object_round_trips(tenant: tuple[str, Any]) -> None:
    tenant_name, s3 = tenant
    s3.create_bucket(Bucket="sealed")
    private = x25519.X25519PrivateKey.generate()
    plaintext = os.urandom(200_000)
    sealed = seal(
        plaintext,
        tenant=tenant_name,
        bucket="sealed",
        key="doc",
        recipients=[PublicKeyRef(private.public_key())],
    )
    meta = {k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()}
    assert isinstance(sealed.body, bytes)
    s3.put_object(Bucket="sealed", Key="doc", Body=sealed.body, Metadata=meta)
    got = s3.get_object(Bucket="sealed", Key="doc")
    body = got["Body"].read()
    assert body == sealed.body and plaintext not in body
    headers = {f"x-amz-meta-{k}": v for k, v in got["Metadata"].items()}
    for name, value in sealed.headers.items():
        assert headers[name] == value
    assert (
        unseal(body, headers, private, tenant=tenant_name, bucket="sealed", key="doc") == plaintext
    )


@pytest.mark.parametrize(
    ("metadata", "body", "message_part"),
    [
        ({}, b"plain text", "x-amz-meta-bp-wrapped-key"),
        ({**fake_envelope(), "bp-wrap-alg": "rot13"}, bp1_header(0) + bytes(16), "bp-wrap-alg"),
        ({**fake_envelope(), "bp-wrapped-key": "%%%"}, bp1_header(0) + bytes(16), "base64"),
        (
            {k: v for k, v in fake_envelope().items() if k != "bp-key-id"},
            bp1_header(0) + bytes(16),
            "bp-key-id",
        ),
        ({**fake_envelope(), "bp-key-version": "one"}, bp1_header(0) + bytes(16), "bp-key-version"),
        ({**fake_envelope(), "bp-key-version": "01"}, bp1_header(0) + bytes(16), "leading zeros"),
        (
            {
                **fake_envelope(),
                "bp-wrapped-key": base64.b64encode(fake_wrapped_key(key_id="bp:other")).decode(),
            },
            bp1_header(0) + bytes(16),
            "names another",
        ),
        (
            {
                **fake_envelope(),
                "bp-wrapped-key": base64.b64encode(fake_wrapped_key()[:-1]).decode(),
            },
            bp1_header(0) + bytes(16),
            "length does not match",
        ),
        (fake_envelope(), b"not bp1 at all", "BP1"),
        (fake_envelope(), bp1_header(0, magic=b"XXXX") + bytes(16), "magic"),
        (fake_envelope(), bp1_header(0, suite=9) + bytes(16), "suite"),
        (fake_envelope(), bp1_header(0, seg_log2=30) + bytes(16), "seg_log2"),
        (fake_envelope(), bp1_header(0, reserved=1) + bytes(16), "reserved"),
        (fake_envelope(), bp1_header(10) + bytes(16), "length"),
        (fake_envelope(), bp1_header(5 * 1024 * 1024) + bytes(100), "length"),
    ],
)
def test_unencrypted_or_malformed_put_is_refused(
    cluster: Federation,
    tenant: tuple[str, Any],
    metadata: dict[str, str],
    body: bytes,
    message_part: str,
) -> None:
    _, s3 = tenant
    s3.create_bucket(Bucket="strict") if "strict" not in [
        b["Name"] for b in s3.list_buckets()["Buckets"]
    ] else None
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="strict", Key="k", Body=body, Metadata=metadata)
    assert error_of(exc) == (400, "InvalidRequest")
    assert message_part in exc.value.response["Error"]["Message"]
    assert s3.list_objects_v2(Bucket="strict")["KeyCount"] == 0
    assert cluster.replicas("strict", "k") == []


def test_valid_envelope_with_exact_bp1_length_is_accepted(tenant: tuple[str, Any]) -> None:
    _, s3 = tenant
    s3.create_bucket(Bucket="exact")
    pt_len = 70_000  # two 64 KiB segments
    body = bp1_header(pt_len) + os.urandom(pt_len + 2 * 16)
    s3.put_object(Bucket="exact", Key="k", Body=body, Metadata=fake_envelope())
    assert s3.get_object(Bucket="exact", Key="k")["Body"].read() == body

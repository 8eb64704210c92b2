"""Key rotation rewrites metadata only: the new key decrypts, the old wrapped key is no longer
served, a stale precondition is refused, and not one backend byte changes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import x25519

from client import PublicKeyRef, WrappedKey, seal, unseal, unwrap, wrap
from client.errors import DecryptionFailed
from tests.integration.test_s3_api import error_of
from tests.support.cluster import BACKENDS, Federation
from tests.support.envelopes import fake_wrapped_key

pytestmark = pytest.mark.integration


def settled(cluster: Federation, bucket: str) -> None:
    """Wait until no replica of the bucket is still in flight (stragglers land after the ack)."""
    cluster.wait_for(
        lambda: (
            not cluster.sql(
                "SELECT 1 FROM replicas r JOIN object_versions v ON v.id = r.version_pk"
                " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 AND r.status <> 'ok'",
                bucket,
            )
        ),
        what=f"every replica in {bucket} acknowledged",
    )


def backend_state(cluster: Federation) -> dict[tuple[int, str], tuple[str, int, object]]:
    """Every object on every backend: its ETag (MD5 of the bytes), size and modification time."""
    state = {}
    for index in range(len(BACKENDS)):
        s3 = cluster.backend_s3(index)
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=cluster.backend_bucket(index)
        ):
            for item in page.get("Contents", []):
                state[(index, item["Key"])] = (item["ETag"], item["Size"], item["LastModified"])
    return state


def rewrap_request(s3: Any, path: str, document: dict[str, Any]) -> dict[str, Any]:
    """POST a rewrap document (boto3 has no such call), signed with the client's SigV4 key."""
    response = signed_json(s3, "POST", path, document)
    return {"status": response.status_code, "body": response.content}


def new_wrap(
    s3: Any, bucket: str, key: str, old: x25519.X25519PrivateKey, new: PublicKeyRef
) -> tuple[dict[str, str], str]:
    head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-111")
    header = head["Body"].read()
    meta = head["Metadata"]
    current = WrappedKey.from_bytes(base64.b64decode(meta["bp-wrapped-key"]))
    dek = unwrap(current, old, header)
    rewrapped = wrap(dek, new, header)
    return meta, base64.b64encode(rewrapped.to_bytes()).decode()


def test_rotation_of_one_object(cluster: Federation, tenant: tuple[str, Any]) -> None:
    tenant_name, s3 = tenant
    s3.create_bucket(Bucket="rotate-one")
    old_key, new_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    old_ref, new_ref = PublicKeyRef(old_key.public_key()), PublicKeyRef(new_key.public_key(), 2)
    plaintext = os.urandom(150_000)
    sealed = seal(
        plaintext, tenant=tenant_name, bucket="rotate-one", key="doc", recipients=[old_ref]
    )
    s3.put_object(
        Bucket="rotate-one",
        Key="doc",
        Body=sealed.body,
        Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
    )
    settled(cluster, "rotate-one")
    before = backend_state(cluster)
    meta, wrapped = new_wrap(s3, "rotate-one", "doc", old_key, new_ref)
    document = {
        "expect_key_id": old_ref.key_id,
        "expect_key_version": 1,
        "wrapped_key": wrapped,
        "key_id": new_ref.key_id,
        "key_version": 2,
        "wrap_alg": new_ref.wrap_alg,
    }
    stale = rewrap_request(
        s3, "/rotate-one/doc?rewrap", {**document, "expect_content_id": "ab" * 16}
    )
    assert stale["status"] == 412 and b"another version" in stale["body"]
    document["expect_content_id"] = meta["bp-content-id"]
    done = rewrap_request(s3, "/rotate-one/doc?rewrap", document)
    assert done["status"] == 200, done
    # Served now: the new entry only; the new key decrypts, the old one no longer can.
    got = s3.get_object(Bucket="rotate-one", Key="doc")
    headers = {f"x-amz-meta-{k}": v for k, v in got["Metadata"].items()}
    assert (
        headers["x-amz-meta-bp-key-id"] == new_ref.key_id
        and headers["x-amz-meta-bp-key-version"] == "2"
    )
    assert headers["x-amz-meta-bp-wrapped-key"] == wrapped != meta["bp-wrapped-key"]
    body = got["Body"].read()
    assert (
        unseal(body, headers, new_key, tenant=tenant_name, bucket="rotate-one", key="doc")
        == plaintext
    )
    with pytest.raises(DecryptionFailed):
        unseal(body, headers, old_key, tenant=tenant_name, bucket="rotate-one", key="doc")
    # The same rotation again: its precondition no longer holds.
    again = rewrap_request(s3, "/rotate-one/doc?rewrap", document)
    assert again["status"] == 412 and b"PreconditionFailed" in again["body"]
    assert backend_state(cluster) == before
    history = cluster.sql(
        "SELECT h.key_id, h.key_version FROM wrapped_key_history h"
        " JOIN object_versions v ON v.id = h.version_pk WHERE v.key = 'doc'"
    )
    assert [(h["key_id"], h["key_version"]) for h in history] == [(old_ref.key_id, 1)]
    audit = cluster.sql(
        "SELECT result FROM audit_log WHERE action = 'RewrapObject' AND resource = 'rotate-one/doc'"
        " ORDER BY seq"
    )
    # the rewrap, and each refused attempt (every access is audited, refusals too)
    assert [a["result"].split(" ")[0] for a in audit] == [
        "PreconditionFailed",
        "ok",
        "PreconditionFailed",
    ]


def test_rewrap_refuses_bad_documents(tenant: tuple[str, Any]) -> None:
    _, s3 = tenant
    s3.create_bucket(Bucket="rotate-bad")
    cases = [
        ({"expect_key_id": "x"}, 400),
        (
            {
                "expect_key_id": "x",
                "expect_key_version": 1,
                "wrapped_key": "!!",
                "key_id": "k",
                "key_version": 2,
                "wrap_alg": "x25519-hkdf-aes256gcm",
            },
            400,
        ),
        (
            {
                "expect_key_id": "x",
                "expect_key_version": 1,
                "wrapped_key": base64.b64encode(fake_wrapped_key(key_id="k", version=2)).decode(),
                "key_id": "k",
                "key_version": 2,
                "wrap_alg": "x25519-hkdf-aes256gcm",
            },
            404,
        ),
    ]
    for document, status in cases:
        assert rewrap_request(s3, "/rotate-bad/missing?rewrap", document)["status"] == status
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="rotate-bad", Key="missing")
    assert error_of(exc)[0] == 404


def test_rotation_of_a_thousand_objects_moves_no_backend_bytes(
    cluster: Federation, tenant: tuple[str, Any]
) -> None:
    tenant_name, s3 = tenant
    s3.create_bucket(Bucket="rotate-many")
    old_key, new_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    old_ref, new_ref = PublicKeyRef(old_key.public_key()), PublicKeyRef(new_key.public_key(), 2)
    count = 1000

    def put(i: int) -> None:
        sealed = seal(
            b"object %d" % i,
            tenant=tenant_name,
            bucket="rotate-many",
            key=f"o/{i:04d}",
            recipients=[old_ref],
        )
        s3.put_object(
            Bucket="rotate-many",
            Key=f"o/{i:04d}",
            Body=sealed.body,
            Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    settled(cluster, "rotate-many")
    before = backend_state(cluster)

    def item(i: int) -> dict[str, Any]:
        _, wrapped = new_wrap(s3, "rotate-many", f"o/{i:04d}", old_key, new_ref)
        return {
            "key": f"o/{i:04d}",
            "expect_key_id": old_ref.key_id,
            "expect_key_version": 1,
            "wrapped_key": wrapped,
            "key_id": new_ref.key_id,
            "key_version": 2,
            "wrap_alg": new_ref.wrap_alg,
        }

    with ThreadPoolExecutor(8) as pool:
        items = list(pool.map(item, range(count)))
    done = rewrap_request(s3, "/rotate-many?rewrap", {"items": items})
    assert done["status"] == 200
    results = json.loads(done["body"])["results"]
    assert [r["status"] for r in results] == ["ok"] * count
    assert backend_state(cluster) == before
    for i in (0, 517, count - 1):
        got = s3.get_object(Bucket="rotate-many", Key=f"o/{i:04d}")
        headers = {f"x-amz-meta-{k}": v for k, v in got["Metadata"].items()}
        assert (
            unseal(
                got["Body"].read(),
                headers,
                new_key,
                tenant=tenant_name,
                bucket="rotate-many",
                key=f"o/{i:04d}",
            )
            == b"object %d" % i
        )


def signed_json(s3: Any, method: str, path: str, document: dict[str, Any] | None = None) -> Any:
    import httpx
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    body = json.dumps(document).encode() if document is not None else b""
    url = f"{s3.meta.endpoint_url}{path}"
    request = AWSRequest(method=method, url=url, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(s3._request_signer._credentials, "s3", s3.meta.region_name).add_auth(request)  # noqa: SLF001
    return httpx.request(method, url, content=body, headers=dict(request.headers.items()))


def test_publish_keys_and_share_an_object(tenant: tuple[str, Any]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tenant_name, s3 = tenant
    owner, friend = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    owner_ref, friend_ref = PublicKeyRef(owner.public_key()), PublicKeyRef(friend.public_key())
    pem = (
        friend.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    published = signed_json(
        s3,
        "POST",
        "/?publish-key",
        {"key_id": friend_ref.key_id, "key_version": 1, "public_key_pem": pem},
    )
    assert published.status_code == 200 and published.json()["wrap_alg"] == "x25519-hkdf-aes256gcm"
    listed = signed_json(s3, "GET", "/?keys").json()["keys"]
    assert [(k["key_id"], k["public_key_pem"]) for k in listed] == [(friend_ref.key_id, pem)]
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    weak_pem = weak.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    refused = signed_json(
        s3,
        "POST",
        "/?publish-key",
        {"key_id": "bp:weak", "key_version": 1, "public_key_pem": weak_pem},
    )
    assert refused.status_code == 400 and b"3072" in refused.content

    s3.create_bucket(Bucket="shared")
    plaintext = b"for two readers"
    sealed = seal(
        plaintext, tenant=tenant_name, bucket="shared", key="note", recipients=[owner_ref]
    )
    s3.put_object(
        Bucket="shared",
        Key="note",
        Body=sealed.body,
        Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
    )
    _, for_friend = new_wrap(s3, "shared", "note", owner, friend_ref)
    shared = signed_json(
        s3,
        "POST",
        "/shared/note?share",
        {
            "wrapped_key": for_friend,
            "key_id": friend_ref.key_id,
            "key_version": 1,
            "wrap_alg": friend_ref.wrap_alg,
        },
    )
    assert shared.status_code == 200, shared.text
    recipients = signed_json(s3, "GET", "/shared/note?recipients").json()["recipients"]
    assert [(r["key_id"], r["primary"]) for r in recipients] == [
        (owner_ref.key_id, True),
        (friend_ref.key_id, False),
    ]
    got = s3.get_object(Bucket="shared", Key="note")
    headers = {f"x-amz-meta-{k}": v for k, v in got["Metadata"].items()}
    others = [WrappedKey.from_bytes(base64.b64decode(r["wrapped_key"])) for r in recipients[1:]]
    assert (
        unseal(
            got["Body"].read(),
            headers,
            friend,
            tenant=tenant_name,
            bucket="shared",
            key="note",
            other_wrapped_keys=others,
        )
        == plaintext
    )
    again = signed_json(
        s3,
        "POST",
        "/?publish-key",
        {"key_id": friend_ref.key_id, "key_version": 1, "public_key_pem": pem},
    )
    assert again.status_code == 409
    impostor = signed_json(
        s3,
        "POST",
        "/?publish-key",
        {"key_id": owner_ref.key_id, "key_version": 1, "public_key_pem": pem},
    )
    assert impostor.status_code == 400 and b"not this public key's id" in impostor.content
    missing = signed_json(
        s3,
        "POST",
        "/shared/nothing?share",
        {
            "wrapped_key": for_friend,
            "key_id": friend_ref.key_id,
            "key_version": 1,
            "wrap_alg": friend_ref.wrap_alg,
        },
    )
    assert missing.status_code == 404

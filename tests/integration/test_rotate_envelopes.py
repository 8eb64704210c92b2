"""Rotation reads headers a batch at a time (issue 16, P9): the BP1 header is stored with the
version at its commit (migration 0022) and ``POST /{bucket}?envelopes`` serves it with the
envelope, so ``bp rotate`` makes no ranged GET for versions written since.

Proven here against the real federation: the stored header is the object's first 112 bytes
(single PUT and multipart, whose header is part 1's); the endpoint refuses malformed batches
and too many items with S3 XML errors, answers unknown keys and versions per item, and never
shows one tenant's headers to another; versions without a stored header (written before the
migration: the column is NULL) are rotated through a ranged GET each, and only those; a stored
header that is not the object's own (another object's, or altered in a byte) makes ``bp
rotate`` fail that object without re-wrapping it. The CLI runs in-process as in
``test_bp_cli``."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import seal, unseal
from client.api import GatewayApi
from client.keyring import Keyring
from client.remote import RemoteStore
from client.s3url import S3Url
from client.sharing import upload_file
from client.transfer import UploadOptions
from tests.integration.test_bp_cli import PASSPHRASE, Account, _environment, bp
from tests.integration.test_rewrap import settled, signed_json
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def account(cluster: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    tenant, key, secret = cluster.create_tenant()
    base = tmp_path_factory.mktemp("bp-rotate-envelopes")
    acct = Account(
        tenant,
        key,
        secret,
        base / "keys",
        base / "other-keys",
        base / "none.yaml",
        cluster.s3(key, secret),
    )
    keyring = Keyring(acct.keyring, scrypt_log2_n=12)
    keyring.generate("old", "x25519", PASSPHRASE)
    keyring.generate("new", "x25519", PASSPHRASE)
    yield acct


@pytest.fixture(autouse=True)
def env(cluster: Federation, account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    _environment(monkeypatch, cluster, account)


def _put(account: Account, bucket: str, key: str, data: bytes) -> None:
    """One PutObject sealed for ``old`` as ``bp put`` seals it."""
    sealed = seal(
        data,
        tenant=account.tenant,
        bucket=bucket,
        key=key,
        recipients=[Keyring(account.keyring).load_public("old")],
    )
    account.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=sealed.body,
        Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
    )


def _put_multipart(
    cluster: Federation, account: Account, bucket: str, key: str, path: Path
) -> None:
    """A two-part encrypted upload through the client SDK (5 MiB parts, no threshold)."""
    region = cluster.settings.region
    store = RemoteStore(cluster.endpoint, account.access_key, account.secret, region=region)
    with GatewayApi(cluster.endpoint, account.access_key, account.secret, region=region) as api:
        result = upload_file(
            store,
            api,
            path,
            S3Url(bucket, key),
            [Keyring(account.keyring).load_public("old")],
            tenant=account.tenant,
            options=UploadOptions(part_size=5 * MIB, multipart_threshold=0),
        )
    assert result.parts == 2


def _envelopes(s3: Any, bucket: str, document: Any) -> Any:
    return signed_json(s3, "POST", f"/{bucket}?envelopes", document)


def _key_ids(cluster: Federation, bucket: str) -> dict[str, str]:
    rows = cluster.sql(
        "SELECT v.key, v.key_id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND v.is_latest",
        bucket,
    )
    return {r["key"]: r["key_id"] for r in rows}


def _header_reads(cluster: Federation, account: Account, bucket: str) -> list[str]:
    """Keys of ``bucket`` read with a GET (the ranged header reads of a rotation) so far."""
    rows = cluster.sql(
        "SELECT resource FROM audit_log WHERE actor = $1 AND action = 'GetObject'"
        " AND resource LIKE $2",
        account.access_key,
        f"{bucket}/%",
    )
    return sorted(r["resource"].removeprefix(f"{bucket}/") for r in rows)


def test_stored_headers_are_served_in_batches_and_bad_batches_refused(
    cluster: Federation, account: Account, tmp_path: Path
) -> None:
    bucket = f"env-{secrets.token_hex(4)}"
    s3 = account.s3
    s3.create_bucket(Bucket=bucket)
    _put(account, bucket, "single", b"one part")
    big = tmp_path / "big"
    big.write_bytes(os.urandom(6 * MIB))
    _put_multipart(cluster, account, bucket, "multi", big)
    first = {
        key: s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-111")["Body"].read()
        for key in ("single", "multi")
    }

    answer = _envelopes(
        s3,
        bucket,
        {
            "items": [
                {"key": "single"},
                {"key": "multi", "version_id": "null"},
                {"key": "missing"},
                {"key": "single", "version_id": "no-such-version"},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    single, multi, missing, unknown = answer.json()["results"]
    for got, key in ((single, "single"), (multi, "multi")):
        assert got["status"] == "ok" and got["encrypted"] is True and got["version_id"] == "null"
        assert base64.b64decode(got["header"]) == first[key]  # the object's own first bytes
        head = s3.head_object(Bucket=bucket, Key=key)
        assert got["metadata"]["x-amz-meta-bp-key-id"] == head["Metadata"]["bp-key-id"]
        assert got["metadata"]["x-amz-meta-bp-wrapped-key"] == head["Metadata"]["bp-wrapped-key"]
    assert missing == {"key": "missing", "status": "NoSuchKey", "message": "no object 'missing'"}
    assert unknown["status"] == "NoSuchVersion" and unknown["version_id"] == "no-such-version"

    # Bad batches are refused whole, as S3 XML errors.
    bad_documents: list[Any] = [
        {"items": "single"},
        {"items": []},
        {"items": [{"key": f"k{i}"} for i in range(1001)]},
        {"items": [{"version_id": "null"}]},
        {"items": [{"key": "single", "version_id": 7}]},
        {"items": [{"key": "a\u0000b"}]},
        ["single"],
    ]
    for document in bad_documents:
        refused = _envelopes(s3, bucket, document)
        assert refused.status_code == 400, (document, refused.text)
        assert "<Code>InvalidRequest</Code>" in refused.text
    not_json = signed_json(s3, "POST", f"/{bucket}?envelopes", None)
    assert not_json.status_code == 400 and "<Error>" in not_json.text
    wrong_method = signed_json(s3, "GET", f"/{bucket}?envelopes")
    assert wrong_method.status_code == 405 and "<Code>MethodNotAllowed</Code>" in wrong_method.text

    # Another tenant cannot name this bucket's versions: its own namespace has no such bucket.
    _, key, secret = cluster.create_tenant()
    stranger = cluster.s3(key, secret)
    theirs = _envelopes(stranger, bucket, {"items": [{"key": "single"}]})
    assert theirs.status_code == 404 and "<Code>NoSuchBucket</Code>" in theirs.text
    assert first["single"].hex() not in theirs.text
    unsigned = httpx.post(
        f"{cluster.endpoint}/{bucket}?envelopes",
        content=json.dumps({"items": [{"key": "single"}]}),
    )
    assert unsigned.status_code == 403 and "<Error>" in unsigned.text


def test_rotation_reads_stored_headers_falls_back_without_and_refuses_forged_ones(
    cluster: Federation, account: Account, tmp_path: Path
) -> None:
    bucket = f"rot-env-{secrets.token_hex(4)}"
    s3 = account.s3
    s3.create_bucket(Bucket=bucket)
    keys = [f"n/{i:03d}" for i in range(40)]
    for key in keys:
        _put(account, bucket, key, f"rotation {key}".encode())
    big = tmp_path / "big"
    data = os.urandom(6 * MIB)
    big.write_bytes(data)
    _put_multipart(cluster, account, bucket, "n/multi", big)
    settled(cluster, bucket)
    stored = cluster.sql(
        "SELECT count(*) AS n FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND v.bp1_header IS NOT NULL",
        bucket,
    )[0]["n"]
    assert stored == len(keys) + 1  # every version written here has its header stored

    # Versions "written before migration 0022": no stored header.
    old_style = keys[:5]
    cluster.sql(
        "UPDATE object_versions SET bp1_header = NULL WHERE key = ANY($1::text[])"
        " AND bucket_id = (SELECT id FROM buckets WHERE name = $2)",
        old_style,
        bucket,
    )
    # Forged stored headers: another object's (its binding names another key), and the
    # object's own with one byte of the key commitment flipped.
    forged_other, forged_bit = keys[10], keys[11]
    own = bytearray(
        s3.get_object(Bucket=bucket, Key=forged_bit, Range="bytes=0-111")["Body"].read()
    )
    own[40] ^= 1
    bucket_id = cluster.sql("SELECT id FROM buckets WHERE name = $1", bucket)[0]["id"]
    other_header = cluster.sql(
        "SELECT bp1_header FROM object_versions WHERE bucket_id = $1 AND key = $2",
        bucket_id,
        keys[12],
    )[0]["bp1_header"]
    for key, header in ((forged_other, bytes(other_header)), (forged_bit, bytes(own))):
        cluster.sql(
            "UPDATE object_versions SET bp1_header = $3 WHERE bucket_id = $1 AND key = $2",
            bucket_id,
            key,
            header,
        )
    reads_before = _header_reads(cluster, account, bucket)

    run = bp("rotate", "--from", "old", "--to", "new", f"s3://{bucket}", "--batch", "16")
    assert run.code == 1, run.err  # the two forged ones failed
    total = len(keys) + 1
    assert f"{total - 2} rotated, 0 skipped, 2 failed of {total} objects" in run.err
    failed = sorted(line for line in run.out.splitlines() if line.startswith("failed"))
    assert len(failed) == 2
    assert all("integrity check failed, not re-wrapped" in line for line in failed)
    assert {line.split(":", 2)[1].removeprefix("//" + bucket + "/") for line in failed} == {
        forged_other,
        forged_bit,
    }
    # Only the versions without a stored header were read from their objects.
    new_reads = sorted(set(_header_reads(cluster, account, bucket)) - set(reads_before))
    assert new_reads == sorted(old_style)

    new_id, old_id = (Keyring(account.keyring).info(n).key_id for n in ("new", "old"))
    under = _key_ids(cluster, bucket)
    assert under[forged_other] == old_id and under[forged_bit] == old_id
    assert {k for k, v in under.items() if v == new_id} == set(under) - {forged_other, forged_bit}
    # The new key reads what was rotated: a fallback one, a stored-header one, the multipart.
    private = Keyring(account.keyring).load_private("new", PASSPHRASE)
    for key in (old_style[0], keys[20]):
        got = s3.get_object(Bucket=bucket, Key=key)
        meta = {f"x-amz-meta-{k}": v for k, v in got["Metadata"].items()}
        plain = unseal(
            got["Body"].read(), meta, private, tenant=account.tenant, bucket=bucket, key=key
        )
        assert plain == f"rotation {key}".encode()
    out = tmp_path / "multi.out"
    assert bp("get", f"s3://{bucket}/n/multi", str(out), "--key", "new").code == 0
    assert out.read_bytes() == data

    # Put right, the stored headers rotate the two that failed; nothing else is touched.
    for key in (forged_other, forged_bit):
        real = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-111")["Body"].read()
        cluster.sql(
            "UPDATE object_versions SET bp1_header = $3 WHERE bucket_id = $1 AND key = $2",
            bucket_id,
            key,
            real,
        )
    again = bp("rotate", "--from", "old", "--to", "new", f"s3://{bucket}")
    assert again.code == 0, again.err
    assert f"2 rotated, {total - 2} skipped, 0 failed" in again.err
    assert set(_key_ids(cluster, bucket).values()) == {new_id}


def test_overwritten_and_restored_versions_keep_their_own_stored_header(
    cluster: Federation, account: Account
) -> None:
    """An overwrite stores the new version's header and the old version keeps its own; a
    noncurrent version copied back on top (a restore: a shared-piece copy under the same
    name, the only copy an encrypted object allows) carries its source's header."""
    bucket = f"env-copy-{secrets.token_hex(4)}"
    s3 = account.s3
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    _put(account, bucket, "doc", b"first")
    first_version = s3.head_object(Bucket=bucket, Key="doc")["VersionId"]
    _put(account, bucket, "doc", b"second")
    second_version = s3.head_object(Bucket=bucket, Key="doc")["VersionId"]
    settled(cluster, bucket)
    s3.copy_object(
        Bucket=bucket,
        Key="doc",
        CopySource={"Bucket": bucket, "Key": "doc", "VersionId": first_version},
    )
    answer = _envelopes(
        s3,
        bucket,
        {
            "items": [
                {"key": "doc", "version_id": first_version},
                {"key": "doc", "version_id": second_version},
                {"key": "doc"},
            ]
        },
    ).json()["results"]
    first, second, restored = (base64.b64decode(r["header"]) for r in answer)
    body = s3.get_object(Bucket=bucket, Key="doc", VersionId=first_version)["Body"].read()
    assert first == body[:112]
    again = s3.get_object(Bucket=bucket, Key="doc", VersionId=second_version)["Body"].read()
    assert second == again[:112] != first
    assert answer[2]["version_id"] not in (first_version, second_version)
    assert restored == first

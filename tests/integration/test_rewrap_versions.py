"""Key rotation reaches every version of a versioned bucket: after ``bp rotate`` each version
(the null version written before versioning was enabled, noncurrent ones, a version under a
delete marker) decrypts with the new key and no longer with the old one, not one backend byte
changed, and a replayed rotation is refused (412) for every version.

The CLI runs in-process (``client.cli.main``) with the environment of ``test_bp_cli``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from client.keyring import Keyring
from tests.integration.test_bp_cli import PASSPHRASE, Account, _environment, bp
from tests.integration.test_rewrap import settled, signed_json
from tests.support.cluster import BACKENDS, Federation
from tests.support.envelopes import fake_envelope

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def account(cluster: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    tenant, key, secret = cluster.create_tenant()
    base = tmp_path_factory.mktemp("bp-rotate-versions")
    acct = Account(
        tenant,
        key,
        secret,
        base / "keys",
        base / "other-keys",
        base / "none.yaml",
        cluster.s3(key, secret),
    )
    keyring = Keyring(acct.keyring, scrypt_log2_n=12)  # cheap: many `bp get`s unlock keys
    keyring.generate("old", "x25519", PASSPHRASE)
    keyring.generate("new", "p256", PASSPHRASE)
    yield acct


@pytest.fixture(autouse=True)
def env(cluster: Federation, account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    _environment(monkeypatch, cluster, account)


def our_backend_objects(
    cluster: Federation, bucket: str
) -> dict[tuple[str, str], tuple[str, int, object]]:
    """ETag, size and modification time of every backend object a version of ``bucket``
    names, as the moto backends report them (not as the gateway believes)."""
    rows = cluster.sql(
        "SELECT b.name AS backend, r.locator FROM replicas r"
        " JOIN object_versions v ON v.id = r.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " JOIN backends b ON b.id = r.backend_id WHERE k.name = $1",
        bucket,
    )
    names = [b[0] for b in BACKENDS]
    state = {}
    for row in rows:
        index = names.index(row["backend"])
        head = cluster.backend_s3(index).head_object(
            Bucket=cluster.backend_bucket(index), Key=row["locator"]
        )
        state[(row["backend"], row["locator"])] = (
            head["ETag"],
            head["ContentLength"],
            head["LastModified"],
        )
    return state


def versions_of(s3: Any, bucket: str) -> list[tuple[str, str, dict[str, str]]]:
    """(key, version id, envelope metadata) of every version, delete markers left out."""
    listed = s3.list_object_versions(Bucket=bucket)
    assert not listed["IsTruncated"]
    out = []
    for v in listed.get("Versions", []):
        head = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        out.append((v["Key"], v["VersionId"], head["Metadata"]))
    return out


def rewrap_document(expect: dict[str, str], new: dict[str, str]) -> dict[str, Any]:
    """A rewrap from the envelope ``expect`` (metadata names without ``x-amz-meta-``) to the
    wrapped key of the envelope ``new``."""
    return {
        "expect_key_id": expect["bp-key-id"],
        "expect_key_version": int(expect["bp-key-version"]),
        "expect_content_id": expect["bp-content-id"],
        "wrapped_key": new["bp-wrapped-key"],
        "key_id": new["bp-key-id"],
        "key_version": int(new["bp-key-version"]),
        "wrap_alg": new["bp-wrap-alg"],
    }


def test_rotation_covers_every_version(
    account: Account, cluster: Federation, tmp_path: Path
) -> None:
    s3 = account.s3
    keyring = Keyring(account.keyring)
    old_id, new_id = keyring.info("old").key_id, keyring.info("new").key_id
    name = f"rotv-{secrets.token_hex(4)}"
    assert bp("mb", f"s3://{name}").code == 0
    contents = {}

    def put(key: str, data: bytes) -> str:
        src = tmp_path / "src"
        src.write_bytes(data)
        run = bp("put", str(src), f"s3://{name}/{key}", "--key", "old")
        assert run.code == 0, run.err
        return str(s3.head_object(Bucket=name, Key=key).get("VersionId") or "null")

    # A null version from before versioning, then three versions of the same key with bp put,
    # and a key whose only version sits under a delete marker.
    contents[("doc", put("doc", b"doc, unversioned era"))] = b"doc, unversioned era"
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        data = f"doc, version {i} ".encode() * (1 + 5000 * i)
        contents[("doc", put("doc", data))] = data
    contents[("gone", put("gone", b"deleted, but kept as a version"))] = (
        b"deleted, but kept as a version"
    )
    s3.delete_object(Bucket=name, Key="gone")
    assert ("doc", "null") in contents and len(contents) == 5
    settled(cluster, name)
    before_backends = our_backend_objects(cluster, name)
    assert len(before_backends) >= len(contents)
    before = {(k, v): meta for k, v, meta in versions_of(s3, name)}
    assert set(before) == set(contents)
    assert all(meta["bp-key-id"] == old_id for meta in before.values())

    run = bp("rotate", "--from", "old", "--to", "new", f"s3://{name}")
    assert run.code == 0, (run.out, run.err)
    assert "5 rotated, 0 skipped, 0 failed of 5 objects" in run.err, run.err

    after = {(k, v): meta for k, v, meta in versions_of(s3, name)}
    assert set(after) == set(before)
    for (key, version_id), meta in after.items():
        assert meta["bp-key-id"] == new_id, (key, version_id)
        assert meta["bp-content-id"] == before[(key, version_id)]["bp-content-id"]
        assert meta["bp-wrapped-key"] != before[(key, version_id)]["bp-wrapped-key"]
    rows = cluster.sql(
        "SELECT v.key_id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND NOT v.is_delete_marker",
        name,
    )
    assert sorted(r["key_id"] for r in rows) == [new_id] * 5

    # Every version decrypts with the new key, whole and ranged; the old key opens none.
    for (key, version_id), data in contents.items():
        url = f"s3://{name}/{key}"
        out = tmp_path / "out"
        got = bp("get", url, str(out), "--version-id", version_id, "--key", "new")
        assert got.code == 0, got.err
        assert out.read_bytes() == data
        ranged = bp("get", url, str(out), "--version-id", version_id, "--range", "3-9")
        assert ranged.code == 0 and out.read_bytes() == data[3:10], ranged.err
        stale = bp("verify", url, "--version-id", version_id, "--key", "old")
        assert stale.code == 6 and "not a recipient" in stale.err, stale.err
    assert bp("get", f"s3://{name}/doc", str(tmp_path / "latest"), "--key", "new").code == 0
    assert bp("get", f"s3://{name}/gone", str(tmp_path / "gone"), "--key", "new").code == 3

    # Metadata only: not one backend object was written, replaced or removed.
    assert our_backend_objects(cluster, name) == before_backends
    history = cluster.sql(
        "SELECT h.key_id FROM wrapped_key_history h JOIN object_versions v ON v.id = h.version_pk"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1",
        name,
    )
    assert [h["key_id"] for h in history] == [old_id] * 5
    audit = cluster.sql(
        "SELECT result FROM audit_log WHERE action = 'RewrapObject' AND resource LIKE $1",
        f"{name}/%",
    )
    assert sorted(a["result"].rsplit("(version ", 1)[1].rstrip(")") for a in audit) == sorted(
        v for _, v in contents
    )

    # A replay of the rotation (what each version held before, wrapped anew) is refused for
    # every version, in the single form and in a batch; nothing changes.
    for (key, version_id), meta in before.items():
        document = rewrap_document(meta, after[(key, version_id)])
        path = f"/{name}/{quote(key)}?rewrap&versionId={quote(version_id, safe='')}"
        replay = signed_json(s3, "POST", path, document)
        assert replay.status_code == 412, (key, version_id, replay.text)
        assert b"PreconditionFailed" in replay.content
    items = [
        {
            "key": key,
            "version_id": version_id,
            **rewrap_document(meta, after[(key, version_id)]),
        }
        for (key, version_id), meta in before.items()
    ]
    batch = signed_json(s3, "POST", f"/{name}?rewrap", {"items": items})
    assert batch.status_code == 200, batch.text
    results = json.loads(batch.content)["results"]
    assert [(r["key"], r["version_id"], r["status"]) for r in results] == [
        (key, version_id, "PreconditionFailed") for key, version_id in before
    ]
    again = bp("rotate", "--from", "old", "--to", "new", f"s3://{name}")
    assert again.code == 0 and "0 rotated, 5 skipped, 0 failed" in again.err, again.err
    assert {(k, v): m for k, v, m in versions_of(s3, name)} == after
    assert our_backend_objects(cluster, name) == before_backends


def test_rewrap_of_missing_versions_and_delete_markers(account: Account) -> None:
    s3 = account.s3
    name = f"rotv-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    marker = s3.delete_object(Bucket=name, Key="k")["VersionId"]
    document = rewrap_document(fake_envelope(key_id="bp:x"), fake_envelope(key_id="bp:y"))
    for version_id in (marker, "0" * 32, "not-one-of-ours", "null"):
        answer = signed_json(
            s3, "POST", f"/{name}/k?rewrap&versionId={quote(version_id, safe='')}", document
        )
        assert answer.status_code == 404, (version_id, answer.text)
        assert b"NoSuchVersion" in answer.content
    batch = signed_json(
        s3,
        "POST",
        f"/{name}?rewrap",
        {"items": [{"key": "k", "version_id": marker, **document}, {"key": "k", **document}]},
    )
    assert batch.status_code == 200, batch.text
    results = json.loads(batch.content)["results"]
    assert [r["status"] for r in results] == ["NoSuchVersion", "NoSuchKey"]
    assert "delete marker" in results[0]["message"] and results[0]["version_id"] == marker
    refused = signed_json(s3, "POST", f"/{name}?rewrap&versionId={marker}", {"items": []})
    assert refused.status_code == 400
    in_body = signed_json(s3, "POST", f"/{name}/k?rewrap", {**document, "version_id": marker})
    assert in_body.status_code == 400

"""DeleteObjects (POST ?delete) over HTTP: quiet and verbose results, version ids, delete
markers, the integrity header S3 requires, the 1000-key limit and hostile XML."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.support.cluster import Federation
from tests.support.raw_s3 import NS, Tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def t(cluster: Federation) -> Tenant:
    return Tenant.create(cluster)


def keys_of(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def post_delete(t: Tenant, bucket: str, body: bytes, *, md5: bool = True) -> tuple[int, Any]:
    headers = {"Content-Type": "application/xml"}
    if md5:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
    response = t.raw("POST", f"/{bucket}?delete=", body=body, headers=headers)
    root = ET.fromstring(response.content) if response.content else None
    return response.status_code, root


def code_of(root: Any) -> str | None:
    return root.findtext("Code") if root is not None else None


def test_verbose_and_quiet(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    for i in range(5):
        s3.put_object(Bucket=bucket_name, Key=f"k{i}", Body=b"x")
    got = s3.delete_objects(
        Bucket=bucket_name,
        Delete={"Objects": [{"Key": "k0"}, {"Key": "k1"}, {"Key": "never-existed"}]},
    )
    assert sorted(d["Key"] for d in got["Deleted"]) == ["k0", "k1", "never-existed"]
    assert "Errors" not in got
    assert all("DeleteMarker" not in d for d in got["Deleted"])
    assert keys_of(s3, bucket_name) == ["k2", "k3", "k4"]
    quiet = s3.delete_objects(
        Bucket=bucket_name, Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}], "Quiet": True}
    )
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert keys_of(s3, bucket_name) == ["k4"]


def test_versioned_deletes(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2"):
        s3.put_object(Bucket=bucket_name, Key="a", Body=body)
    s3.put_object(Bucket=bucket_name, Key="b", Body=b"b")
    a2, a1 = t.version_ids(bucket_name, "a")
    got = s3.delete_objects(
        Bucket=bucket_name,
        Delete={
            "Objects": [
                {"Key": "a", "VersionId": a1},  # permanent delete of a noncurrent version
                {"Key": "b"},  # delete marker
                {"Key": "a", "VersionId": "not-a-version-id"},
            ]
        },
    )
    deleted = {(d["Key"], d.get("VersionId")): d for d in got["Deleted"]}
    assert deleted[("a", a1)].get("DeleteMarker") is None
    marker = deleted[("b", None)]
    assert marker["DeleteMarker"] is True and marker["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in got["Errors"]] == [("a", "InvalidArgument")]
    assert t.version_ids(bucket_name, "a") == [a2]
    assert t.version_ids(bucket_name, "b")[0] == marker["DeleteMarkerVersionId"]
    assert keys_of(s3, bucket_name) == ["a"]
    # Removing the marker by version id: reported as a delete marker.
    back = s3.delete_objects(
        Bucket=bucket_name,
        Delete={"Objects": [{"Key": "b", "VersionId": marker["DeleteMarkerVersionId"]}]},
    )
    (entry,) = back["Deleted"]
    assert entry["DeleteMarker"] is True
    assert entry["VersionId"] == entry["DeleteMarkerVersionId"] == marker["DeleteMarkerVersionId"]
    assert keys_of(s3, bucket_name) == ["a", "b"]
    # Suspended: the marker is the null version.
    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Suspended"})
    got = s3.delete_objects(Bucket=bucket_name, Delete={"Objects": [{"Key": "a"}]})
    assert got["Deleted"][0]["DeleteMarkerVersionId"] == "null"


def test_integrity_header_required(t: Tenant, bucket_name: str) -> None:
    t.s3.create_bucket(Bucket=bucket_name)
    t.s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    status, root = post_delete(t, bucket_name, body, md5=False)
    assert (status, code_of(root)) == (400, "InvalidRequest")
    assert "Content-MD5" in (root.findtext("Message") or "")
    assert keys_of(t.s3, bucket_name) == ["k"]
    wrong = {"Content-MD5": base64.b64encode(b"0" * 16).decode()}
    response = t.raw("POST", f"/{bucket_name}?delete=", body=body, headers=wrong)
    assert response.status_code == 400 and b"BadDigest" in response.content
    assert keys_of(t.s3, bucket_name) == ["k"]
    crc = {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    response = t.raw("POST", f"/{bucket_name}?delete=", body=body, headers=crc)
    assert response.status_code == 200, response.text
    assert keys_of(t.s3, bucket_name) == []


def test_limits_and_hostile_documents(t: Tenant, bucket_name: str) -> None:
    t.s3.create_bucket(Bucket=bucket_name)
    t.s3.put_object(Bucket=bucket_name, Key="k0", Body=b"x")

    def doc(n: int) -> bytes:
        return (
            "<Delete>"
            + "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(n))
            + "</Delete>"
        ).encode()

    for body in (
        doc(1001),
        doc(0),
        b"<Delete><Object><Key>k0</Key></Object>",
        b"<Delete><Quiet>perhaps</Quiet><Object><Key>k0</Key></Object></Delete>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<Delete><Object><Key>&lol3;</Key></Object></Delete>",
        b"<Delete>" + b"<Object><Key>" + b"k" * 1000 + b"</Key></Object>" * 2100 + b"</Delete>",
    ):
        status, root = post_delete(t, bucket_name, body)
        assert (status, code_of(root)) == (400, "MalformedXML"), body[:80]
    assert keys_of(t.s3, bucket_name) == ["k0"]
    # 1000 keys is the limit, and works; a key too long is that key's error only.
    status, root = post_delete(
        t,
        bucket_name,
        doc(1000).replace(b"<Key>k999</Key>", b"<Key>" + b"x" * 1025 + b"</Key>"),
    )
    assert status == 200
    deleted = root.findall(f"{NS}Deleted")
    errors = root.findall(f"{NS}Error")
    assert len(deleted) == 999 and len(errors) == 1
    assert errors[0].findtext(f"{NS}Code") == "KeyTooLongError"
    assert keys_of(t.s3, bucket_name) == []


def test_one_failing_key_does_not_fail_the_others(
    cluster: Federation, t: Tenant, bucket_name: str
) -> None:
    """A key whose delete fails inside PostgreSQL is that key's InternalError only: the others
    are deleted and the request is a 200, never a 500."""
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    poison = f"poison-{bucket_name}"
    for key in ("ok1", poison, "ok2"):
        s3.put_object(Bucket=bucket_name, Key=key, Body=b"x")
    function = f"bp_test_{bucket_name.replace('-', '_')}"
    cluster.sql(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN IF OLD.key = '{poison}' THEN RAISE EXCEPTION 'poisoned'; END IF;"
        " RETURN OLD; END $$"
    )
    try:
        cluster.sql(
            f"CREATE TRIGGER {function} BEFORE DELETE ON object_versions"
            f" FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        got = s3.delete_objects(
            Bucket=bucket_name,
            Delete={"Objects": [{"Key": "ok1"}, {"Key": poison}, {"Key": "ok2"}]},
        )
    finally:
        cluster.sql(f"DROP TRIGGER IF EXISTS {function} ON object_versions")
        cluster.sql(f"DROP FUNCTION IF EXISTS {function}()")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sorted(d["Key"] for d in got["Deleted"]) == ["ok1", "ok2"]
    assert [(e["Key"], e["Code"]) for e in got["Errors"]] == [(poison, "InternalError")]
    assert "poisoned" not in got["Errors"][0]["Message"]
    assert keys_of(s3, bucket_name) == [poison]

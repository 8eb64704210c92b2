"""Bucket versioning over HTTP with boto3: configuration, versions and delete markers, reads by
version id, permanent deletes, suspended versioning's null version, ListObjectVersions
pagination, and what the backends hold afterwards (garbage of removed versions collected)."""

from __future__ import annotations

import hashlib
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import BACKENDS, Federation
from tests.support.raw_s3 import Tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenant_m(cluster: Federation) -> Tenant:
    return Tenant.create(cluster)


@pytest.fixture
def t(tenant_m: Tenant) -> Tenant:
    return tenant_m


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def headers_of(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return dict(exc.value.response["ResponseMetadata"]["HTTPHeaders"])


def enable(s3: Any, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def md5(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324 - the S3 ETag


def all_versions(s3: Any, bucket: str, prefix: str = "") -> tuple[list[Any], list[Any]]:
    got = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    assert not got["IsTruncated"]
    return got.get("Versions", []), got.get("DeleteMarkers", [])


def locators_of(
    cluster: Federation, bucket: str, key: str, version_id: str
) -> list[tuple[str, str]]:
    """(backend name, locator) of one version (by its API id) of a key."""
    null = version_id == "null"
    rows = cluster.sql(
        "SELECT b.name AS backend, r.locator FROM replicas r"
        " JOIN object_versions v ON v.id = r.version_pk JOIN buckets k ON k.id = v.bucket_id"
        " JOIN backends b ON b.id = r.backend_id WHERE k.name = $1 AND v.key = $2"
        " AND ((v.null_version AND $3) OR (NOT v.null_version AND v.version_id = $4))",
        bucket,
        key,
        null,
        version_id,
    )
    return [(r["backend"], r["locator"]) for r in rows]


def on_backend(cluster: Federation, backend: str, locator: str) -> bool:
    index = [b[0] for b in BACKENDS].index(backend)
    listed = cluster.backend_s3(index).list_objects_v2(
        Bucket=cluster.backend_bucket(index), Prefix=locator
    )
    return any(o["Key"] == locator for o in listed.get("Contents", []))


def wait_collected(cluster: Federation, locators: list[tuple[str, str]]) -> None:
    assert locators
    cluster.wait_for(
        lambda: not any(on_backend(cluster, b, loc) for b, loc in locators),
        timeout_s=30,
        what="the removed version's backend objects to be deleted",
    )
    still = cluster.sql(
        "SELECT count(*) AS n FROM replicas WHERE locator = ANY($1::text[])",
        [loc for _, loc in locators],
    )
    assert still[0]["n"] == 0


# -- configuration -----------------------------------------------------------------------------
def test_versioning_configuration(cluster: Federation, t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    got = s3.get_bucket_versioning(Bucket=bucket_name)
    assert "Status" not in got
    enable(s3, bucket_name)
    assert s3.get_bucket_versioning(Bucket=bucket_name)["Status"] == "Enabled"
    enable(s3, bucket_name, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket_name)["Status"] == "Suspended"
    enable(s3, bucket_name)
    assert s3.get_bucket_versioning(Bucket=bucket_name)["Status"] == "Enabled"
    audit = cluster.sql(
        "SELECT result FROM audit_log WHERE action = 'PutBucketVersioning' AND resource = $1"
        " ORDER BY seq",
        bucket_name,
    )
    assert [a["result"] for a in audit] == [
        "ok Unversioned -> Enabled",
        "ok Enabled -> Suspended",
        "ok Suspended -> Enabled",
    ]

    def put(body: bytes) -> tuple[int, str]:
        response = t.raw("PUT", f"/{bucket_name}?versioning=", body=body)
        code = ET.fromstring(response.content).findtext("Code") if response.content else ""
        return response.status_code, code or ""

    assert put(b"<VersioningConfiguration><Status>Unversioned</Status>") == (400, "MalformedXML")
    assert put(
        b"<VersioningConfiguration><Status>Unversioned</Status></VersioningConfiguration>"
    ) == (400, "MalformedXML")
    assert put(b"") == (400, "MalformedXML")
    assert put(
        b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete>"
        b"</VersioningConfiguration>"
    ) == (501, "NotImplemented")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "Enabled">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b"<VersioningConfiguration><Status>&c;</Status></VersioningConfiguration>"
    )
    assert put(laughs) == (400, "MalformedXML")
    assert (
        put(b"<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>")[0]
        == 200
    )
    assert s3.get_bucket_versioning(Bucket=bucket_name)["Status"] == "Suspended"


# -- versions ----------------------------------------------------------------------------------
def test_versions_newest_first_and_reads_by_version(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    bodies = [b"first", b"second!", b"third..."]
    put_ids = [
        s3.put_object(Bucket=bucket_name, Key="k", Body=body)["VersionId"] for body in bodies
    ]
    versions, markers = all_versions(s3, bucket_name)
    assert markers == []
    assert [v["ETag"] for v in versions] == [md5(b) for b in reversed(bodies)]
    assert [v["IsLatest"] for v in versions] == [True, False, False]
    assert [v["Size"] for v in versions] == [len(b) for b in reversed(bodies)]
    assert all(v["StorageClass"] == "STANDARD" and v["Owner"]["ID"] for v in versions)
    ids = [v["VersionId"] for v in versions]
    assert len(set(ids)) == 3 and "null" not in ids
    assert ids == list(reversed(put_ids))
    for vid, body in zip(ids, reversed(bodies), strict=True):
        got = s3.get_object(Bucket=bucket_name, Key="k", VersionId=vid)
        assert got["Body"].read() == body
        assert got["VersionId"] == vid
        head = s3.head_object(Bucket=bucket_name, Key="k", VersionId=vid)
        assert head["VersionId"] == vid and head["ContentLength"] == len(body)
    latest = s3.get_object(Bucket=bucket_name, Key="k")
    assert latest["Body"].read() == bodies[-1] and latest["VersionId"] == ids[0]
    assert s3.head_object(Bucket=bucket_name, Key="k")["VersionId"] == ids[0]
    listed = s3.list_objects_v2(Bucket=bucket_name)["Contents"]
    assert [(o["Key"], o["ETag"]) for o in listed] == [("k", md5(bodies[-1]))]
    ranged = s3.get_object(Bucket=bucket_name, Key="k", VersionId=ids[2], Range="bytes=1-3")
    assert ranged["Body"].read() == b"irs" and ranged["VersionId"] == ids[2]


def test_unknown_and_malformed_version_ids(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    for vid in ("0" * 32, "not-a-version", "null"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket_name, Key="k", VersionId=vid)
        assert error_of(exc) == (404, "NoSuchVersion")
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=bucket_name, Key="k", VersionId=vid)
        assert error_of(exc)[0] == 404
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket_name, Key="k", VersionId="not-a-version")
    assert error_of(exc) == (400, "InvalidArgument")
    gone = s3.delete_object(Bucket=bucket_name, Key="k", VersionId="0" * 32)
    assert gone["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"x"
    # The id a null version has inside is never an API id.
    s3.create_bucket(Bucket=bucket_name + "-u")
    s3.put_object(Bucket=bucket_name + "-u", Key="k", Body=b"y")
    assert "VersionId" not in s3.get_object(Bucket=bucket_name + "-u", Key="k")
    assert (
        s3.get_object(Bucket=bucket_name + "-u", Key="k", VersionId="null")["Body"].read() == b"y"
    )


def test_delete_marker_lifecycle(cluster: Federation, t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"one")
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"two")
    v2, v1 = t.version_ids(bucket_name, "k")
    deleted = s3.delete_object(Bucket=bucket_name, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (v1, v2, "null")
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket_name, Key="k")
        assert error_of(exc)[0] == 404
        headers = headers_of(exc)
        assert headers["x-amz-delete-marker"] == "true"
        assert headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket_name, Key="k")
    assert error_of(exc) == (404, "NoSuchKey")
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket_name, Key="k", VersionId=marker)
        assert error_of(exc)[0] == 405
        assert headers_of(exc)["x-amz-delete-marker"] == "true"
    assert s3.get_object(Bucket=bucket_name, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0
    assert "Contents" not in s3.list_objects(Bucket=bucket_name)
    assert t.listing(bucket_name) == [
        ("k", marker, "DeleteMarker", True),
        ("k", v2, "Version", False),
        ("k", v1, "Version", False),
    ]
    # A second delete stacks a second marker (as S3 does).
    again = s3.delete_object(Bucket=bucket_name, Key="k")
    assert again["DeleteMarker"] is True and again["VersionId"] != marker
    # Removing the markers brings the object back.
    for vid in (again["VersionId"], marker):
        removed = s3.delete_object(Bucket=bucket_name, Key="k", VersionId=vid)
        assert removed["DeleteMarker"] is True and removed["VersionId"] == vid
    got = s3.get_object(Bucket=bucket_name, Key="k")
    assert got["Body"].read() == b"two" and got["VersionId"] == v2
    assert t.listing(bucket_name)[0] == ("k", v2, "Version", True)
    audit = cluster.sql(
        "SELECT result FROM audit_log WHERE action = 'DeleteObject' AND resource = $1 ORDER BY seq",
        f"{bucket_name}/k",
    )
    assert [a["result"].split(" version=")[0] for a in audit] == [
        "ok delete marker",
        "ok delete marker",
        "ok delete marker removed",
        "ok delete marker removed",
    ]
    # A delete marker on a key that never existed (S3 writes one too).
    ghost = s3.delete_object(Bucket=bucket_name, Key="never")
    assert ghost["DeleteMarker"] is True
    assert t.version_ids(bucket_name, "never") == [ghost["VersionId"]]


def test_permanent_delete_of_middle_and_latest(
    cluster: Federation, t: Tenant, bucket_name: str
) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    for body in (b"v1", b"v2", b"v3"):
        s3.put_object(Bucket=bucket_name, Key="k", Body=body)
    v3, v2, v1 = t.version_ids(bucket_name, "k")
    middle = locators_of(cluster, bucket_name, "k", v2)
    assert len(middle) == 3
    removed = s3.delete_object(Bucket=bucket_name, Key="k", VersionId=v2)
    assert removed["VersionId"] == v2 and "DeleteMarker" not in removed
    assert t.version_ids(bucket_name, "k") == [v3, v1]
    wait_collected(cluster, middle)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket_name, Key="k", VersionId=v2)
    assert error_of(exc) == (404, "NoSuchVersion")
    # The latest removed: the next newest becomes the latest, for reads and listings.
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"v3"  # cached
    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=v3)
    assert t.listing(bucket_name) == [("k", v1, "Version", True)]
    got = s3.get_object(Bucket=bucket_name, Key="k")
    assert got["Body"].read() == b"v1" and got["VersionId"] == v1
    assert [o["ETag"] for o in s3.list_objects_v2(Bucket=bucket_name)["Contents"]] == [md5(b"v1")]
    # Deleting the same version again is a no-op success.
    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=v3)
    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=v1)
    assert t.listing(bucket_name) == []
    s3.delete_bucket(Bucket=bucket_name)


def test_suspended_versioning_replaces_the_null_version(
    cluster: Federation, t: Tenant, bucket_name: str
) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"n0")  # unversioned: the null version
    enable(s3, bucket_name)
    assert s3.get_object(Bucket=bucket_name, Key="k")["VersionId"] == "null"
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"v1")
    v1 = t.version_ids(bucket_name, "k")[0]
    assert t.version_ids(bucket_name, "k") == [v1, "null"]
    assert s3.get_object(Bucket=bucket_name, Key="k", VersionId="null")["Body"].read() == b"n0"
    n0 = locators_of(cluster, bucket_name, "k", "null")

    enable(s3, bucket_name, "Suspended")
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"n1")
    assert t.listing(bucket_name) == [
        ("k", "null", "Version", True),
        ("k", v1, "Version", False),
    ]
    got = s3.get_object(Bucket=bucket_name, Key="k")
    assert got["Body"].read() == b"n1" and got["VersionId"] == "null"
    wait_collected(cluster, n0)
    n1 = locators_of(cluster, bucket_name, "k", "null")

    deleted = s3.delete_object(Bucket=bucket_name, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    assert t.listing(bucket_name) == [
        ("k", "null", "DeleteMarker", True),
        ("k", v1, "Version", False),
    ]
    wait_collected(cluster, n1)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket_name, Key="k")
    assert error_of(exc) == (404, "NoSuchKey")
    assert headers_of(exc)["x-amz-version-id"] == "null"
    removed = s3.delete_object(Bucket=bucket_name, Key="k", VersionId="null")
    assert removed["DeleteMarker"] is True and removed["VersionId"] == "null"
    got = s3.get_object(Bucket=bucket_name, Key="k")
    assert got["Body"].read() == b"v1" and got["VersionId"] == v1
    # Suspended with a noncurrent null version: a new null version replaces it too.
    s3.put_object(Bucket=bucket_name, Key="j", Body=b"j-null")
    enable(s3, bucket_name)
    s3.put_object(Bucket=bucket_name, Key="j", Body=b"j-v")
    enable(s3, bucket_name, "Suspended")
    s3.delete_object(Bucket=bucket_name, Key="j")
    kinds = [(vid, kind) for k, vid, kind, _ in t.listing(bucket_name) if k == "j"]
    assert kinds[0] == ("null", "DeleteMarker") and len(kinds) == 2 and kinds[1][1] == "Version"


def test_delete_bucket_with_versions_or_markers_left(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    (v1,) = t.version_ids(bucket_name, "k")
    marker = s3.delete_object(Bucket=bucket_name, Key="k")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket_name)
    assert error_of(exc) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=v1)
    assert t.listing(bucket_name) == [("k", marker, "DeleteMarker", True)]
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket_name)
    assert error_of(exc) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=marker)
    s3.delete_bucket(Bucket=bucket_name)


# -- ListObjectVersions ---------------------------------------------------------------------
def test_list_versions_pagination_prefixes_and_encoding(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    s3.put_object(Bucket=bucket_name, Key="a", Body=b"null one")  # a null version first
    enable(s3, bucket_name)
    keys = ["a", "b c&d", "dir/x", "dir/y", "e"]
    for round_ in range(4):
        for key in keys:
            s3.put_object(Bucket=bucket_name, Key=key, Body=f"{key}-{round_}".encode())
    s3.delete_object(Bucket=bucket_name, Key="b c&d")
    full = t.listing(bucket_name)
    assert len(full) == 1 + 4 * len(keys) + 1
    assert [k for k, *_ in full] == sorted(k for k, *_ in full)  # byte order, grouped by key
    for key in keys:
        mine = [(vid, latest) for k, vid, _, latest in full if k == key]
        assert [latest for _, latest in mine] == [True] + [False] * (len(mine) - 1)
    assert [vid for k, vid, *_ in full if k == "a"][-1] == "null"
    assert full[len([f for f in full if f[0] == "a"])][2] == "DeleteMarker"

    expected = [(k, vid) for k, vid, *_ in full]
    for page_size in (1, 3, 4, 7):
        seen: list[tuple[str, str]] = []
        marker: dict[str, str] = {}
        for _ in range(100):
            page = s3.list_object_versions(Bucket=bucket_name, MaxKeys=page_size, **marker)
            entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
            assert len(entries) <= page_size
            # Within one page boto3 splits versions and markers; order them back by the full
            # listing (keys sorted, newest first within a key).
            seen += sorted(((e["Key"], e["VersionId"]) for e in entries), key=expected.index)
            if not page["IsTruncated"]:
                break
            marker = {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page["NextVersionIdMarker"],
            }
        else:
            raise AssertionError("pagination did not end")
        assert seen == expected, page_size

    # Delimiter: dir/ is one common prefix (counted once), and it resumes past it.
    seen_keys: list[str] = []
    prefixes: list[str] = []
    marker = {}
    for _ in range(100):
        page = s3.list_object_versions(Bucket=bucket_name, Delimiter="/", MaxKeys=2, **marker)
        seen_keys += [e["Key"] for e in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        marker = {"KeyMarker": page["NextKeyMarker"]}
        if "NextVersionIdMarker" in page:
            marker["VersionIdMarker"] = page["NextVersionIdMarker"]
    else:
        raise AssertionError("pagination did not end")
    assert prefixes == ["dir/"]
    assert sorted(set(seen_keys)) == ["a", "b c&d", "e"]
    assert len(seen_keys) == len([f for f in full if not f[0].startswith("dir/")])

    only_dir = s3.list_object_versions(Bucket=bucket_name, Prefix="dir/")
    assert {v["Key"] for v in only_dir["Versions"]} == {"dir/x", "dir/y"}
    after_b = s3.list_object_versions(Bucket=bucket_name, KeyMarker="b c&d")
    assert min(v["Key"] for v in after_b["Versions"]) == "dir/x"
    # boto3 asks for encoding-type=url and decodes: the odd key comes back intact.
    assert "b c&d" in {
        m["Key"] for m in s3.list_object_versions(Bucket=bucket_name)["DeleteMarkers"]
    }

    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=bucket_name, VersionIdMarker="null")
    assert error_of(exc) == (400, "InvalidArgument")
    # Issue 17: a well-formed version-id marker naming no version (deleted meanwhile) is a
    # position, as in S3: "0" * 32 sorts below every version of "a", so the listing goes on
    # after "a" (an ill-formed id is still InvalidArgument).
    after_a = s3.list_object_versions(Bucket=bucket_name, KeyMarker="a", VersionIdMarker="0" * 32)
    assert min(v["Key"] for v in after_a["Versions"]) > "a"
    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=bucket_name, KeyMarker="a", VersionIdMarker="xyz")
    assert error_of(exc) == (400, "InvalidArgument")
    # ListObjects sees one current object per key, and not the key whose latest is a marker.
    current = s3.list_objects_v2(Bucket=bucket_name)["Contents"]
    assert [o["Key"] for o in current] == ["a", "dir/x", "dir/y", "e"]


def test_delete_bucket_aborts_uploads_in_progress(
    cluster: Federation, t: Tenant, bucket_name: str
) -> None:
    """As in S3, multipart uploads in progress do not keep a bucket alive: they are aborted
    with it and their parts' backend objects collected."""
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    upload = s3.create_multipart_upload(Bucket=bucket_name, Key="big")
    s3.upload_part(
        Bucket=bucket_name, Key="big", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 1000
    )
    pieces = cluster.sql(
        "SELECT b.name AS backend, p.locator FROM upload_pieces p"
        " JOIN uploads u ON u.id = p.upload_pk JOIN buckets k ON k.id = u.bucket_id"
        " JOIN backends b ON b.id = p.backend_id WHERE k.name = $1",
        bucket_name,
    )
    assert pieces
    s3.delete_bucket(Bucket=bucket_name)
    assert cluster.sql("SELECT 1 FROM uploads WHERE upload_id = $1", upload["UploadId"]) == []
    locators = [(p["backend"], p["locator"]) for p in pieces]
    # Nothing leaks: each piece is queued as garbage (the vacuumer deletes it; the gateway's
    # DeleteBucket does not spawn a collection) or already gone from its backend.
    garbage = cluster.sql(
        "SELECT locator FROM garbage WHERE locator = ANY($1::text[])", [loc for _, loc in locators]
    )
    queued = {g["locator"] for g in garbage}
    assert all(loc in queued or not on_backend(cluster, b, loc) for b, loc in locators)


def test_concurrent_puts_and_deletes_keep_one_latest(
    cluster: Federation, t: Tenant, bucket_name: str
) -> None:
    """Racing PUTs, deletes (markers) and permanent deletes of one key: afterwards the key has
    exactly one latest version, the newest row, and reads agree with the listing."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    enable(s3, bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"seed")

    def worker(seed: int) -> int:
        rng = random.Random(seed)
        done = 0
        for i in range(15):
            action = rng.choice(("put", "put", "delete", "delete_version"))
            if action == "put":
                s3.put_object(Bucket=bucket_name, Key="k", Body=f"{seed}-{i}".encode())
            elif action == "delete":
                s3.delete_object(Bucket=bucket_name, Key="k")
            else:
                listed = s3.list_object_versions(Bucket=bucket_name, Prefix="k")
                entries = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
                if entries:
                    victim = rng.choice(entries)["VersionId"]
                    s3.delete_object(Bucket=bucket_name, Key="k", VersionId=victim)
            done += 1
        return done

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(worker, range(4))) == 60
    rows = cluster.sql(
        "SELECT v.id, v.is_latest, v.is_delete_marker, v.null_version FROM object_versions v"
        " JOIN buckets b ON b.id = v.bucket_id WHERE b.name = $1 ORDER BY v.id DESC",
        bucket_name,
    )
    if rows:
        assert [r["is_latest"] for r in rows] == [True] + [False] * (len(rows) - 1)
    listing = t.listing(bucket_name)
    assert len(listing) == len(rows)
    if listing and listing[0][2] == "Version":
        got = s3.get_object(Bucket=bucket_name, Key="k")
        assert got["VersionId"] == listing[0][1]
    elif listing:
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket_name, Key="k")
        assert headers_of(exc)["x-amz-version-id"] == listing[0][1]


@pytest.mark.parametrize("status", ["Unversioned", "Enabled", "Suspended"])
def test_latest_slot_under_contention(
    cluster: Federation, t: Tenant, bucket_name: str, status: str
) -> None:
    """Many writers on one key at once (commits, delete markers, removals of the latest and of
    other versions), straight on the repository: none fails for losing the race for the
    latest slot, and the newest row is always the one latest row."""
    import asyncio
    import random
    import secrets
    import time

    from schema.db import Database
    from schema.records import NewVersion
    from schema.versions import VersionRepository

    t.s3.create_bucket(Bucket=bucket_name)
    if status != "Unversioned":
        enable(t.s3, bucket_name, status)
    (row,) = cluster.sql("SELECT id, tenant_id FROM buckets WHERE name = $1", bucket_name)
    bucket_id, tenant_id = row["id"], row["tenant_id"]
    repo = VersionRepository()
    failures: list[str] = []

    def new_id() -> str:
        return f"{time.time_ns():016x}{secrets.token_hex(8)}"

    async def writer(db: Database, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            action = rng.choice(("put", "put", "delete", "delete_version"))
            try:
                async with db.transaction() as conn:
                    if action == "put":
                        new = NewVersion(
                            tenant_id, bucket_id, "k", new_id(), 1, "e", b"\0" * 32, None, {},
                            "StandardClass", 1, 1, False,
                        )  # fmt: skip
                        await repo.commit_version(conn, new, [])
                    elif action == "delete":
                        await repo.delete_current(
                            conn, tenant_id, bucket_id, "k", marker_version_id=new_id()
                        )
                    else:
                        rows = await conn.fetch(
                            "SELECT version_id, null_version FROM object_versions"
                            " WHERE bucket_id = $1",
                            bucket_id,
                        )
                        if rows:
                            victim = rng.choice(rows)
                            await repo.delete_version(
                                conn,
                                tenant_id,
                                bucket_id,
                                "k",
                                "null" if victim["null_version"] else victim["version_id"],
                            )
            except Exception as exc:
                failures.append(f"{action}: {exc!r}")

    async def run() -> list[Any]:
        db = await Database.connect(cluster.settings.database_url, max_size=10)
        try:
            await asyncio.gather(*(writer(db, seed) for seed in range(10)))
            async with db.connection() as conn:
                return list(
                    await conn.fetch(
                        "SELECT is_latest, null_version FROM object_versions"
                        " WHERE bucket_id = $1 ORDER BY id DESC",
                        bucket_id,
                    )
                )
        finally:
            await db.close()

    rows = asyncio.run(run())
    assert failures == []
    if rows:
        assert [r["is_latest"] for r in rows] == [True] + [False] * (len(rows) - 1)
    assert sum(r["null_version"] for r in rows) <= 1
    if status == "Unversioned":
        assert len(rows) <= 1

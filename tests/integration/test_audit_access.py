"""Every S3 access is audited, and a tenant reads its own log (gateway on the shared federation):
a GET is in the log with the bytes it sent and its request id; HEAD, LIST and refused requests
are there too; ``GET /?bp-audit`` pages and filters, and tenant A never sees tenant B's
entries; admins read all through ``/admin/audit/entries``; the chains still verify."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.cluster import Federation
from tests.support.raw_s3 import Tenant

pytestmark = pytest.mark.integration


def wait_for(cluster: Federation, query: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``query`` once there are some (a streamed GET is logged when it ends)."""
    deadline = time.monotonic() + 10
    while True:
        rows = cluster.sql(query, *args)
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def own_log(tenant: Tenant, query: str = "") -> dict[str, Any]:
    response = tenant.raw("GET", f"/?bp-audit{query}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_reads_are_audited_with_bytes_and_request_id(cluster: Federation) -> None:
    t = Tenant.create(cluster)
    t.s3.create_bucket(Bucket="reads")
    body = b"x" * 12345
    t.s3.put_object(Bucket="reads", Key="doc", Body=body)
    got = t.s3.get_object(Bucket="reads", Key="doc")
    assert got["Body"].read() == body
    request_id = got["ResponseMetadata"]["RequestId"]
    rows = wait_for(
        cluster,
        "SELECT * FROM audit_log WHERE action = 'GetObject' AND request_id = $1",
        request_id,
    )
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["resource"], row["bytes"], row["result"], row["actor"]) == (
        "reads/doc",
        len(body),
        "ok 200",
        t.key,
    )
    assert row["chain_id"] == f"tenant:{row['tenant_id']}"
    put = cluster.sql(
        "SELECT bytes FROM audit_log WHERE action = 'PutObject' AND actor = $1", t.key
    )
    assert [r["bytes"] for r in put] == [len(body)]
    t.s3.head_object(Bucket="reads", Key="doc")
    t.s3.list_objects_v2(Bucket="reads")
    with pytest.raises(Exception, match="NoSuchKey"):
        t.s3.get_object(Bucket="reads", Key="missing")
    with pytest.raises(Exception, match="NoSuchBucket"):
        t.s3.list_objects_v2(Bucket="not-mine")
    seen = {
        (r["action"], r["resource"], r["result"])
        for r in wait_for(
            cluster,
            "SELECT * FROM audit_log WHERE actor = $1 AND action <> 'GetObject'"
            " AND result NOT LIKE 'ok version%' AND action <> 'CreateBucket'",
            t.key,
        )
    }
    assert {
        ("HeadObject", "reads/doc", "ok 200"),
        ("ListObjects", "reads", "ok 200"),
        ("GetObject", "reads/missing", "NoSuchKey 404"),
        ("ListObjects", "not-mine", "NoSuchBucket 404"),
    } <= seen | {
        (r["action"], r["resource"], r["result"])
        for r in cluster.sql("SELECT * FROM audit_log WHERE actor = $1", t.key)
    }


def test_a_tenant_reads_only_its_own_log_paged_and_filtered(cluster: Federation) -> None:
    a, b = Tenant.create(cluster), Tenant.create(cluster)
    for tenant, bucket in ((a, "log-a"), (b, "log-b")):
        tenant.s3.create_bucket(Bucket=bucket)
        tenant.s3.put_object(Bucket=bucket, Key="k", Body=b"abc")
        for _ in range(3):
            tenant.s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    wait_for(
        cluster,
        "SELECT 1 FROM audit_log WHERE actor = $1 AND action = 'GetObject' HAVING count(*) >= 3",
        b.key,
    )
    mine = own_log(a)
    assert mine["next_page_token"] is None
    actors = {e["actor"] for e in mine["entries"]}
    assert actors == {a.key}, actors
    assert not any("log-b" in e["resource"] for e in mine["entries"])
    assert {e["actor"] for e in own_log(b)["entries"]} == {b.key}
    # Filtered by action, then paged two at a time, the pages joining up without overlap.
    gets = own_log(a, "&action=GetObject")["entries"]
    assert [e["resource"] for e in gets] == ["log-a/k"] * 3
    assert all(e["bytes"] == 3 for e in gets)
    pages: list[dict[str, Any]] = []
    token = ""
    for _ in range(10):
        page = own_log(a, f"&action=GetObject&max-entries=2{token}")
        pages += page["entries"]
        if page["next_page_token"] is None:
            break
        token = f"&page-token={page['next_page_token']}"
    assert [e["id"] for e in pages] == [e["id"] for e in gets]
    later = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z"))
    assert own_log(a, f"&since={later}")["entries"] == []
    earlier = quote((datetime.now(UTC) - timedelta(hours=1)).isoformat(), safe="")
    assert len(own_log(a, f"&since={earlier}&until={later}&action=GetObject")["entries"]) == 3
    for bad in ("&since=yesterday", "&max-entries=0", "&page-token=-1", "&action=Get%20Object"):
        response = a.raw("GET", f"/?bp-audit{bad}")
        assert response.status_code == 400 and "InvalidArgument" in response.text, bad
    # Admins read every tenant's entries, or one tenant's.
    name = cluster.sql("SELECT t.name FROM access_keys k JOIN tenants t ON t.id = k.tenant_id"
                       " WHERE k.access_key_id = $1", b.key)[0]["name"]  # fmt: skip
    seen = cluster.admin("GET", f"/admin/audit/entries?tenant={name}&action=GetObject").json()
    assert {e["actor"] for e in seen["entries"]} == {b.key} and len(seen["entries"]) == 3
    verdict = cluster.admin("GET", "/admin/audit/verify").json()
    assert verdict["ok"], verdict

"""Several gateway replicas, one truth: each replica caches identities, buckets and object
versions in Redis, and a change made through one replica is what the other serves at once.

Requests are spread over the tier's two replicas by Serve; which replica answered each is
read back from the replicas' own JSON log lines (the request id is ``x-amz-request-id``), so
the test proves both replicas served reads of a key another replica had just overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

ROUNDS = 24


def _replica_of(request_ids: set[str]) -> dict[str, str]:
    """request id -> the Serve replica log file that logged it."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"
    found: dict[str, str] = {}
    for path in logs.glob("replica_*gateway*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                rid = json.loads(line).get("request_id")
            except ValueError:
                continue
            if rid in request_ids:
                found[rid] = path.name
    return found


def test_a_write_through_one_replica_is_read_through_the_other_at_once(fed: Federation) -> None:
    name, key_id, secret = fed.create_tenant(allow_plaintext=True)
    s3: Any = fed.s3(key_id, secret)
    s3.create_bucket(Bucket="coherent")
    read_ids: set[str] = set()
    for round_ in range(ROUNDS):
        body = f"round {round_} {os.urandom(8).hex()}".encode()
        s3.put_object(Bucket="coherent", Key="hot", Body=body)
        for _ in range(2):  # both replicas have the previous version cached by now
            got = s3.get_object(Bucket="coherent", Key="hot")
            assert got["Body"].read() == body, f"stale read in round {round_}"
            read_ids.add(got["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"])
    s3.delete_object(Bucket="coherent", Key="hot")
    for _ in range(6):
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket="coherent", Key="hot")
        assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    fed.wait_for(
        lambda: len(set(_replica_of(read_ids).values())) == 2,
        30,
        "reads answered by both replicas in their logs",
    )


def test_a_key_disabled_through_one_replica_is_refused_by_every_replica(fed: Federation) -> None:
    name, key_id, secret = fed.create_tenant(allow_plaintext=True)
    s3: Any = fed.s3(key_id, secret)
    for _ in range(8):  # cached on both replicas
        s3.list_buckets()
    assert fed.admin("POST", f"/admin/tenants/{name}/keys/{key_id}/disable").status_code == 200
    refused = set()
    for _ in range(12):
        with pytest.raises(ClientError) as caught:
            s3.list_buckets()
        refused.add(caught.value.response["Error"]["Code"])
        refused.add(caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"])
    assert "InvalidAccessKeyId" in refused
    ids = {r for r in refused if r != "InvalidAccessKeyId"}
    fed.wait_for(
        lambda: len(set(_replica_of(ids).values())) == 2,
        30,
        "refusals answered by both replicas in their logs",
    )

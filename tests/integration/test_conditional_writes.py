"""Conditional writes on PutObject: If-None-Match: * and If-Match, checked under the key's
row lock at commit, so racing conditional creates cannot both win."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


@pytest.fixture
def s3(cluster: Federation, bucket_name: str) -> Any:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    client = cluster.s3(key, secret, max_pool_connections=16)
    client.create_bucket(Bucket=bucket_name)
    return client


def test_racing_conditional_creates_exactly_one_wins(s3: Any, bucket_name: str) -> None:
    bodies = [os.urandom(64 * 1024 + i) for i in range(8)]

    for round_ in range(3):
        key = f"once-{round_}"

        def create_key(body: bytes, key: str = key) -> tuple[bytes, Any]:
            try:
                s3.put_object(Bucket=bucket_name, Key=key, Body=body, IfNoneMatch="*")
            except ClientError as exc:
                return body, _code(exc)
            return body, 200

        with ThreadPoolExecutor(len(bodies)) as pool:
            outcomes = list(pool.map(create_key, bodies))
        winners = [body for body, result in outcomes if result == 200]
        losers = [result for _, result in outcomes if result != 200]
        assert len(winners) == 1, outcomes
        assert set(losers) == {(412, "PreconditionFailed")}
        assert s3.get_object(Bucket=bucket_name, Key=key)["Body"].read() == winners[0]
    with pytest.raises(ClientError) as late:
        s3.put_object(Bucket=bucket_name, Key="once-0", Body=b"late", IfNoneMatch="*")
    assert _code(late.value) == (412, "PreconditionFailed")


def test_if_match_on_put(s3: Any, bucket_name: str) -> None:
    with pytest.raises(ClientError) as missing:
        s3.put_object(Bucket=bucket_name, Key="k", Body=b"x", IfMatch='"abc"')
    assert _code(missing.value) == (404, "NoSuchKey")
    etag = s3.put_object(Bucket=bucket_name, Key="k", Body=b"one")["ETag"]
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket_name, Key="k", Body=b"two", IfMatch='"0123"')
    assert _code(stale.value) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"two", IfMatch=etag)
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"two"
    # A delete marker is no object: If-None-Match: * may create over it.
    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    s3.delete_object(Bucket=bucket_name, Key="k")
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"three", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket_name, Key="k")["Body"].read() == b"three"

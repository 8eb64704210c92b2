"""The backend client's read (``SignedGet``: SigV4 by botocore's signer over a urllib3 pool)
against a real moto server process: the bytes round trip, and every failure leaves as our
domain error with the reason the registry and the operator see, as boto3's path gives."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from actors.backend_client import S3BackendClient, new_locator
from core.errors import BackendNotFound, BackendUnavailable
from tests.support.processes import MotoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client(moto: MotoServer, *, timeout_s: float = 30.0, bucket: str = "reads") -> S3BackendClient:
    made = S3BackendClient(
        endpoint=moto.endpoint,
        bucket=bucket,
        access_key="testing",
        secret_key="testing",
        timeout_s=timeout_s,
        create_bucket=True,
    )
    made.ensure_ready()
    return made


def test_signed_get_returns_the_stored_bytes(moto: MotoServer) -> None:
    backend = client(moto)
    assert backend._reader is not None  # the direct path is the one under test
    for size in (0, 1, 4096, 3 * 1024 * 1024 + 17):
        locator, data = new_locator(), os.urandom(size)
        backend.put(locator, data)
        assert backend.get(locator) == data


def test_a_missing_object_is_not_found(moto: MotoServer) -> None:
    with pytest.raises(BackendNotFound):
        client(moto).get(new_locator())


def test_a_missing_bucket_is_unavailable_with_its_reason(moto: MotoServer) -> None:
    backend = client(moto, bucket="will-vanish")
    backend._s3.delete_bucket(Bucket="will-vanish")
    with pytest.raises(BackendUnavailable) as exc:
        backend.get(new_locator())
    assert exc.value.reason == "bucket-missing"


def test_an_unreachable_or_frozen_backend_is_unavailable(moto: MotoServer) -> None:
    backend = client(moto, timeout_s=1.0)
    locator = new_locator()
    backend.put(locator, b"x")
    moto.freeze()
    try:
        with pytest.raises(BackendUnavailable) as exc:
            backend.get(locator)
        assert exc.value.reason == "timeout"
    finally:
        moto.thaw()
    moto.stop()
    with pytest.raises(BackendUnavailable) as exc:
        backend.get(locator)
    assert exc.value.reason == "unreachable"


def test_with_a_proxy_configured_reads_use_boto3(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    proxied = S3BackendClient(
        endpoint=moto.endpoint, bucket="reads", access_key="k", secret_key="s"
    )
    assert proxied._reader is None

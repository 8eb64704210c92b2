"""Request admission end to end (issue 14) on a federation of its own with two gateway
replicas and deliberately low limits (``LOW``): the replay cache and the token buckets are
shared by both replicas through Redis, a tenant over its request or byte rate gets 503
``SlowDown`` with ``Retry-After``, a tenant over its open multipart uploads gets 503
``SlowDown``, and a body trickled in slower than the minimum rate is cut with 400
``RequestTimeout`` while other clients keep being served.

Every test uses its own tenant: the limits are per tenant.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.cluster import Federation, start_cluster
from tests.support.raw_s3 import signed_request

pytestmark = pytest.mark.integration

LOW = {
    "BP_GATEWAY_REPLICAS": "2",
    "BP_REPLAY_GRACE_S": "1",
    "BP_TENANT_REQUESTS_PER_S": "2",
    "BP_TENANT_BYTES_PER_S": str(64 * 1024),
    "BP_TENANT_BURST_S": "5",  # 10 requests, 320 KiB
    "BP_MAX_OPEN_UPLOADS": "3",
    "BP_BODY_IDLE_TIMEOUT_S": "2",
    "BP_BODY_MIN_RATE": "4096",
    "BP_BODY_RATE_GRACE_S": "2",
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with start_cluster(tmp_path_factory.mktemp("bp-limits"), overrides=LOW) as running:
        running.wait_backends_known()
        yield running


def _tenant(fed: Federation) -> tuple[str, str, Any]:
    _, key, secret = fed.create_tenant(allow_plaintext=True)
    return key, secret, fed.s3(key, secret)


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def test_replayed_put_is_refused_on_every_replica(fed: Federation) -> None:
    key, secret, s3 = _tenant(fed)
    s3.create_bucket(Bucket="replay")
    url = f"{fed.endpoint}/replay/doc"
    request = AWSRequest(method="PUT", url=url, data=b"first")
    request.headers["x-amz-content-sha256"] = hashlib.sha256(b"first").hexdigest()
    S3SigV4Auth(Credentials(key, secret), "s3", fed.settings.region).add_auth(request)
    prepared = request.prepare()
    import httpx

    def send() -> httpx.Response:
        return httpx.put(url, content=b"first", headers=dict(prepared.headers.items()), timeout=30)

    assert send().status_code == 200
    s3.put_object(Bucket="replay", Key="doc", Body=b"second")  # a newer write
    time.sleep(1.5)  # past the grace in which identical twins pass
    # Replayed six times: Serve spreads them over both replicas; every one is refused.
    for _ in range(6):
        again = send()
        assert again.status_code == 403, again.text
        assert b"<Code>AccessDenied</Code>" in again.content and b"replayed" in again.content
    assert s3.get_object(Bucket="replay", Key="doc")["Body"].read() == b"second"


def test_request_rate_answers_slowdown_with_retry_after(fed: Federation) -> None:
    key, secret, s3 = _tenant(fed)
    statuses = []
    for _ in range(40):  # burst 10, 2/s: the bucket empties well before 40
        response = signed_request(fed, key, secret, "GET", "/")
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert b"<Code>SlowDown</Code>" in response.content
            assert 1 <= int(response.headers["retry-after"]) <= 5
            break
    assert statuses[-1] == 503 and statuses.count(200) >= 8, statuses
    # Another tenant is not affected; this one is served again after waiting.
    other = _tenant(fed)[2]
    assert other.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    time.sleep(1.5)
    assert signed_request(fed, key, secret, "GET", "/").status_code == 200


def test_byte_rate_answers_slowdown_after_a_large_upload(fed: Federation) -> None:
    _, _, s3 = _tenant(fed)
    s3.create_bucket(Bucket="bytes")
    s3.put_object(Bucket="bytes", Key="big", Body=b"x" * (448 * 1024))  # 128 KiB into debt
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="bytes", Key="small", Body=b"y")
    assert _code(info.value) == (503, "SlowDown")
    retry = int(info.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"])
    assert 1 <= retry <= 4
    time.sleep(retry + 0.5)
    s3.put_object(Bucket="bytes", Key="small", Body=b"y")


def test_open_multipart_uploads_are_limited_per_tenant(fed: Federation) -> None:
    _, _, s3 = _tenant(fed)
    s3.create_bucket(Bucket="mpu")
    ids = [s3.create_multipart_upload(Bucket="mpu", Key=f"k{i}")["UploadId"] for i in range(3)]
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(Bucket="mpu", Key="k3")
    assert _code(info.value) == (503, "SlowDown")
    assert "multipart uploads open" in info.value.response["Error"]["Message"]
    # Another tenant has its own count; aborting one frees a slot.
    other = _tenant(fed)[2]
    other.create_bucket(Bucket="mpu2")
    other.create_multipart_upload(Bucket="mpu2", Key="k")
    s3.abort_multipart_upload(Bucket="mpu", Key="k0", UploadId=ids[0])
    s3.create_multipart_upload(Bucket="mpu", Key="k3")


def _trickle(fed: Federation, key: str, secret: str, body: bytes, out: dict[str, Any]) -> None:
    """PUT ``body`` over a raw socket, 16 bytes every 0.25 s (64 B/s), recording the answer."""
    url = f"{fed.endpoint}/slow/object"
    request = AWSRequest(method="PUT", url=url, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    request.headers["Content-Length"] = str(len(body))
    S3SigV4Auth(Credentials(key, secret), "s3", fed.settings.region).add_auth(request)
    parts = urlsplit(url)
    head = f"PUT {parts.path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request.headers.items()
    )
    if "host" not in {k.lower() for k in request.headers}:
        head += f"Host: {parts.netloc}\r\n"
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    started = time.monotonic()
    answer = b""
    try:
        sock.sendall((head + "\r\n").encode())
        for offset in range(0, len(body), 16):
            sock.sendall(body[offset : offset + 16])
            sock.settimeout(0.25)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                continue
            answer += got
            break
        sock.settimeout(10)
        while b"</Error>" not in answer:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    except OSError as exc:
        out["error"] = repr(exc)
    finally:
        out["seconds"] = time.monotonic() - started
        out["answer"] = answer
        sock.close()


def test_slow_body_is_cut_with_request_timeout_while_others_are_served(fed: Federation) -> None:
    key, secret, s3 = _tenant(fed)
    s3.create_bucket(Bucket="slow")
    other_key, other_secret, other = _tenant(fed)
    other.create_bucket(Bucket="fast")
    result: dict[str, Any] = {}
    slow = threading.Thread(target=_trickle, args=(fed, key, secret, b"z" * 4096, result))
    slow.start()
    served = []
    deadline = time.monotonic() + 20
    while slow.is_alive() and time.monotonic() < deadline:
        t0 = time.monotonic()
        other.put_object(Bucket="fast", Key=f"k{len(served)}", Body=b"ok")
        served.append(time.monotonic() - t0)
        time.sleep(0.4)
    slow.join(timeout=30)
    assert not slow.is_alive()
    answer = result["answer"]
    assert answer.startswith(b"HTTP/1.1 400"), result
    assert b"<Code>RequestTimeout</Code>" in answer
    # grace 2 s + what 64 B/s buys at 4096 B/s minimum: cut within a few seconds, not 64 s.
    assert result["seconds"] < 10, result
    assert served and max(served) < 5, served
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="slow", Key="object")
    assert _code(info.value)[0] == 404


def test_redis_down_fails_open_and_recovers(fed: Federation) -> None:
    """Last in the module: with Redis killed, requests are still served (admission fails
    open, the cache falls back to PostgreSQL); once it is back, replays are refused again."""
    key, secret, s3 = _tenant(fed)
    s3.create_bucket(Bucket="outage")
    fed.redis.kill()
    try:
        s3.put_object(Bucket="outage", Key="doc", Body=b"during the outage")
        assert s3.get_object(Bucket="outage", Key="doc")["Body"].read() == b"during the outage"
    finally:
        fed.redis.start()
    url = f"{fed.endpoint}/outage/after"
    request = AWSRequest(method="PUT", url=url, data=b"x")
    request.headers["x-amz-content-sha256"] = hashlib.sha256(b"x").hexdigest()
    S3SigV4Auth(Credentials(key, secret), "s3", fed.settings.region).add_auth(request)
    headers = dict(request.prepare().headers.items())
    import httpx

    deadline = time.monotonic() + 30  # the breakers close after 5 s
    while True:
        first = httpx.put(url, content=b"x", headers=headers, timeout=30)
        assert first.status_code in (200, 403), first.text
        time.sleep(1.5)
        again = httpx.put(url, content=b"x", headers=headers, timeout=30)
        if again.status_code == 403:
            assert b"replayed" in again.content
            break
        assert time.monotonic() < deadline, "replay cache never came back after Redis did"

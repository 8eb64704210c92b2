"""The two sides of every comparison and the loop that times them.

A *target* stores and returns blobs: ``GatewayTarget`` through the gateway (which writes three
copies and acknowledges at a quorum of two), ``DirectTarget`` straight to the same moto servers
with boto3 (three copies written in parallel, all three awaited; a GET reads one replica,
round-robin over the three servers so neither side gets a cache-friendlier single server).
Both sides use clients built by ``s3_client`` from one ``Config``, so client-side costs
(SigV4 payload hashing, CRC32 checksums, connection pooling) are the same on both.

``run_workload`` runs ``count`` operations on ``concurrency`` threads and times each one. Every
GET is read to the end in 1 MiB chunks and its SHA-256 and length compared with what was PUT:
a fast wrong answer counts as a *mismatch*, never as a success. Nothing here asserts on time.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config

__all__ = [
    "Blob",
    "DirectTarget",
    "Got",
    "GatewayTarget",
    "Target",
    "WorkloadResult",
    "make_blobs",
    "percentile",
    "run_workload",
    "s3_client",
]

READ_CHUNK = 1024 * 1024


def s3_client(
    endpoint: str,
    access_key: str,
    secret: str,
    region: str,
    pool: int,
    *,
    read_timeout: float = 120,
) -> Any:
    """A boto3 S3 client; the same settings for the gateway and for the direct baseline.

    No retries: a retried request would hide an error and blur the latency it measures.
    Checksum behaviour stays at boto3's default on both sides (a real client's view).
    ``read_timeout``: how long a response may take once the request is sent (a single PUT of
    hundreds of MiB is answered only when its last part is stored).
    """
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=pool,
            connect_timeout=10,
            read_timeout=read_timeout,
        ),
    )


@dataclass(frozen=True)
class Blob:
    key: str
    data: bytes
    sha256: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def make_blobs(prefix: str, count: int, size: int) -> list[Blob]:
    """``count`` distinct random bodies (distinct, so a GET that returns another object's
    bytes fails its hash check). Large ones share one random buffer with a unique head, which
    avoids generating hundreds of MiB of randomness per run."""
    blobs = []
    base = os.urandom(size) if size > 1024 * 1024 else b""
    for index in range(count):
        if base:
            buf = bytearray(base)
            buf[:32] = os.urandom(32)
            data = bytes(buf)
            del buf
        else:
            data = os.urandom(size)
        blobs.append(Blob(f"{prefix}/{index:05d}", data, hashlib.sha256(data).digest()))
    return blobs


class _TimedBody(io.BytesIO):
    """A request body that remembers when its last byte was read. botocore reads it once to
    hash it, rewinds, and http.client then reads it in blocks while sending, so the last read
    is when the end of the body went into the socket: if that is long before the response,
    the body is waiting in a queue on the other side (no backpressure)."""

    last_read = 0.0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data:
            self.last_read = time.perf_counter()
        return data


@dataclass(frozen=True)
class Got:
    """A GET read to the end: its size, its SHA-256, and when the response headers arrived."""

    length: int
    sha256: bytes
    headers_at: float


def _read_all(response: dict[str, Any], headers_at: float) -> Got:
    """Read a streaming body to the end in 1 MiB chunks, hashing as it comes."""
    body = response["Body"]
    digest = hashlib.sha256()
    total = 0
    try:
        for chunk in body.iter_chunks(READ_CHUNK):
            total += len(chunk)
            digest.update(chunk)
    finally:
        body.close()
    return Got(total, digest.digest(), headers_at)


class Target(Protocol):
    name: str

    def put(self, blob: Blob) -> float:
        """Store ``blob``; returns when the last byte of the body was handed to the socket."""
        ...

    def get(self, blob: Blob, index: int) -> Got: ...

    def delete(self, blob: Blob) -> None: ...


class GatewayTarget:
    """The gateway: one PUT, and the gateway fans the body out to three backends."""

    name = "gateway"

    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def put(self, blob: Blob) -> float:
        body = _TimedBody(blob.data)
        self._s3.put_object(Bucket=self.bucket, Key=blob.key, Body=body)
        return body.last_read

    def get(self, blob: Blob, index: int) -> Got:
        response = self._s3.get_object(Bucket=self.bucket, Key=blob.key)
        return _read_all(response, time.perf_counter())

    def delete(self, blob: Blob) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=blob.key)


class DirectTarget:
    """The baseline: the client itself writes all three copies in parallel and waits for all.

    Waiting for all three (not two) is the simplest correct client; it is what an application
    without a gateway would do to be sure of three copies.
    """

    name = "direct"

    def __init__(self, clients: Sequence[Any], bucket: str, pool: ThreadPoolExecutor) -> None:
        self._clients = list(clients)
        self.bucket = bucket
        self._pool = pool

    def _fan_out(self, call: Callable[[Any], Any]) -> list[Any]:
        futures = [self._pool.submit(call, client) for client in self._clients]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]

    def put(self, blob: Blob) -> float:
        def one(s3: Any) -> float:
            body = _TimedBody(blob.data)
            s3.put_object(Bucket=self.bucket, Key=blob.key, Body=body)
            return body.last_read

        return max(self._fan_out(one))

    def get(self, blob: Blob, index: int) -> Got:
        s3 = self._clients[index % len(self._clients)]
        response = s3.get_object(Bucket=self.bucket, Key=blob.key)
        return _read_all(response, time.perf_counter())

    def delete(self, blob: Blob) -> None:
        self._fan_out(lambda s3: s3.delete_object(Bucket=self.bucket, Key=blob.key))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class WorkloadResult:
    """Raw outcome of one side of one workload. MB is 10^6 bytes of *object* payload (a direct
    PUT that writes three copies still moves one object's worth)."""

    side: str
    op: str
    size: int
    concurrency: int
    planned: int
    wall_s: float = 0.0
    ok: int = 0
    errors: int = 0
    mismatches: int = 0
    truncated: bool = False
    latencies_s: list[float] = field(default_factory=list)
    # PUT: body handed to the socket; GET: response headers received (both from op start).
    milestone_s: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def ops_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.ok * self.size / self.wall_s / 1e6 if self.wall_s else 0.0

    def latency_ms(self, q: float) -> float | None:
        value = percentile(self.latencies_s, q)
        return None if value is None else value * 1000

    def to_dict(self) -> dict[str, Any]:
        def ms(q: float) -> float | None:
            value = self.latency_ms(q)
            return None if value is None else round(value, 2)

        return {
            "side": self.side,
            "op": self.op,
            "size": self.size,
            "concurrency": self.concurrency,
            "planned": self.planned,
            "ok": self.ok,
            "errors": self.errors,
            "mismatches": self.mismatches,
            "truncated": self.truncated,
            "wall_s": round(self.wall_s, 4),
            "ops_per_s": round(self.ops_per_s, 2),
            "mb_per_s": round(self.mb_per_s, 3),
            "latency_ms": {
                "p50": ms(50),
                "p90": ms(90),
                "p99": ms(99),
                "min": ms(0),
                "max": ms(100),
                "mean": round(sum(self.latencies_s) / len(self.latencies_s) * 1000, 2)
                if self.latencies_s
                else None,
            },
            "milestone": "body sent" if self.op == "put" else "headers received",
            "milestone_ms": {
                "p50": _ms(percentile(self.milestone_s, 50)),
                "p99": _ms(percentile(self.milestone_s, 99)),
            },
            "latencies_ms": [round(v * 1000, 3) for v in self.latencies_s],
            "error_samples": self.error_samples,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def run_workload(
    target: Target,
    op: str,
    blobs: Sequence[Blob],
    *,
    concurrency: int,
    deadline_s: float,
) -> WorkloadResult:
    """Run one PUT or GET per blob on ``concurrency`` threads; time each operation.

    The wall clock starts when every thread is ready (a barrier) and stops when the last
    operation ends. Past ``deadline_s`` no new operation starts and the result is marked
    ``truncated``: a slow gateway makes a short run, not a hung one.
    """
    if op not in ("put", "get"):
        raise ValueError(f"unknown op {op!r}")
    size = blobs[0].size if blobs else 0
    result = WorkloadResult(target.name, op, size, concurrency, planned=len(blobs))
    lock = threading.Lock()
    next_index = iter(range(len(blobs)))
    started: list[float] = []
    barrier = threading.Barrier(concurrency, action=lambda: started.append(time.perf_counter()))

    def take() -> int | None:
        with lock:
            if started and time.perf_counter() - started[0] > deadline_s:
                result.truncated = True
                return None
            return next(next_index, None)

    def record(latency: float, milestone: float, outcome: str | None, mismatch: bool) -> None:
        with lock:
            if mismatch:
                result.mismatches += 1
            elif outcome is not None:
                result.errors += 1
            else:
                result.ok += 1
                result.latencies_s.append(latency)
                result.milestone_s.append(milestone)
            if outcome is not None and len(result.error_samples) < 5:
                result.error_samples.append(outcome)

    def worker() -> None:
        barrier.wait()
        while (index := take()) is not None:
            blob = blobs[index]
            begin = time.perf_counter()
            at = begin
            try:
                if op == "put":
                    at = target.put(blob)
                    outcome, mismatch = None, False
                else:
                    got = target.get(blob, index)
                    at = got.headers_at
                    mismatch = got.length != blob.size or got.sha256 != blob.sha256
                    outcome = (
                        f"{blob.key}: got {got.length} bytes, wrong hash" if mismatch else None
                    )
            except Exception as exc:  # counted, never raised: one bad op must not end the run
                outcome, mismatch = f"{blob.key}: {type(exc).__name__}: {exc}"[:300], False
            record(time.perf_counter() - begin, max(0.0, at - begin), outcome, mismatch)

    threads = [threading.Thread(target=worker, name=f"bench-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - started[0] if started else 0.0
    return result

"""The onboarding probe: prove a backend works before anything is registered.

``probe_backend`` runs the steps in order and stops at the first that fails, raising
``ProbeFailed`` with the step's name, so the operator learns exactly what to fix:

=====================  ==========================================================
step                   fails when
=====================  ==========================================================
``unreachable``        nothing answers at the endpoint (refused, no route, timeout)
``tls``                the TLS handshake or the certificate check fails
``credentials``        the backend rejects the access key, signature or permission
``bucket-missing``     the bucket does not exist (it is created only when asked)
``write``              the probe object cannot be written
``read-after-write``   reading it back fails or returns other bytes
``delete-refused``     deleting it is refused, or it is still there afterwards
=====================  ==========================================================

The probe object has an opaque random name like every stored piece (invariant 2) and random
bytes; it is deleted before the probe returns. The report carries the RTT (the fastest of a
few bucket checks) and the throughput of the write and read back, the first health sample of
the backend.

It runs a client built for this probe only (blocking calls: run it in a thread); it never
sees the metadata store. Deliberately not here: validation of the declared fields
(``core/backend_definition.py``) and registration (``gateway/admin/backends.py``).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from actors.backend_client import LocalDirectoryClient, S3BackendClient, new_locator
from actors.node_roles import NODE_LABEL, pinned_to
from core.errors import BackendNotFound, BackendUnavailable

__all__ = [
    "PROBE_BYTES",
    "PROBE_STEPS",
    "ProbeFailed",
    "ProbeReport",
    "probe_backend",
    "probe_local_on_node",
]

#: The steps, in the order they run, by the name a failure reports.
PROBE_STEPS = (
    "unreachable",
    "tls",
    "credentials",
    "bucket-missing",
    "write",
    "read-after-write",
    "delete-refused",
)
#: Size of the probe object: big enough for a throughput figure, small enough for any link.
PROBE_BYTES = 1024 * 1024
_PINGS = 3


class ProbeFailed(Exception):
    """The backend failed ``step`` (one of ``PROBE_STEPS``); ``detail`` says how."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        self.detail = detail
        super().__init__(f"probe failed at step '{step}': {detail}")

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:  # crosses Ray task boundaries intact
        return (ProbeFailed, (self.step, self.detail))


@dataclass(frozen=True)
class ProbeReport:
    rtt_ms: float
    throughput_mbps: float
    bucket_created: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "rtt_ms": round(self.rtt_ms, 2),
            "throughput_mbps": round(self.throughput_mbps, 2),
            "bucket_created": self.bucket_created,
        }


def _connection_step(exc: BackendUnavailable) -> str:
    """The step a failure before any write belongs to."""
    if exc.reason in ("tls", "credentials", "bucket-missing"):
        return exc.reason
    return "unreachable"


def probe_backend(
    client: S3BackendClient | LocalDirectoryClient, *, create_bucket: bool
) -> ProbeReport:
    """Run the probe (see the module docstring); raises ``ProbeFailed``."""
    created = False
    rtts: list[float] = []
    if isinstance(client, LocalDirectoryClient):
        try:
            client.ensure_ready()  # a directory is made, like any local path
        except BackendUnavailable as exc:
            raise ProbeFailed("unreachable", str(exc)) from None
    for _ in range(_PINGS):
        start = time.perf_counter()
        try:
            client.ping()
        except BackendUnavailable as exc:
            step = _connection_step(exc)
            if step != "bucket-missing" or rtts or created:
                raise ProbeFailed(step, str(exc)) from None
            if not create_bucket:
                raise ProbeFailed(
                    step, f"{exc}; pass create_bucket=true (--create-bucket) to create it"
                ) from None
            _create(client)
            created = True
            continue
        rtts.append((time.perf_counter() - start) * 1000)
    locator = new_locator()
    data = os.urandom(PROBE_BYTES)
    start = time.perf_counter()
    try:
        client.put(locator, data)
    except BackendUnavailable as exc:
        step = "credentials" if exc.reason == "credentials" else "write"
        raise ProbeFailed(step, f"writing the probe object: {exc}") from None
    wrote = time.perf_counter() - start
    try:
        start = time.perf_counter()
        try:
            back = client.get(locator)
        except (BackendUnavailable, BackendNotFound) as exc:
            raise ProbeFailed("read-after-write", f"reading the probe object back: {exc}") from None
        read = time.perf_counter() - start
        if len(back) != len(data) or not hmac.compare_digest(back, data):
            raise ProbeFailed(
                "read-after-write",
                f"the backend returned {len(back)} bytes that differ from the {len(data)} written",
            )
    except ProbeFailed:
        with contextlib.suppress(ProbeFailed):  # best effort; the read is what failed
            _delete(client, locator)
        raise
    _delete(client, locator)
    seconds = max(wrote + read, 1e-6)
    return ProbeReport(
        rtt_ms=min(rtts) if rtts else 0.0,
        throughput_mbps=2 * len(data) * 8 / 1e6 / seconds,
        bucket_created=created,
    )


def _create(client: S3BackendClient | LocalDirectoryClient) -> None:
    try:
        if isinstance(client, S3BackendClient):
            client.create()
        else:
            client.ensure_ready()
    except BackendUnavailable as exc:
        step = "credentials" if exc.reason == "credentials" else "bucket-missing"
        raise ProbeFailed(step, f"creating the bucket: {exc}") from None


def _delete(client: S3BackendClient | LocalDirectoryClient, locator: str) -> None:
    try:
        client.delete(locator)
    except (BackendUnavailable, BackendNotFound) as exc:
        raise ProbeFailed("delete-refused", f"deleting the probe object: {exc}") from None
    try:
        still = client.head(locator)
    except BackendUnavailable as exc:
        raise ProbeFailed("delete-refused", f"checking the delete: {exc}") from None
    if still is not None:
        raise ProbeFailed("delete-refused", "the probe object is still there after its delete")


def _probe_local_directory(path: str) -> ProbeReport:
    return probe_backend(LocalDirectoryClient(path), create_bucket=False)


async def probe_local_on_node(node: str, path: str) -> ProbeReport:
    """Probe a local directory on the node labelled ``node`` (where its actor will be pinned),
    not on the node that asks: a path means something only on its own machine.

    ``ProbeFailed`` as from ``probe_backend``; ``ProbeFailed("unreachable")`` when no live
    node has that label (asked of Ray first: a task for a missing label would wait forever)."""
    import ray

    labelled = [
        n for n in ray.nodes() if n.get("Alive") and n.get("Labels", {}).get(NODE_LABEL) == node
    ]
    if not labelled:
        raise ProbeFailed("unreachable", f"no live Ray node is labelled {NODE_LABEL}={node}")
    task = ray.remote(_probe_local_directory).options(  # type: ignore[attr-defined]
        num_cpus=0, max_retries=0, **pinned_to(node)
    )
    try:
        return await task.remote(path)  # type: ignore[no-any-return]
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, ProbeFailed):
            raise cause from None
        raise ProbeFailed(
            "unreachable", f"probe on node {node} failed: {type(cause).__name__}"
        ) from None

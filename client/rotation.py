"""Key rotation without moving data: the engine behind ``bp rotate``.

For every object under a prefix that is wrapped under one of the ``--from`` keys, the client
reads the 112-byte BP1 header and the envelope (one ranged GET, never the body), checks the
header against ``tenant/bucket/key`` and the envelope's content id, unwraps the data key with
the old private key, passes the key commitment, wraps the same data key for the new public key
against the same header, and sends the new wrapped key to ``POST /{bucket}?rewrap`` in batches.
Each item carries the key id and version it replaces as a precondition, so the gateway refuses
(412) an object that someone else rotated or replaced after its header was read. Ciphertext is
never read beyond its header and never written: the backends see no request at all from a
rotation except the header reads the gateway serves.

Throughput: the gateway applies a 1,000-item batch in about a second, so the client must keep
up with ~1,000 header reads, unwraps and wraps a second. Header reads run on a pool of
``workers`` threads over one connection pool (:meth:`client.api.GatewayApi.read_header`,
cheaper than boto3 per call), and up to :data:`POSTS_IN_FLIGHT` batches are sent while the
next ones are prepared. Memory stays bounded: at most two batches of prepared items (a few
hundred bytes each) are held at a time, however many objects the prefix holds.

Outcomes are per object: *rotated*; *skipped* (already under the new key, under a key that is
not a ``--from`` key, not encrypted, deleted meanwhile); *failed* (precondition refused,
header unreadable, integrity or unwrap failure, a batch the gateway refused or whose answer was
lost). Running the same rotation again is always safe: rotated objects are then skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TextIO, TypeVar

from client.api import GatewayApi, RewrapItem
from client.envelope import WRAPPED_KEY, parse_envelope_headers
from client.errors import DecryptionFailed, InvalidEnvelope
from client.format import ObjectBinding
from client.recipient import PrivateKey, PublicKeyRef
from client.remote import GatewayUnavailable, ObjectNotFound, TransferError
from client.s3url import S3Url
from client.sharing import recover_data_key
from client.wrap import wrap

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_WORKERS",
    "MAX_BATCH",
    "MAX_WORKERS",
    "POSTS_IN_FLIGHT",
    "ObjectOutcome",
    "RotationPlan",
    "RotationProgress",
    "RotationSummary",
    "batched",
    "rotate",
]

#: The gateway's cap on one ``?rewrap`` batch.
MAX_BATCH = 1000
DEFAULT_BATCH = 500
DEFAULT_WORKERS = 8
MAX_WORKERS = 64
#: Batches sent concurrently: one being applied while the next is on the wire overlaps the
#: gateway's transaction with the client's header reads.
POSTS_IN_FLIGHT = 2

Outcome = Literal["rotated", "skipped", "failed"]
T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter, none is empty)."""
    if size < 1:
        raise ValueError("a batch holds at least one item")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class ObjectOutcome:
    """What happened to one object, and why if it was not rotated."""

    key: str
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """One rotation: in which bucket, from which private keys (by key id), to which public
    key. Which objects are looked at is the caller's listing (see :func:`rotate`)."""

    bucket: str
    tenant: str
    old_keys: Mapping[str, PrivateKey]
    new: PublicKeyRef
    batch_size: int = DEFAULT_BATCH
    workers: int = DEFAULT_WORKERS

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"the batch size must be 1..{MAX_BATCH} (the gateway's limit)")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"the number of workers must be 1..{MAX_WORKERS}")
        if not self.old_keys:
            raise ValueError("at least one key to rotate from is needed")


@dataclass
class RotationSummary:
    """Counts and elapsed time of one rotation (listing included)."""

    listed: int = 0
    rotated: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def done(self) -> int:
        return self.rotated + self.skipped + self.failed

    @property
    def rate(self) -> float:
        """Objects checked per second (rotated, skipped or failed: each cost a header read)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def count(self, outcome: Outcome) -> None:
        if outcome == "rotated":
            self.rotated += 1
        elif outcome == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
        self.tick()

    def tick(self) -> None:
        """Bring ``seconds`` (and so ``rate``) up to now."""
        self.seconds = time.monotonic() - self._started


class RotationProgress:
    """One redrawn line on a terminal: listed, rotated, skipped, failed, rate (throttled)."""

    _REDRAW_S = 0.2

    def __init__(self, label: str, stream: TextIO) -> None:
        self._label = label
        self._stream = stream
        self._last = 0.0
        self._drawn = False

    def update(self, summary: RotationSummary, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._REDRAW_S:
            return
        self._last = now
        self._drawn = True
        line = (
            f"{self._label}  {summary.done}/{summary.listed} checked  {summary.rotated} rotated"
            f"  {summary.skipped} skipped  {summary.failed} failed  {summary.rate:.0f}/s"
        )
        self._stream.write("\r" + line.ljust(78))
        self._stream.flush()

    def close(self, summary: RotationSummary) -> None:
        if self._drawn:
            self.update(summary, force=True)
            self._stream.write("\n")
            self._stream.flush()


def _prepare(api: GatewayApi, plan: RotationPlan, key: str) -> RewrapItem | ObjectOutcome:
    """Read one header and make its new wrapped key, or say why the object is left alone."""
    url = S3Url(plan.bucket, key)
    try:
        head = api.read_header(url)
    except ObjectNotFound:
        return ObjectOutcome(key, "skipped", "deleted since it was listed")
    except (TransferError, DecryptionFailed) as exc:
        return ObjectOutcome(key, "failed", f"cannot read its header: {exc}")
    if WRAPPED_KEY not in head.metadata:
        return ObjectOutcome(key, "skipped", "not client-side encrypted")
    try:
        envelope = parse_envelope_headers(head.metadata)
    except InvalidEnvelope as exc:
        return ObjectOutcome(key, "failed", f"malformed envelope: {exc}")
    current = envelope.wrapped_key
    where = f"{current.key_id} v{current.key_version}"
    if (current.key_id, current.key_version) == (plan.new.key_id, plan.new.key_version):
        return ObjectOutcome(key, "skipped", f"already wrapped under the new key {where}")
    private_key = plan.old_keys.get(current.key_id)
    if private_key is None:
        return ObjectOutcome(key, "skipped", f"wrapped under {where}, not a --from key")
    expected = ObjectBinding(plan.tenant, plan.bucket, key, envelope.content_id)
    try:
        dek = recover_data_key(head.header, [current], private_key, expected)
    except DecryptionFailed as exc:
        return ObjectOutcome(key, "failed", f"integrity check failed, not re-wrapped: {exc}")
    return RewrapItem(
        key,
        current.key_id,
        current.key_version,
        wrap(dek, plan.new, head.header),
        envelope.content_id.hex(),
    )


def _post(api: GatewayApi, bucket: str, items: list[RewrapItem]) -> list[ObjectOutcome]:
    """Send one batch; every item gets an outcome, also when the whole batch fails."""
    try:
        results = api.rewrap(bucket, items)
    except GatewayUnavailable as exc:
        reason = f"the batch's outcome is unknown ({exc}); run the rotation again"
        return [ObjectOutcome(item.key, "failed", reason) for item in items]
    except TransferError as exc:
        return [ObjectOutcome(item.key, "failed", f"batch refused: {exc}") for item in items]
    outcomes: list[ObjectOutcome] = []
    for result in results:
        if result.status == "ok":
            outcomes.append(ObjectOutcome(result.key, "rotated"))
        elif result.status == "PreconditionFailed":
            outcomes.append(
                ObjectOutcome(
                    result.key,
                    "failed",
                    f"precondition failed, rotated or replaced by someone else meanwhile: "
                    f"{result.message}",
                )
            )
        elif result.status == "NoSuchKey":
            outcomes.append(ObjectOutcome(result.key, "skipped", "deleted during the rotation"))
        else:
            outcomes.append(
                ObjectOutcome(result.key, "failed", f"{result.status}: {result.message}")
            )
    return outcomes


def rotate(
    api: GatewayApi,
    keys: Iterable[str],
    plan: RotationPlan,
    *,
    report: Callable[[ObjectOutcome], None],
    progress: RotationProgress | None = None,
) -> RotationSummary:
    """Rotate every object named by ``keys`` (a listing, consumed lazily) as ``plan`` says.

    ``report`` is called, on this thread, for every object that was skipped or failed. The
    summary's ``failed`` count is what decides a non-zero exit.
    """
    summary = RotationSummary()
    window = max(2 * plan.batch_size, 4 * plan.workers)
    pending: deque[Future[RewrapItem | ObjectOutcome]] = deque()
    posts: deque[Future[list[ObjectOutcome]]] = deque()
    batch: list[RewrapItem] = []

    def record(outcome: ObjectOutcome) -> None:
        summary.count(outcome.outcome)
        if outcome.outcome != "rotated":
            report(outcome)
        if progress is not None:
            progress.update(summary)

    def collect(post: Future[list[ObjectOutcome]]) -> None:
        for outcome in post.result():
            record(outcome)

    def flush() -> None:
        nonlocal batch
        if not batch:
            return
        while len(posts) >= POSTS_IN_FLIGHT:
            collect(posts.popleft())
        posts.append(poster.submit(_post, api, plan.bucket, batch))
        batch = []

    def take_oldest() -> None:
        prepared = pending.popleft().result()
        if isinstance(prepared, ObjectOutcome):
            record(prepared)
            return
        batch.append(prepared)
        if len(batch) >= plan.batch_size:
            flush()

    pool = ThreadPoolExecutor(plan.workers, thread_name_prefix="bp-rotate")
    poster = ThreadPoolExecutor(POSTS_IN_FLIGHT, thread_name_prefix="bp-rewrap")
    try:
        for key in keys:
            summary.listed += 1
            pending.append(pool.submit(_prepare, api, plan, key))
            while len(pending) >= window:
                take_oldest()
            while posts and posts[0].done():
                collect(posts.popleft())
        while pending:
            take_oldest()
        flush()
        while posts:
            collect(posts.popleft())
    finally:
        # On an error or Ctrl-C: drop the header reads not started yet; batches already on
        # the wire finish (the gateway applies or refuses each one whole).
        pool.shutdown(wait=True, cancel_futures=True)
        poster.shutdown(wait=True)
    summary.tick()
    if progress is not None:
        progress.close(summary)
    return summary

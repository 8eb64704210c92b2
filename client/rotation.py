"""Key rotation without moving data: the engine behind ``bp rotate``.

For every object version under a prefix that is wrapped under one of the ``--from`` keys, the
client gets the 112-byte BP1 header and the envelope, checks the header against
``tenant/bucket/key`` and the envelope's content id, unwraps the data key with the old private
key, passes the key commitment, wraps the same data key for the new public key against the
same header, and sends the new wrapped key, naming the version, to ``POST /{bucket}?rewrap``
in batches. Each item carries the key id and version it replaces and the content id as
preconditions, so the gateway refuses (412) a version that someone else rotated or replaced
after its header was read. Ciphertext is never written.

Where the header comes from: ``POST /{bucket}?envelopes`` returns the envelope and the header
the gateway recorded at the version's commit, for a whole batch of versions in one request
(:meth:`client.api.GatewayApi.envelopes`). A version committed before the gateway recorded
headers (migration 0022) has none stored; its header is then read from the object with a
ranged GET (:meth:`client.api.GatewayApi.read_header`), as is every header of a batch the
gateway refuses (a gateway without ``?envelopes``). Either way the header is only the
gateway's word, and goes through the same checks (structure, binding, key commitment in
:func:`client.sharing.recover_data_key`) before a key is wrapped against it: a header that is
not the object's own fails its object, it is never re-wrapped.

Versions: ``bp rotate`` lists with ListObjectVersions (the gateway serves it for unversioned
buckets too, every object as its ``null`` version), so noncurrent versions are re-wrapped as
well as current ones: left under the old key, they would become unreadable the day its private
key is retired. Delete markers hold no data and are not listed. :func:`rotate` also takes bare
keys (the current version of each, as a ListObjects listing names them).

Throughput (issue 16, P9: >= 1,000 objects/s): a rotation of N versions costs about 3N/1000
requests (a listing page, an ``?envelopes`` read and a ``?rewrap`` batch per 1,000), so the
client's unwrap and wrap and the gateway's re-wrap transaction are what remain. Up to
:data:`READS_IN_FLIGHT` batches are read and prepared while up to :data:`POSTS_IN_FLIGHT`
batches are applied; ranged GETs (old versions only) run on ``workers`` threads. Memory stays
bounded: a few batches of prepared items (a few hundred bytes each) at a time, however many
objects the prefix holds.

Outcomes are per object version, naming key and version: *rotated*; *skipped* (already under
the new key, under a key that is not a ``--from`` key, not encrypted, deleted meanwhile);
*failed* (precondition refused, header unreadable, integrity or unwrap failure, a batch the
gateway refused or whose answer was lost). Running the same rotation again is always safe:
rotated versions are then skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TextIO, TypeVar

from client.api import GatewayApi
from client.api_records import EnvelopeResult, ObjectHead, RewrapItem
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
    "READS_IN_FLIGHT",
    "ObjectOutcome",
    "RotationPlan",
    "RotationProgress",
    "RotationSummary",
    "VersionRef",
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
#: Batches whose envelopes are read and items prepared concurrently: one on the wire while
#: the other is unwrapped and wrapped (that part is CPU, bound by the GIL).
READS_IN_FLIGHT = 2

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
class VersionRef:
    """One object version to rotate, as a version listing names it: ``version_id`` None
    means whatever is the key's current version when its header is read."""

    key: str
    version_id: str | None = None
    is_latest: bool = True


@dataclass(frozen=True, slots=True)
class ObjectOutcome:
    """What happened to one object version, and why if it was not rotated."""

    key: str
    outcome: Outcome
    reason: str = ""
    version_id: str | None = None
    is_latest: bool = True

    @property
    def version_note(self) -> str:
        """`` (version ID)`` for a report, or ``""`` when the key alone names the object: no
        version id, or the ``null`` version that is current (all an unversioned bucket has)."""
        if self.version_id is None or (self.version_id == "null" and self.is_latest):
            return ""
        return f" (version {self.version_id})"


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


def _outcome(ref: VersionRef, outcome: Outcome, reason: str = "") -> ObjectOutcome:
    return ObjectOutcome(ref.key, outcome, reason, ref.version_id, ref.is_latest)


@dataclass(frozen=True, slots=True)
class _Prepared:
    ref: VersionRef
    item: RewrapItem


def _read_header(api: GatewayApi, plan: RotationPlan, ref: VersionRef) -> _Prepared | ObjectOutcome:
    """The fallback: read one header from the object itself (ranged GET), then prepare."""
    try:
        head = api.read_header(S3Url(plan.bucket, ref.key), ref.version_id)
    except ObjectNotFound:
        return _outcome(ref, "skipped", "deleted since it was listed")
    except (TransferError, DecryptionFailed) as exc:
        return _outcome(ref, "failed", f"cannot read its header: {exc}")
    return _prepare(plan, ref, head)


def _prepare(plan: RotationPlan, ref: VersionRef, head: ObjectHead) -> _Prepared | ObjectOutcome:
    """Check one header and make its new wrapped key, or say why the version is left alone.

    ``head`` is the gateway's word (stored or read from the object): nothing is wrapped
    unless it passes structure, binding to this tenant/bucket/key and content id, and the
    key commitment."""
    if WRAPPED_KEY not in head.metadata:
        return _outcome(ref, "skipped", "not client-side encrypted")
    try:
        envelope = parse_envelope_headers(head.metadata)
    except InvalidEnvelope as exc:
        return _outcome(ref, "failed", f"malformed envelope: {exc}")
    current = envelope.wrapped_key
    where = f"{current.key_id} v{current.key_version}"
    if (current.key_id, current.key_version) == (plan.new.key_id, plan.new.key_version):
        return _outcome(ref, "skipped", f"already wrapped under the new key {where}")
    private_key = plan.old_keys.get(current.key_id)
    if private_key is None:
        return _outcome(ref, "skipped", f"wrapped under {where}, not a --from key")
    expected = ObjectBinding(plan.tenant, plan.bucket, ref.key, envelope.content_id)
    try:
        dek = recover_data_key(head.header, [current], private_key, expected)
    except DecryptionFailed as exc:
        return _outcome(ref, "failed", f"integrity check failed, not re-wrapped: {exc}")
    item = RewrapItem(
        ref.key,
        current.key_id,
        current.key_version,
        wrap(dek, plan.new, head.header),
        envelope.content_id.hex(),
        ref.version_id,
    )
    return _Prepared(ref, item)


def _from_envelope(
    plan: RotationPlan, ref: VersionRef, answer: EnvelopeResult
) -> _Prepared | ObjectOutcome | None:
    """Prepare from an ``?envelopes`` answer; None when the header must be read from the
    object (none stored)."""
    if answer.status in ("NoSuchKey", "NoSuchVersion"):
        return _outcome(ref, "skipped", "deleted since it was listed")
    if answer.status != "ok":
        return _outcome(
            ref, "failed", f"cannot read its envelope: {answer.status}: {answer.message}"
        )
    if WRAPPED_KEY not in answer.metadata:
        return _outcome(ref, "skipped", "not client-side encrypted")
    if answer.header is None:
        return None
    return _prepare(plan, ref, ObjectHead(answer.header, answer.metadata, "", -1))


def _prepare_batch(
    api: GatewayApi, plan: RotationPlan, refs: list[VersionRef], readers: ThreadPoolExecutor
) -> list[_Prepared | ObjectOutcome]:
    """One ``?envelopes`` read for the batch, then every item prepared (in order); headers
    the gateway has not stored are read from their objects on ``readers``."""
    try:
        answers: list[EnvelopeResult | None] = list(
            api.envelopes(plan.bucket, [(ref.key, ref.version_id) for ref in refs])
        )
    except TransferError:
        # A gateway without ?envelopes, or one that refused this batch: the headers are read
        # from the objects, each one checked the same way (a real outage fails them there).
        answers = [None] * len(refs)
    done: list[_Prepared | ObjectOutcome | Future[_Prepared | ObjectOutcome]] = []
    for ref, answer in zip(refs, answers, strict=True):
        prepared = None if answer is None else _from_envelope(plan, ref, answer)
        done.append(readers.submit(_read_header, api, plan, ref) if prepared is None else prepared)
    return [d.result() if isinstance(d, Future) else d for d in done]


def _post(api: GatewayApi, bucket: str, batch: list[_Prepared]) -> list[ObjectOutcome]:
    """Send one batch; every item gets an outcome, also when the whole batch fails."""
    try:
        results = api.rewrap(bucket, [p.item for p in batch])
    except GatewayUnavailable as exc:
        reason = f"the batch's outcome is unknown ({exc}); run the rotation again"
        return [_outcome(p.ref, "failed", reason) for p in batch]
    except TransferError as exc:
        return [_outcome(p.ref, "failed", f"batch refused: {exc}") for p in batch]
    outcomes: list[ObjectOutcome] = []
    for prepared, result in zip(batch, results, strict=True):
        ref = prepared.ref
        if result.status == "ok":
            outcomes.append(_outcome(ref, "rotated"))
        elif result.status == "PreconditionFailed":
            outcomes.append(
                _outcome(
                    ref,
                    "failed",
                    f"precondition failed, rotated or replaced by someone else meanwhile: "
                    f"{result.message}",
                )
            )
        elif result.status in ("NoSuchKey", "NoSuchVersion"):
            outcomes.append(_outcome(ref, "skipped", "deleted during the rotation"))
        else:
            outcomes.append(_outcome(ref, "failed", f"{result.status}: {result.message}"))
    return outcomes


def rotate(
    api: GatewayApi,
    objects: Iterable[str | VersionRef],
    plan: RotationPlan,
    *,
    report: Callable[[ObjectOutcome], None],
    progress: RotationProgress | None = None,
) -> RotationSummary:
    """Rotate every object version named by ``objects`` (a listing, consumed lazily) as
    ``plan`` says; a bare key names the key's current version.

    ``report`` is called, on this thread, for every version that was skipped or failed. The
    summary's ``failed`` count is what decides a non-zero exit.
    """
    summary = RotationSummary()
    reads: deque[Future[list[_Prepared | ObjectOutcome]]] = deque()
    posts: deque[Future[list[ObjectOutcome]]] = deque()
    batch: list[_Prepared] = []

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
        for prepared in reads.popleft().result():
            if isinstance(prepared, ObjectOutcome):
                record(prepared)
                continue
            batch.append(prepared)
            if len(batch) >= plan.batch_size:
                flush()

    def listed() -> Iterator[VersionRef]:
        for item in objects:
            summary.listed += 1
            yield item if isinstance(item, VersionRef) else VersionRef(item)

    preparers = ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="bp-envelopes")
    readers = ThreadPoolExecutor(plan.workers, thread_name_prefix="bp-rotate")
    poster = ThreadPoolExecutor(POSTS_IN_FLIGHT, thread_name_prefix="bp-rewrap")
    try:
        for refs in batched(listed(), plan.batch_size):
            while len(reads) >= READS_IN_FLIGHT:
                take_oldest()
            reads.append(preparers.submit(_prepare_batch, api, plan, refs, readers))
            while posts and posts[0].done():
                collect(posts.popleft())
        while reads:
            take_oldest()
        flush()
        while posts:
            collect(posts.popleft())
    finally:
        # On an error or Ctrl-C: drop the reads not started yet; batches already on the wire
        # finish (the gateway applies or refuses each one whole).
        preparers.shutdown(wait=True, cancel_futures=True)
        readers.shutdown(wait=True, cancel_futures=True)
        poster.shutdown(wait=True)
    summary.tick()
    if progress is not None:
        progress.close(summary)
    return summary

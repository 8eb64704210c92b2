"""``bp put``'s multipart upload without a network: the strategy choice, part planning, part
size rules, and what a failure leaves behind.

The store is a fake (the client's own logic is under test, not S3's): it assembles parts the
way S3 does, reads every body as botocore does over ``http://`` (once to hash it, then again to
send it), and can fail a part, interrupt the upload, or change the file at any point. The
integration test ``tests/integration/test_bp_multipart.py`` runs the same upload through the
real gateway.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from client import ObjectBinding, PublicKeyRef
from client.cli import main
from client.cli_context import CommandContext
from client.errors import PlaintextLengthMismatch, SegmentReuse, SourceChanged
from client.exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, describe_error
from client.format import HEADER_LEN, TAG_LEN, ciphertext_length
from client.keyring import Keyring
from client.parts import (
    MAX_OBJECT_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    check_part_size,
    choose_part_size,
    plan_parts,
)
from client.progress import Progress
from client.remote import GatewayUnavailable, RequestRefused
from client.s3url import S3Url
from client.sharing import upload_file
from client.stream import Encryptor
from client.transfer import (
    DEFAULT_PART_SIZE,
    MULTIPART_THRESHOLD,
    PART_ATTEMPTS,
    SINGLE_PUT_LIMIT,
    UploadOptions,
    _part_size_for,
)
from tests.unit.test_client_cli_transfer import FakeApi, FakeStore, get

MiB = 1024 * 1024
SEG = 64 * 1024
TENANT = "acme"
PART = 5 * MiB
#: Multipart from the first byte, in the smallest parts S3 allows: small files, many parts.
SMALL_PARTS = UploadOptions(part_size=PART, concurrency=3, multipart_threshold=0)


class FakeMultipartStore(FakeStore):
    """A :class:`FakeStore` that also speaks multipart, with S3's rules (parts but the last
    at least 5 MiB, Complete names every part with its ETag) and hooks to make things go wrong.

    ``on_part(number, attempt)`` runs before a part is read; it may raise (the request fails)
    or change the file. Every call is recorded in ``calls``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.uploads: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.on_part: Callable[[int, int], None] | None = None
        self.attempts: dict[int, int] = {}
        self.refuse_abort = False
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def create_multipart_upload(
        self, url: S3Url, metadata: Any, *, redundancy_class: str | None = None
    ) -> str:
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = {
            "url": url,
            "metadata": dict(metadata),
            "class": redundancy_class,
            "parts": {},
        }
        self.calls.append(f"create {url}")
        return upload_id

    def upload_part(self, url: S3Url, upload_id: str, number: int, body: Any, length: int) -> str:
        with self.lock:
            attempt = self.attempts[number] = self.attempts.get(number, 0) + 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.calls.append(f"part {number}")
        try:
            if self.on_part is not None:
                self.on_part(number, attempt)
            first_pass = body.read()  # botocore's payload hash pass
            body.seek(0)
            sent = b"".join(iter(lambda: body.read(16384), b""))
            assert sent == first_pass and len(sent) == length
            upload = self.uploads[upload_id]
            upload["parts"][number] = sent
            return f'"{hashlib.md5(sent).hexdigest()}"'
        finally:
            with self.lock:
                self.in_flight -= 1

    def complete_multipart_upload(
        self, url: S3Url, upload_id: str, etags: list[tuple[int, str]]
    ) -> dict[str, Any]:
        self.calls.append(f"complete {url}")
        upload = self.uploads.pop(upload_id)
        parts = upload["parts"]
        assert [n for n, _ in etags] == sorted(parts) == list(range(1, len(parts) + 1))
        for number, etag in etags:
            assert etag == f'"{hashlib.md5(parts[number]).hexdigest()}"'
            if number < len(parts):
                assert len(parts[number]) >= MIN_PART_SIZE  # S3's rule for all but the last
        body = b"".join(parts[n] for n, _ in etags)
        self.objects[(url.bucket, url.key)] = (body, upload["metadata"])
        return {"ETag": f'"assembled-{len(etags)}"'}

    def abort_multipart_upload(self, url: S3Url, upload_id: str) -> None:
        self.calls.append(f"abort {url}")
        assert self.in_flight == 0, "a part was still being sent when the upload was aborted"
        if self.refuse_abort:
            raise GatewayUnavailable(f"abort {url}: the gateway timed out")
        self.uploads.pop(upload_id)


@pytest.fixture
def alice() -> x25519.X25519PrivateKey:
    return x25519.X25519PrivateKey.generate()


def source(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "src"
    path.write_bytes(data)
    return path, data


def upload(
    store: FakeStore,
    path: Path,
    private: x25519.X25519PrivateKey,
    options: UploadOptions = SMALL_PARTS,
    **kwargs: Any,
) -> Any:
    return upload_file(
        store,  # type: ignore[arg-type]
        FakeApi(store),  # type: ignore[arg-type]
        path,
        S3Url("bkt", "k"),
        [PublicKeyRef(private.public_key())],
        tenant=TENANT,
        options=options,
        **kwargs,
    )


def nothing_left(store: FakeMultipartStore) -> bool:
    """No object and no open upload: what any failed upload must leave."""
    return not store.objects and not store.uploads


# -- strategy and part sizes ------------------------------------------------------------------


def _encryptor(length: int) -> Encryptor:
    return Encryptor(ObjectBinding.new(TENANT, "bkt", "k"), length)


def test_small_files_are_one_put_and_large_files_multipart() -> None:
    defaults = UploadOptions()
    assert defaults.part_size == DEFAULT_PART_SIZE == 16 * MiB
    assert defaults.multipart_threshold == MULTIPART_THRESHOLD == 64 * MiB
    assert _part_size_for(_encryptor(0), defaults) is None
    assert _part_size_for(_encryptor(MULTIPART_THRESHOLD), defaults) is None
    assert _part_size_for(_encryptor(MULTIPART_THRESHOLD + 1), defaults) == 16 * MiB
    # Over 5 GiB of ciphertext no single PUT is possible, whatever the threshold says.
    never = UploadOptions(multipart_threshold=10 * 1024**3)
    assert _part_size_for(_encryptor(5 * 1024**3), never) == 16 * MiB
    assert _part_size_for(_encryptor(1024**3), never) is None
    assert ciphertext_length(SINGLE_PUT_LIMIT) > SINGLE_PUT_LIMIT


def test_part_plan_of_a_110_mib_file() -> None:
    length = 110 * MiB + 12_345
    plans = plan_parts(length, 16 * MiB, 16)
    assert len(plans) == 7
    assert [p.plaintext_length for p in plans] == [16 * MiB] * 6 + [14 * MiB + 12_345]
    assert plans[0].ciphertext_length == HEADER_LEN + 16 * MiB + TAG_LEN * 256
    assert plans[1].ciphertext_length == 16 * MiB + TAG_LEN * 256
    assert [p.first_segment for p in plans] == [256 * i for i in range(7)]
    assert sum(p.ciphertext_length for p in plans) == ciphertext_length(length)


def test_part_size_rules() -> None:
    check_part_size(5 * MiB, 16)
    check_part_size(16 * MiB, 16)
    for bad in (0, 4 * MiB, 5 * MiB + 1, 5 * MiB + SEG // 2, 5 * 1024**3):
        with pytest.raises(ValueError):
            check_part_size(bad, 16)
    assert choose_part_size(110 * MiB, 16 * MiB, 16) == 16 * MiB
    # Exactly 10,000 parts is fine; one byte more needs bigger parts, the smallest that fit.
    assert choose_part_size(MAX_PARTS * 16 * MiB, 16 * MiB, 16) == 16 * MiB
    bigger = choose_part_size(MAX_PARTS * 16 * MiB + 1, 16 * MiB, 16)
    assert bigger == 16 * MiB + SEG
    assert len(plan_parts(MAX_PARTS * 16 * MiB + 1, bigger, 16)) <= MAX_PARTS
    # Nearly 5 TiB: parts of about 524 MiB, still 10,000 of them at most.
    huge = MAX_OBJECT_SIZE - 2 * 1024**3
    size = choose_part_size(huge, 16 * MiB, 16)
    assert size % SEG == 0 and len(plan_parts(huge, size, 16)) <= MAX_PARTS
    assert choose_part_size(huge, 5 * MiB, 16) == size
    with pytest.raises(ValueError, match="5 TiB"):
        choose_part_size(MAX_OBJECT_SIZE, 16 * MiB, 16)


def test_options_are_checked() -> None:
    for concurrency in (0, 17):
        with pytest.raises(ValueError):
            UploadOptions(concurrency=concurrency)
    with pytest.raises(ValueError):
        UploadOptions(multipart_threshold=-1)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [PART + 1, 2 * PART, 2 * PART + SEG - 1, 4 * PART + 3, 3 * PART - SEG + 17]
)
def test_multipart_round_trip(size: int, tmp_path: Path, alice: x25519.X25519PrivateKey) -> None:
    store = FakeMultipartStore()
    path, data = source(tmp_path, size)
    result = upload(store, path, alice, redundancy_class="StandardClass")
    parts = -(-size // PART)
    assert (result.parts, result.part_size) == (parts, PART)
    assert result.etag == f"assembled-{parts}"
    assert store.calls[0] == "create s3://bkt/k" and store.calls[-1] == "complete s3://bkt/k"
    assert sorted(store.calls[1:-1]) == sorted(f"part {n}" for n in range(1, parts + 1))
    stored, meta = store.objects[("bkt", "k")]
    assert len(stored) == result.ciphertext_length == ciphertext_length(size)
    assert set(meta) == {"bp-wrapped-key", "bp-key-id", "bp-key-version", "bp-wrap-alg",
                         "bp-content-id"}  # fmt: skip
    assert get(store, S3Url("bkt", "k"), alice) == data
    assert store.most_in_flight <= 3


def test_create_carries_what_a_single_put_carries(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    """Same envelope (names and shape), same class: only the upload's shape differs."""
    single, multi = FakeMultipartStore(), FakeMultipartStore()
    path, data = source(tmp_path, 2 * PART + 1)
    sent: dict[str, Any] = {}
    real_put = single.put

    def put(url: S3Url, body: Any, length: int, metadata: Any, **kwargs: Any) -> Any:
        sent.update(kwargs)
        return real_put(url, body, length, metadata, **kwargs)

    single.put = put  # type: ignore[method-assign]
    upload(single, path, alice, UploadOptions(), redundancy_class="StandardClass")
    upload(multi, path, alice, redundancy_class="StandardClass")
    assert single.calls == [] and sent == {"redundancy_class": "StandardClass"}
    (created,) = [c for c in multi.calls if c.startswith("create")]
    assert created == "create s3://bkt/k"
    assert set(single.objects[("bkt", "k")][1]) == set(multi.objects[("bkt", "k")][1])
    assert get(multi, S3Url("bkt", "k"), alice) == get(single, S3Url("bkt", "k"), alice) == data


def test_class_reaches_create(tmp_path: Path, alice: x25519.X25519PrivateKey) -> None:
    store = FakeMultipartStore()
    seen: list[Any] = []
    real = store.create_multipart_upload

    def create(url: S3Url, metadata: Any, *, redundancy_class: str | None = None) -> str:
        seen.append(redundancy_class)
        return real(url, metadata, redundancy_class=redundancy_class)

    store.create_multipart_upload = create  # type: ignore[method-assign]
    path, _ = source(tmp_path, PART + 1)
    upload(store, path, alice, redundancy_class="StandardClass")
    assert seen == ["StandardClass"]


def test_progress_counts_each_byte_once_across_parts_and_passes(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeMultipartStore()
    path, _ = source(tmp_path, 3 * PART + 5)
    progress = Progress("put", ciphertext_length(3 * PART + 5), None)
    upload(store, path, alice, progress=progress)
    assert progress.done == progress.total  # every part read twice, counted once


def test_encryptor_ledger_stays_small_and_parts_are_final(
    tmp_path: Path, alice: x25519.X25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each acknowledged part is closed: its segments can never be sealed again, and the
    record of sealed ranges collapses to one span however many windows were sealed."""
    seen: list[Encryptor] = []
    real_init = Encryptor.__init__

    def keep(self: Encryptor, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        seen.append(self)

    monkeypatch.setattr(Encryptor, "__init__", keep)
    store = FakeMultipartStore()
    path, data = source(tmp_path, 4 * PART + 1)
    upload(store, path, alice)
    (enc,) = seen
    assert len(enc._ledger) == 1  # 21 MiB sealed twice in 1 MiB windows: one closed span
    with pytest.raises(SegmentReuse):
        enc.encrypt_segments(0, data[:SEG])  # identical plaintext, still refused: closed
    with pytest.raises(SegmentReuse):
        enc.encrypt_segments(enc.header.segment_count - 1, data[-1:])


# -- failures ---------------------------------------------------------------------------------


def test_a_temporary_part_failure_is_retried(
    tmp_path: Path, alice: x25519.X25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("client.transfer._RETRY_BACKOFF_S", 0.001)
    store = FakeMultipartStore()

    def flaky(number: int, attempt: int) -> None:
        if number == 2 and attempt < PART_ATTEMPTS:
            raise GatewayUnavailable("part 2: the connection dropped")

    store.on_part = flaky
    path, data = source(tmp_path, 3 * PART)
    upload(store, path, alice)
    assert store.attempts[2] == PART_ATTEMPTS and store.attempts[1] == 1
    assert get(store, S3Url("bkt", "k"), alice) == data  # the resent part is identical


def test_a_part_failing_every_time_aborts_the_upload(
    tmp_path: Path, alice: x25519.X25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("client.transfer._RETRY_BACKOFF_S", 0.001)
    store = FakeMultipartStore()

    def down(number: int, attempt: int) -> None:
        if number == 3:
            raise GatewayUnavailable("part 3: 503 SlowDown")

    store.on_part = down
    path, _ = source(tmp_path, 6 * PART)
    with pytest.raises(GatewayUnavailable, match="SlowDown"):
        upload(store, path, alice)
    assert store.attempts[3] == PART_ATTEMPTS
    assert store.calls[-1] == "abort s3://bkt/k" and "complete s3://bkt/k" not in store.calls
    assert nothing_left(store)


def test_a_refused_part_is_not_retried_and_aborts(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeMultipartStore()

    def refuse(number: int, attempt: int) -> None:
        if number == 2:
            raise RequestRefused("part 2: EntityTooLarge", code="EntityTooLarge", status=400)

    store.on_part = refuse
    path, _ = source(tmp_path, 4 * PART)
    with pytest.raises(RequestRefused):
        upload(store, path, alice)
    assert store.attempts[2] == 1 and store.calls[-1] == "abort s3://bkt/k"
    assert nothing_left(store)


def test_the_first_failure_stops_the_other_parts(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    """Parts already being read end their requests; parts not started never start."""
    store = FakeMultipartStore()
    started = threading.Event()

    def one_fails(number: int, attempt: int) -> None:
        if number == 1:
            started.wait(5)  # part 2 is under way
            raise RequestRefused("part 1: InvalidRequest", code="InvalidRequest", status=400)
        started.set()
        time.sleep(0.2)

    store.on_part = one_fails
    path, _ = source(tmp_path, 20 * PART)
    with pytest.raises(RequestRefused):
        upload(
            store, path, alice, UploadOptions(part_size=PART, concurrency=2, multipart_threshold=0)
        )
    parts = [c for c in store.calls if c.startswith("part")]
    assert len(parts) <= 3, parts  # 20 planned
    assert store.calls[-1] == "abort s3://bkt/k" and nothing_left(store)


@pytest.mark.parametrize("change", ["modified", "truncated", "grown", "reread-different"])
def test_a_file_changing_during_the_upload_is_never_stored(
    change: str, tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeMultipartStore()
    path, data = source(tmp_path, 4 * PART + 100)

    def meddle(number: int, attempt: int) -> None:
        if number != 3:
            return
        if change == "modified":  # inside part 1, already sent: only the timestamps tell
            with open(path, "r+b") as f:
                f.seek(10)
                f.write(b"changed")
        elif change == "truncated":
            os.truncate(path, PART)
        elif change == "grown":
            with open(path, "ab") as f:
                f.write(b"more")

    store.on_part = meddle
    if change == "reread-different":
        # Between the two passes over one part (hash, then send), with the timestamps put
        # back: the body re-encrypts, the ledger sees other ciphertext, nothing is released.
        real_upload_part = FakeMultipartStore.upload_part

        def flip_between_passes(
            self: FakeMultipartStore, url: S3Url, upload_id: str, number: int, body: Any, n: int
        ) -> str:
            if number != 2:
                return real_upload_part(self, url, upload_id, number, body, n)
            first = body.read()
            body.seek(0)
            stat = os.stat(path)
            with open(path, "r+b") as f:
                f.seek(PART + 5)
                f.write(bytes([data[PART + 5] ^ 1]))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            second = body.read()
            raise AssertionError(f"a changed window was released ({len(first)}, {len(second)})")

        store.upload_part = flip_between_passes.__get__(store)  # type: ignore[method-assign]
    expected = {
        "modified": SourceChanged,
        "truncated": (SourceChanged, PlaintextLengthMismatch),
        "grown": (SourceChanged, PlaintextLengthMismatch),
        "reread-different": SegmentReuse,
    }[change]
    with pytest.raises(expected):  # type: ignore[call-overload]
        upload(
            store, path, alice, UploadOptions(part_size=PART, concurrency=1, multipart_threshold=0)
        )
    assert "complete s3://bkt/k" not in store.calls and store.calls[-1] == "abort s3://bkt/k"
    assert nothing_left(store)


def test_a_failed_abort_is_reported_with_the_original_error(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeMultipartStore()
    store.refuse_abort = True

    def refuse(number: int, attempt: int) -> None:
        raise RequestRefused("part: InvalidRequest", code="InvalidRequest", status=400)

    store.on_part = refuse
    path, _ = source(tmp_path, 2 * PART)
    with pytest.raises(RequestRefused) as caught:
        upload(store, path, alice)
    line = describe_error(caught.value)
    assert line.startswith("part: InvalidRequest; the incomplete upload upload-1 could not be")
    assert "timed out" in line and "\n" not in line


def test_ctrl_c_aborts_the_upload(tmp_path: Path, alice: x25519.X25519PrivateKey) -> None:
    """SIGINT to the main thread while parts are in flight: the parts stop, the upload is
    aborted, and KeyboardInterrupt goes on up (bp exits 130)."""
    store = FakeMultipartStore()
    main_thread = threading.main_thread().ident
    assert main_thread is not None and threading.current_thread() is threading.main_thread()

    def interrupt(number: int, attempt: int) -> None:
        if number == 2:
            signal.pthread_kill(main_thread, signal.SIGINT)
            time.sleep(0.5)

    store.on_part = interrupt
    # Python raises KeyboardInterrupt only under its own handler: a run started with SIGINT
    # ignored (a background job) would otherwise never see the signal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    path, _ = source(tmp_path, 10 * PART)
    try:
        with pytest.raises(KeyboardInterrupt):
            upload(
                store,
                path,
                alice,
                UploadOptions(part_size=PART, concurrency=2, multipart_threshold=0),
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert store.calls[-1] == "abort s3://bkt/k" and nothing_left(store)
    assert len([c for c in store.calls if c.startswith("part")]) <= 4


def test_a_gateway_without_multipart_gets_a_single_put(
    tmp_path: Path, alice: x25519.X25519PrivateKey
) -> None:
    store = FakeMultipartStore()

    def not_built(url: S3Url, metadata: Any, **_: Any) -> str:
        raise RequestRefused("not built yet (NotImplemented)", code="NotImplemented", status=501)

    store.create_multipart_upload = not_built  # type: ignore[method-assign]
    path, data = source(tmp_path, 2 * PART)
    result = upload(store, path, alice)
    assert result.parts == 0 and get(store, S3Url("bkt", "k"), alice) == data


# -- the command line -------------------------------------------------------------------------


def test_put_options_parse_and_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from client.cli_parser import build_parser

    args = build_parser().parse_args(["put", "f", "s3://b/k"])
    assert (args.part_size, args.concurrency) == (16 * MiB, 4)
    for text, value in (("5M", 5 * MiB), ("16MiB", 16 * MiB), ("32m", 32 * MiB),
                        (str(6 * MiB), 6 * MiB), ("1G", 1024**3), ("5120K", 5 * MiB)):  # fmt: skip
        assert (
            build_parser().parse_args(["put", "f", "s3://b/k", "--part-size", text]).part_size
            == value
        )
    for bad in ("4M", "100000", "5.5M", "abc", "-16M", "6G", str(5 * MiB + 1)):
        out, err = io.StringIO(), io.StringIO()
        assert main(["put", "f", "s3://b/k", "--part-size", bad], stdout=out, stderr=err) == 2
        assert "--part-size" in err.getvalue()
    for bad in ("0", "17", "x"):
        err = io.StringIO()
        assert main(["put", "f", "s3://b/k", "--concurrency", bad], stderr=err) == 2


class ClosingApi(FakeApi):
    def __enter__(self) -> ClosingApi:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_bp_put_exit_codes_for_multipart_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI end of it: summary names the parts; failures map to the documented codes."""
    for name in list(os.environ):
        if name.startswith(("BP_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BP_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("BP_KEYRING", str(tmp_path / "keys"))
    monkeypatch.setenv("BP_ENDPOINT", "http://gateway.invalid")
    monkeypatch.setenv("BP_TENANT", TENANT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setattr("client.transfer._RETRY_BACKOFF_S", 0.001)
    Keyring(tmp_path / "keys", scrypt_log2_n=12).generate("alice", "x25519", "pw")
    store = FakeMultipartStore()
    monkeypatch.setattr(CommandContext, "store", lambda self, connections=10: store)
    monkeypatch.setattr(CommandContext, "api", lambda self, connections=4: ClosingApi(store))
    path, _ = source(tmp_path, 2 * PART + 7)

    def bp(*args: str) -> tuple[int, str]:
        err = io.StringIO()
        return main(
            ["put", str(path), "s3://bkt/k", "--key", "alice", *args], stderr=err
        ), err.getvalue()

    # A small file, uploaded in parts: the CLI's options with the threshold at 0.
    real_options = UploadOptions
    monkeypatch.setattr(
        "client.cli_commands_transfer.UploadOptions",
        lambda **kw: real_options(multipart_threshold=0, **kw),
    )
    code, err = bp("--part-size", "5M", "--concurrency", "2")
    assert code == 0, err
    assert "3 parts of 5.0 MiB" in err
    store.objects.clear()

    def down(number: int, attempt: int) -> None:
        raise GatewayUnavailable("part: 503 ServiceUnavailable")

    store.on_part = down
    code, err = bp("--part-size", "5M")
    assert code == EXIT_UNAVAILABLE and "ServiceUnavailable" in err
    assert nothing_left(store)

    def changed(number: int, attempt: int) -> None:
        if number == 2:
            with open(path, "ab") as f:
                f.write(b"x")

    store.on_part = changed
    code, err = bp("--part-size", "5M", "--concurrency", "1")
    assert code == EXIT_ERROR and "nothing was stored" in err, err
    assert nothing_left(store)

    def interrupted(number: int, attempt: int) -> None:
        raise KeyboardInterrupt

    store.on_part = interrupted
    code, err = bp("--part-size", "5M", "--concurrency", "1")
    assert code == EXIT_INTERRUPTED and nothing_left(store)

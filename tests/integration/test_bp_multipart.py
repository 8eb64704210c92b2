"""``bp put`` of a large file through the real gateway as a multipart upload.

A ~110 MiB file goes up in 16 MiB parts (the installed ``bp`` console script, as a user runs
it), comes back whole and with a range across a part boundary (SHA-256 compared), is a
multipart object on the gateway (ETag ``...-7``), and no plaintext marker reaches a backend.
Uploads that go wrong half-way (the file modified, Ctrl-C) leave no object, keep the one that
was there, and leave no open upload. The same file through a single PutObject is timed too.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.format import ciphertext_length
from client.keyring import Keyring
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

BP = Path(sys.executable).with_name("bp")
PASSPHRASE = "correct horse battery staple"
MARKER = b"BP-MULTIPART-MARKER-" + secrets.token_hex(12).encode()
MiB = 1024 * 1024
SIZE = 110 * MiB + 4321  # 7 parts of 16 MiB, the last one short and not segment-aligned
PART = 16 * MiB
#: ``bp`` with the multipart threshold out of reach: the old single PutObject, for comparison.
SINGLE_PUT_BP = (
    "import sys\n"
    "import client.cli as cli\n"
    "import client.cli_commands_transfer as commands\n"
    "real = commands.UploadOptions\n"
    "commands.UploadOptions = lambda **kw: real(multipart_threshold=5 * 1024**3, **kw)\n"
    "sys.exit(cli.main())\n"
)


@dataclass
class Account:
    tenant: str
    s3: Any
    env: dict[str, str]
    bucket: str


@pytest.fixture(scope="module")
def account(
    cluster: Federation, tenant: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Account]:
    name, s3 = tenant
    credentials = s3._get_credentials().get_frozen_credentials()
    base = tmp_path_factory.mktemp("bp-multipart")
    Keyring(base / "keys", scrypt_log2_n=12).generate("alice", "x25519", PASSPHRASE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BP_", "AWS_"))}
    env.update(
        BP_CONFIG=str(base / "none.yaml"),
        BP_KEYRING=str(base / "keys"),
        BP_PASSPHRASE=PASSPHRASE,
        BP_ENDPOINT=cluster.endpoint,
        BP_TENANT=name,
        BP_REGION=cluster.settings.region,
        AWS_ACCESS_KEY_ID=credentials.access_key,
        AWS_SECRET_ACCESS_KEY=credentials.secret_key,
    )
    bucket = f"mp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    yield Account(name, s3, env, bucket)


@dataclass
class Run:
    code: int
    err: str
    seconds: float
    peak_rss_mib: int


#: Runs a command and prints its peak RSS (KiB). ``bp`` is started from this small process,
#: not from pytest: a child spawned straight from a large process inherits that process's
#: resident size as its own peak (Linux records the old image's high-water mark at exec).
MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss, flush=True)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def bp(account: Account, *args: str, program: list[str] | None = None) -> Run:
    """Run ``bp`` as a child process; its exit code, stderr, wall time and peak RSS."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *(program or [str(BP)]), *args],
        capture_output=True,
        env=account.env,
        timeout=600,
        check=False,
    )
    seconds = time.monotonic() - started
    rss_kib = int(proc.stdout.decode().strip() or 0)
    return Run(proc.returncode, proc.stderr.decode(), seconds, rss_kib // 1024)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Random bytes with the marker in every MiB, straddling each part boundary too."""
    path = tmp_path_factory.mktemp("bp-multipart-src") / "big.bin"
    with path.open("wb") as f:
        written = 0
        while written < SIZE:
            block = bytearray(os.urandom(min(MiB, SIZE - written)))
            at = 1000 if written % PART else 0
            if len(block) > at + len(MARKER):
                block[at : at + len(MARKER)] = MARKER
            f.write(block)
            written += len(block)
        for boundary in range(PART, SIZE, PART):
            f.seek(boundary - len(MARKER) // 2)
            f.write(MARKER)
    yield path
    path.unlink()


def open_uploads(account: Account) -> list[dict[str, Any]]:
    return list(account.s3.list_multipart_uploads(Bucket=account.bucket).get("Uploads", []))


def backend_keys(cluster: Federation) -> set[tuple[int, str]]:
    keys = set()
    for index in range(len(cluster.motos)):
        s3 = cluster.backend_s3(index)
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=cluster.backend_bucket(index)
        ):
            keys.update((index, item["Key"]) for item in page.get("Contents", []))
    return keys


def assert_no_marker_on(cluster: Federation, keys: set[tuple[int, str]]) -> int:
    """Read each backend object in 8 MiB steps (overlapping by the marker's length); the
    marker and its hex form must not appear. Returns the bytes read."""
    forms = [MARKER, MARKER.hex().encode()]
    overlap = max(len(f) for f in forms)
    total = 0
    for index, key in sorted(keys):
        body = cluster.backend_s3(index).get_object(Bucket=cluster.backend_bucket(index), Key=key)
        tail = b""
        for chunk in body["Body"].iter_chunks(8 * MiB):
            window = tail + chunk
            for form in forms:
                assert form not in window, f"plaintext marker on backend {index} object {key}"
            tail = window[-overlap:]
            total += len(chunk)
    return total


# -- the round trip ---------------------------------------------------------------------------


def test_multipart_put_get_range_and_no_plaintext_on_backends(
    account: Account, cluster: Federation, big_file: Path, tmp_path: Path
) -> None:
    expected = sha256_of(big_file)
    data_at = big_file.read_bytes
    before = backend_keys(cluster)
    url = f"s3://{account.bucket}/big.bin"

    put = bp(account, "put", str(big_file), url, "--key", "alice", "--part-size", "16M")
    assert put.code == 0, put.err
    assert "7 parts of 16.0 MiB" in put.err, put.err

    # A multipart object on the gateway: S3's ETag of 7 parts, the exact BP1 length, and the
    # envelope from CreateMultipartUpload.
    head = account.s3.head_object(Bucket=account.bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-7"), head["ETag"]
    assert head["ContentLength"] == ciphertext_length(SIZE)
    assert head["ContentType"] == "application/octet-stream"
    assert {"bp-wrapped-key", "bp-key-id", "bp-content-id"} <= set(head["Metadata"])
    assert open_uploads(account) == []

    out = tmp_path / "big.out"
    got = bp(account, "get", url, str(out))
    assert got.code == 0, got.err
    assert out.stat().st_size == SIZE and sha256_of(out) == expected
    out.unlink()

    # Ranges across part boundaries: 16 MiB (parts 1|2, where part 1 also holds the header)
    # and 96 MiB (parts 6|7), and one spanning three whole parts.
    data = data_at()
    for first, last in (
        (PART - 1000, PART + 999),
        (6 * PART - 1, 6 * PART),
        (PART - 5, 4 * PART + 5),
    ):
        piece = tmp_path / "piece"
        ranged = bp(account, "get", url, str(piece), "--range", f"{first}-{last}")
        assert ranged.code == 0, ranged.err
        assert (
            hashlib.sha256(piece.read_bytes()).digest()
            == hashlib.sha256(data[first : last + 1]).digest()
        ), (first, last)
    del data
    verify = bp(account, "verify", url)
    assert verify.code == 0, verify.err

    # No plaintext on any backend: every backend object this upload created, read back.
    created = backend_keys(cluster) - before
    assert len(created) >= 7  # at least one stored piece per part
    read = assert_no_marker_on(cluster, created)
    assert read >= ciphertext_length(SIZE)

    # The same file through the old single PutObject, for the record.
    single = bp(
        account,
        "put",
        str(big_file),
        f"s3://{account.bucket}/big-single.bin",
        "--key",
        "alice",
        program=[sys.executable, "-c", SINGLE_PUT_BP],
    )
    assert single.code == 0, single.err
    assert "parts" not in single.err
    single_head = account.s3.head_object(Bucket=account.bucket, Key="big-single.bin")
    assert "-" not in single_head["ETag"]
    got_single = bp(account, "get", f"s3://{account.bucket}/big-single.bin", str(out))
    assert got_single.code == 0 and sha256_of(out) == expected
    mib = SIZE / MiB
    print(
        f"\n[bp multipart] {mib:.1f} MiB: multipart put {put.seconds:.2f} s "
        f"({mib / put.seconds:.1f} MiB/s, peak RSS {put.peak_rss_mib} MiB), get "
        f"{got.seconds:.2f} s ({mib / got.seconds:.1f} MiB/s); single PUT {single.seconds:.2f} s "
        f"({mib / single.seconds:.1f} MiB/s, peak RSS {single.peak_rss_mib} MiB), get "
        f"{got_single.seconds:.2f} s ({mib / got_single.seconds:.1f} MiB/s)\n"
        f"  put: {put.err.strip()}\n  single: {single.err.strip()}"
    )
    # Bounded memory: four parts in flight (1 MiB windows each) peak about where a 1 MiB file
    # does, and no higher than the single PUT's 8 MiB windows; never near the file's size.
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(MiB))
    tiny = bp(account, "put", str(small), f"s3://{account.bucket}/small.bin", "--key", "alice")
    assert tiny.code == 0, tiny.err
    print(f"  peak RSS of a 1 MiB put: {tiny.peak_rss_mib} MiB")
    assert put.peak_rss_mib < tiny.peak_rss_mib + 32, (put.peak_rss_mib, tiny.peak_rss_mib)
    assert put.peak_rss_mib <= single.peak_rss_mib + 8, (put.peak_rss_mib, single.peak_rss_mib)


# -- uploads that go wrong --------------------------------------------------------------------


def _wait_for_parts(account: Account, key: str, proc: subprocess.Popen[bytes], count: int) -> None:
    """Until the gateway lists ``count`` parts of the upload to ``key`` (or bp has exited)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        uploads = [u for u in open_uploads(account) if u["Key"] == key]
        if uploads:
            parts = account.s3.list_parts(
                Bucket=account.bucket, Key=key, UploadId=uploads[0]["UploadId"]
            ).get("Parts", [])
            if len(parts) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"bp never got {count} parts of {key} up (exit {proc.poll()})")


def _start_put(account: Account, path: Path, key: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(BP),
            "put",
            str(path),
            f"s3://{account.bucket}/{key}",
            "--key",
            "alice",
            "--part-size",
            "5M",
            "--concurrency",
            "1",
        ],  # fmt: skip
        # Ctrl-C must reach bp even when this run's shell started it with SIGINT ignored (a
        # background job): an ignored signal stays ignored across exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=account.env,
    )


@pytest.mark.parametrize("how", ["file modified", "file truncated", "ctrl-c"])
def test_an_interrupted_upload_leaves_no_object_and_no_open_upload(
    how: str, account: Account, tmp_path: Path
) -> None:
    key = f"interrupted-{how.replace(' ', '-')}"
    # An earlier version under the same key must survive the failed upload untouched.
    small = tmp_path / "small"
    small.write_bytes(b"the version that must survive")
    assert (
        bp(account, "put", str(small), f"s3://{account.bucket}/{key}", "--key", "alice").code == 0
    )
    etag = account.s3.head_object(Bucket=account.bucket, Key=key)["ETag"]

    path = tmp_path / "changing.bin"
    with path.open("wb") as f:
        for _ in range(80):  # 80 MiB: 16 parts of 5 MiB, one at a time
            f.write(os.urandom(MiB))
    proc = _start_put(account, path, key)
    assert proc.stderr is not None
    try:
        _wait_for_parts(account, key, proc, 2)
        if how == "file modified":
            with path.open("r+b") as f:  # inside part 1, which is already stored
                f.seek(10)
                f.write(b"changed while uploading")
        elif how == "file truncated":
            os.truncate(path, 20 * MiB)
        else:
            proc.send_signal(signal.SIGINT)
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    if how == "ctrl-c":
        assert code == 130 and "interrupted" in err, (code, err)
    else:
        assert code == 1 and "nothing was stored" in err, (code, err)
    assert "could not be aborted" not in err
    assert open_uploads(account) == []
    head = account.s3.head_object(Bucket=account.bucket, Key=key)
    assert head["ETag"] == etag  # still the small version
    out = tmp_path / "out"
    assert bp(account, "get", f"s3://{account.bucket}/{key}", str(out)).code == 0
    assert out.read_bytes() == b"the version that must survive"

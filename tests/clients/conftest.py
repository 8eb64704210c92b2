"""Real S3 clients against the gateway (issue 3): boto3/s3transfer, the AWS CLI, s3cmd, rclone.

The AWS CLI and s3cmd live in `.venv-clients` and rclone is Debian's package, all installed by
`make clients` (scripts/install-clients.sh). A missing client fails its tests, unless
BP_TEST_ALLOW_MISSING_CLIENTS=1, which skips them instead (a developer without the clients).

Every client talks to one tenant created with --allow-plaintext (the clients do not write the
BP1 envelope), uploads a handful of small files and one file over 100 MiB, and every download
is compared byte for byte (SHA-256) with what was uploaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Federation

REPO = Path(__file__).resolve().parents[2]
CLIENTS_BIN = REPO / ".venv-clients" / "bin"

MiB = 1024 * 1024
SMALL_TIMEOUT_S = 180
BIG_TIMEOUT_S = 600
BIG_SIZE = 105 * MiB + 12345  # over 100 MiB, not a multiple of the 8 MiB part size: 14 parts

# Small files: empty, one byte, 100 KiB, and one byte past a (test) 1 MiB gateway part.
SMALL_FILES = {
    "empty.bin": 0,
    "one.bin": 1,
    "100k.bin": 100 * 1024,
    "1m-plus-1.bin": MiB + 1,
}
# A nested tree for sync / recursive copies (relative paths with '/').
TREE_FILES = {
    "top.txt": 11,
    "a/one.txt": 1,
    "a/b/deep.bin": 70_000,
    "a/b/c/deeper.bin": MiB + 1,
    "z/empty.txt": 0,
    "odd names/sp ace+plus%pct \u00fc=eq&~t(1).txt": 6,  # SigV4 URI-encoding of every client
}


# Issue 17 (EncodingType=url): a key holding every printable ASCII character, and keys under a
# prefix holding a newline; every client must hand back the keys and prefixes that were sent.
PRINTABLE_KEY = "all/" + "".join(chr(c) for c in range(0x20, 0x7F))
NEWLINE_PREFIX = "nl\nprefix/"
ODD_KEYS = (PRINTABLE_KEY, NEWLINE_PREFIX + "a+b c", NEWLINE_PREFIX + "x%y")


@dataclass(frozen=True)
class ClientTenant:
    """A --allow-plaintext tenant with its credentials, for clients configured from outside."""

    name: str
    access_key: str
    secret_key: str
    endpoint: str
    region: str
    s3: Any  # the project's boto3 client, for checking what the client under test did

    @property
    def hostport(self) -> str:
        return self.endpoint.split("://", 1)[1].rstrip("/")

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every key in ``bucket`` under ``prefix`` with its size (ListObjectsV2, paginated)."""
        found: dict[str, int] = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def put_odd_keys(self, bucket: str) -> None:
        """Create ``bucket`` holding ``ODD_KEYS`` (one byte each), written with boto3."""
        self.s3.create_bucket(Bucket=bucket)
        for key in ODD_KEYS:
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    def bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise
        return True

    def sweep(self, bucket: str) -> None:
        """Best effort: remove every version, upload and the bucket (test teardown)."""
        s3 = self.s3
        with contextlib.suppress(Exception):
            for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        with contextlib.suppress(Exception):
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for page in pages:
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        with contextlib.suppress(Exception):
            for key in self.keys(bucket):
                s3.delete_object(Bucket=bucket, Key=key)
        with contextlib.suppress(Exception):
            s3.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def client_tenant(cluster: Federation) -> ClientTenant:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    return ClientTenant(
        name=name,
        access_key=key,
        secret_key=secret,
        endpoint=cluster.endpoint,
        region=cluster.settings.region,
        s3=cluster.s3(key, secret),
    )


@pytest.fixture
def bucket(client_tenant: ClientTenant) -> Iterator[str]:
    """A fresh bucket name (not created: creating it is part of each client's test)."""
    name = f"cli-{secrets.token_hex(5)}"
    yield name
    client_tenant.sweep(name)


ALLOW_MISSING = "BP_TEST_ALLOW_MISSING_CLIENTS"


def find_client(name: str) -> str | None:
    """aws and s3cmd: the pinned ones in .venv-clients only; rclone: the one on PATH."""
    if name == "rclone":
        return shutil.which(name)
    local = CLIENTS_BIN / name
    return str(local) if os.access(local, os.X_OK) else None


def _missing(name: str) -> str:
    return f"S3 client {name!r} is not installed (`make clients` installs it)"


def skip_module_without(name: str) -> None:
    """At import: skip the module when the client is missing and BP_TEST_ALLOW_MISSING_CLIENTS=1
    (before any cluster is started). Without that variable the tests run and fail instead."""
    if find_client(name) is None and os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(f"{_missing(name)}; skipped because {ALLOW_MISSING}=1", allow_module_level=True)


def client_binary(name: str) -> str:
    """The client's path; a missing client fails the test (CI must install every client)."""
    path = find_client(name)
    if path is None:
        if os.environ.get(ALLOW_MISSING) == "1":
            pytest.skip(f"{_missing(name)}; skipped because {ALLOW_MISSING}=1")
        pytest.fail(f"{_missing(name)}; set {ALLOW_MISSING}=1 to skip instead")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` (in 1 MiB chunks); return their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LocalFiles:
    root: Path
    sha: dict[str, str]  # relative path -> SHA-256
    sizes: dict[str, int]  # relative path -> size

    def assert_same_tree(self, other: Path) -> None:
        got = {
            p.relative_to(other).as_posix(): sha256_file(p)
            for p in sorted(other.rglob("*"))
            if p.is_file()
        }
        assert got == self.sha, f"downloaded tree {other} differs from {self.root}"


def make_files(root: Path, spec: dict[str, int]) -> LocalFiles:
    sha = {rel: write_random(root / rel, size) for rel, size in spec.items()}
    # An hour old: S3 listings give LastModified in whole seconds, and a sync tool (aws s3
    # sync) re-uploads a local file whose mtime is later than the remote copy's.
    past = time.time() - 3600
    for rel in spec:
        os.utime(root / rel, (past, past))
    return LocalFiles(root, sha, dict(spec))


@pytest.fixture
def small_files(tmp_path: Path) -> LocalFiles:
    return make_files(tmp_path / "small", SMALL_FILES)


@pytest.fixture
def tree(tmp_path: Path) -> LocalFiles:
    return make_files(tmp_path / "tree", TREE_FILES)


@dataclass(frozen=True)
class BigFile:
    path: Path
    sha: str
    size: int


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigFile]:
    """One file over 100 MiB per test module, deleted afterwards."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    sha = write_random(path, BIG_SIZE)
    yield BigFile(path, sha, BIG_SIZE)
    path.unlink(missing_ok=True)


def tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def run(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str],
    timeout: float = SMALL_TIMEOUT_S,
    check: bool = True,
    cwd: Path | None = None,
    stdout_to: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command; on an unexpected exit status fail with its output's tail.
    ``stdout_to``: write the (binary) standard output to that file instead of capturing it."""
    args = [str(a) for a in argv]
    try:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(stdout_to.open("wb")) if stdout_to else subprocess.PIPE
            raw = subprocess.run(
                args,
                env=env,
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.PIPE,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(
            f"timed out after {timeout}s: {' '.join(args)}\nstdout: {tail(out)}\n"
            f"stderr: {tail(err)}"
        ) from None
    done = subprocess.CompletedProcess(
        args,
        raw.returncode,
        raw.stdout.decode(errors="replace") if raw.stdout is not None else "",
        raw.stderr.decode(errors="replace"),
    )
    if check:
        assert done.returncode == 0, (
            f"exit {done.returncode}: {' '.join(args)}\n"
            f"stdout: {tail(done.stdout)}\nstderr: {tail(done.stderr)}"
        )
    return done


def base_env(home: Path) -> dict[str, str]:
    """A minimal environment: nothing from the machine's AWS/s3cmd/rclone setup leaks in."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(home),
    }

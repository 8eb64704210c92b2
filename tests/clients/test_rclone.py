"""rclone (Debian's package) with an S3 remote, provider = Other, from a config file in
tmp_path: `mkdir/copy/copyto/sync/ls/lsl/cat/check/delete/deletefile/purge`, and
`--s3-chunk-size 8M` multipart for the big file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import (
    BIG_TIMEOUT_S,
    NEWLINE_PREFIX,
    ODD_KEYS,
    BigFile,
    ClientTenant,
    LocalFiles,
    MiB,
    base_env,
    client_binary,
    run,
    sha256_file,
    skip_module_without,
)

pytestmark = pytest.mark.integration
skip_module_without("rclone")

Rclone = Callable[..., Any]
REMOTE = "bp"
# Multipart from 8 MiB on (rclone's default cutoff is 200 MiB), 8 MiB parts, 10 at a time.
MULTIPART_FLAGS = (
    "--s3-upload-cutoff",
    "8M",
    "--s3-chunk-size",
    "8M",
    "--s3-upload-concurrency",
    "10",
)


def rclone_config(tenant: ClientTenant) -> str:
    """The configuration documented in docs/s3-clients.md."""
    return (
        f"[{REMOTE}]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {tenant.access_key}\n"
        f"secret_access_key = {tenant.secret_key}\n"
        f"endpoint = {tenant.endpoint}\n"
        f"region = {tenant.region}\n"
    )


@pytest.fixture
def rclone(client_tenant: ClientTenant, tmp_path: Path) -> Rclone:
    binary = client_binary("rclone")
    home = tmp_path / "rclone-home"
    env = base_env(home)
    config = home / "rclone.conf"
    config.write_text(rclone_config(client_tenant))

    def call(
        *args: str | Path, timeout: float = 180, check: bool = True, stdout_to: Path | None = None
    ) -> Any:
        # No retries: a failing request must fail the command, not be papered over.
        flags = ["--config", config, "--retries", "1", "--low-level-retries", "1"]
        return run(
            [binary, *flags, *args],
            env=env,
            timeout=timeout,
            check=check,
            cwd=tmp_path,
            stdout_to=stdout_to,
        )

    return call


LS_LINE = re.compile(r"^\s*(\d+) (?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ )?(.+)$")


def ls_sizes(output: str) -> dict[str, int]:
    """`rclone ls` (``SIZE PATH``) or `rclone lsl` (``SIZE DATE TIME PATH``) -> {path: size}."""
    found: dict[str, int] = {}
    for line in output.splitlines():
        if match := LS_LINE.match(line):
            found[match.group(2)] = int(match.group(1))
    return found


def test_copy_ls_cat_check_delete_small_files(
    rclone: Rclone,
    client_tenant: ClientTenant,
    bucket: str,
    small_files: LocalFiles,
    tree: LocalFiles,
    tmp_path: Path,
) -> None:
    remote = f"{REMOTE}:{bucket}"
    rclone("mkdir", remote)
    assert client_tenant.bucket_exists(bucket)
    rclone("copy", small_files.root, f"{remote}/small")
    rclone("copy", tree.root, f"{remote}/tree")
    expected = {f"small/{rel}": size for rel, size in small_files.sizes.items()}
    expected |= {f"tree/{rel}": size for rel, size in tree.sizes.items()}
    assert client_tenant.keys(bucket) == expected
    assert ls_sizes(rclone("ls", remote).stdout) == expected
    assert ls_sizes(rclone("lsl", remote).stdout) == expected

    # cat: the bytes on standard output.
    cat = tmp_path / "cat.bin"
    rclone("cat", f"{remote}/small/100k.bin", stdout_to=cat)
    assert sha256_file(cat) == small_files.sha["100k.bin"]

    # check: sizes and MD5 hashes (the ETags) of both sides agree.
    rclone("check", small_files.root, f"{remote}/small")
    rclone("check", tree.root, f"{remote}/tree")

    down = tmp_path / "down"
    rclone("copy", f"{remote}/tree", down)
    tree.assert_same_tree(down)
    for rel, sha in small_files.sha.items():
        one = tmp_path / "one" / rel
        rclone("copyto", f"{remote}/small/{rel}", one)
        assert sha256_file(one) == sha, rel

    # copyto one file under a new name, then deletefile it.
    rclone("copyto", small_files.root / "one.bin", f"{remote}/renamed.bin")
    assert client_tenant.keys(bucket, "renamed") == {"renamed.bin": 1}
    rclone("deletefile", f"{remote}/renamed.bin")
    assert client_tenant.keys(bucket, "renamed") == {}

    # sync mirrors a local deletion.
    (tree.root / "a" / "one.txt").unlink()
    rclone("sync", tree.root, f"{remote}/tree")
    del expected["tree/a/one.txt"]
    assert client_tenant.keys(bucket) == expected

    # delete removes every object and keeps the bucket; purge removes the bucket too.
    rclone("delete", remote)
    assert client_tenant.keys(bucket) == {}
    assert client_tenant.bucket_exists(bucket)
    rclone("copyto", small_files.root / "one.bin", f"{remote}/last.bin")
    rclone("purge", remote)
    assert not client_tenant.bucket_exists(bucket)


def test_big_file_single_put_multi_thread_download(
    rclone: Rclone, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    """Below rclone's default 200 MiB upload cutoff: one PutObject. Downloaded by 4 streams
    of ranged GETs (multi-thread download from 8 MiB on)."""
    remote = f"{REMOTE}:{bucket}"
    rclone("mkdir", remote)
    rclone("copyto", big_file.path, f"{remote}/one.bin", timeout=BIG_TIMEOUT_S)
    assert ls_sizes(rclone("lsl", remote).stdout) == {"one.bin": big_file.size}
    assert "-" not in client_tenant.s3.head_object(Bucket=bucket, Key="one.bin")["ETag"]

    dest = tmp_path / "one.bin"
    rclone(
        "copyto",
        "--multi-thread-cutoff",
        "8M",
        "--multi-thread-streams",
        "4",
        f"{remote}/one.bin",
        dest,
        timeout=BIG_TIMEOUT_S,
    )
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    rclone("deletefile", f"{remote}/one.bin")
    assert client_tenant.keys(bucket) == {}
    rclone("purge", remote)


def test_big_file_multipart_8m_chunks(
    rclone: Rclone, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    remote = f"{REMOTE}:{bucket}"
    rclone("mkdir", remote)
    rclone("copyto", *MULTIPART_FLAGS, big_file.path, f"{remote}/big.bin", timeout=BIG_TIMEOUT_S)
    assert ls_sizes(rclone("lsl", remote).stdout) == {"big.bin": big_file.size}
    head = client_tenant.s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith(f"-{-(-big_file.size // (8 * MiB))}")

    dest = tmp_path / "big.bin"
    rclone("copyto", f"{remote}/big.bin", dest, timeout=BIG_TIMEOUT_S)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    rclone("deletefile", f"{remote}/big.bin")
    assert client_tenant.keys(bucket) == {}
    rclone("purge", remote)
    assert not client_tenant.bucket_exists(bucket)


def test_odd_keys_list_as_sent(rclone: Rclone, client_tenant: ClientTenant, bucket: str) -> None:
    """Issue 17: every printable ASCII character, and a prefix holding a newline."""
    client_tenant.put_odd_keys(bucket)
    # rclone shows a control character as its Unicode picture (a newline as U+240A).
    shown = [key.replace("\n", "\u240a") for key in ODD_KEYS]
    listed = json.loads(rclone("lsjson", "-R", "--files-only", f"{REMOTE}:{bucket}").stdout)
    assert sorted(e["Path"] for e in listed) == sorted(shown)
    prefix = NEWLINE_PREFIX.replace("\n", "\u240a")
    under = json.loads(rclone("lsjson", f"{REMOTE}:{bucket}/{prefix}").stdout)
    assert sorted(e["Name"] for e in under) == ["a+b c", "x%y"]

"""s3cmd (`.venv-clients/bin/s3cmd`) with a config file in tmp_path: path-style, plain HTTP,
SigV4. `mb/put/ls/get/del/rb`, `sync`, and `--multipart-chunk-size-mb=8` for the big file."""

from __future__ import annotations

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
    base_env,
    client_binary,
    run,
    sha256_file,
    skip_module_without,
)

pytestmark = pytest.mark.integration
skip_module_without("s3cmd")

S3cmd = Callable[..., Any]


def s3cmd_config(tenant: ClientTenant) -> str:
    """The configuration documented in docs/s3-clients.md."""
    return (
        "[default]\n"
        f"access_key = {tenant.access_key}\n"
        f"secret_key = {tenant.secret_key}\n"
        f"host_base = {tenant.hostport}\n"
        f"host_bucket = {tenant.hostport}\n"  # no %(bucket)s: path-style requests
        f"bucket_location = {tenant.region}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
    )


@pytest.fixture
def s3cmd(client_tenant: ClientTenant, tmp_path: Path) -> S3cmd:
    binary = client_binary("s3cmd")
    home = tmp_path / "s3cmd-home"
    env = base_env(home)
    config = home / "s3cfg"
    config.write_text(s3cmd_config(client_tenant))

    def call(*args: str | Path, timeout: float = 180, check: bool = True) -> Any:
        return run(
            [binary, "-c", config, *args], env=env, timeout=timeout, check=check, cwd=tmp_path
        )

    return call


def ls_sizes(output: str, bucket: str) -> dict[str, int]:
    """`s3cmd ls` lines ``DATE TIME SIZE s3://bucket/key`` -> {key: size}."""
    found: dict[str, int] = {}
    prefix = f"s3://{bucket}/"
    for line in output.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2].isdigit() and fields[3].startswith(prefix):
            found[fields[3][len(prefix) :]] = int(fields[2])
    return found


def test_put_ls_get_del_small_files(
    s3cmd: S3cmd,
    client_tenant: ClientTenant,
    bucket: str,
    small_files: LocalFiles,
    tmp_path: Path,
) -> None:
    s3cmd("mb", f"s3://{bucket}")
    assert f"s3://{bucket}" in s3cmd("ls").stdout
    for rel in small_files.sha:
        s3cmd("put", small_files.root / rel, f"s3://{bucket}/small/{rel}")

    expected = {f"small/{rel}": size for rel, size in small_files.sizes.items()}
    assert ls_sizes(s3cmd("ls", f"s3://{bucket}/small/").stdout, bucket) == expected
    assert client_tenant.keys(bucket) == expected

    for rel, sha in small_files.sha.items():
        dest = tmp_path / "down" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3cmd("get", "--force", f"s3://{bucket}/small/{rel}", dest)
        assert sha256_file(dest) == sha, rel

    for rel in small_files.sha:
        s3cmd("del", f"s3://{bucket}/small/{rel}")
    assert ls_sizes(s3cmd("ls", "--recursive", f"s3://{bucket}").stdout, bucket) == {}
    assert client_tenant.keys(bucket) == {}
    s3cmd("rb", f"s3://{bucket}")
    assert not client_tenant.bucket_exists(bucket)


def test_sync_nested_tree(
    s3cmd: S3cmd, client_tenant: ClientTenant, bucket: str, tree: LocalFiles, tmp_path: Path
) -> None:
    s3cmd("mb", f"s3://{bucket}")
    s3cmd("sync", f"{tree.root}/", f"s3://{bucket}/tree/")
    expected = {f"tree/{rel}": size for rel, size in tree.sizes.items()}
    assert client_tenant.keys(bucket) == expected
    assert ls_sizes(s3cmd("ls", "--recursive", f"s3://{bucket}").stdout, bucket) == expected

    down = tmp_path / "synced"
    down.mkdir()
    s3cmd("sync", f"s3://{bucket}/tree/", f"{down}/")
    tree.assert_same_tree(down)

    (tree.root / "a" / "one.txt").unlink()
    s3cmd("sync", "--delete-removed", f"{tree.root}/", f"s3://{bucket}/tree/")
    del expected["tree/a/one.txt"]
    assert client_tenant.keys(bucket) == expected

    s3cmd("del", "--recursive", "--force", f"s3://{bucket}/tree/")
    assert client_tenant.keys(bucket) == {}
    s3cmd("rb", f"s3://{bucket}")


def test_big_file_single_put(
    s3cmd: S3cmd, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    s3cmd("mb", f"s3://{bucket}")
    s3cmd(
        "put",
        "--disable-multipart",
        big_file.path,
        f"s3://{bucket}/one.bin",
        timeout=BIG_TIMEOUT_S,
    )
    assert ls_sizes(s3cmd("ls", f"s3://{bucket}").stdout, bucket) == {"one.bin": big_file.size}
    dest = tmp_path / "one.bin"
    s3cmd("get", f"s3://{bucket}/one.bin", dest, timeout=BIG_TIMEOUT_S)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()
    s3cmd("del", f"s3://{bucket}/one.bin")
    assert client_tenant.keys(bucket) == {}
    s3cmd("rb", f"s3://{bucket}")


def test_big_file_multipart_8mib_chunks(
    s3cmd: S3cmd, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    s3cmd("mb", f"s3://{bucket}")
    s3cmd(
        "put",
        "--multipart-chunk-size-mb=8",
        big_file.path,
        f"s3://{bucket}/big.bin",
        timeout=BIG_TIMEOUT_S,
    )
    assert ls_sizes(s3cmd("ls", f"s3://{bucket}").stdout, bucket) == {"big.bin": big_file.size}
    head = client_tenant.s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith(f"-{-(-big_file.size // (8 * 1024 * 1024))}")

    dest = tmp_path / "big.bin"
    s3cmd("get", f"s3://{bucket}/big.bin", dest, timeout=BIG_TIMEOUT_S)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    s3cmd("del", f"s3://{bucket}/big.bin")
    assert client_tenant.keys(bucket) == {}
    s3cmd("rb", f"s3://{bucket}")


def test_odd_keys_list_as_sent(s3cmd: S3cmd, client_tenant: ClientTenant, bucket: str) -> None:
    """Issue 17: every printable ASCII character, and a prefix holding a newline."""
    client_tenant.put_odd_keys(bucket)
    listed = s3cmd("ls", "-r", f"s3://{bucket}").stdout
    for key in ODD_KEYS:
        assert f"s3://{bucket}/{key}\n" in listed, (key, listed)
    # s3cmd's URI parser stops at a newline, so the prefix it can name is "nl": the common
    # prefix holding the newline comes back intact.
    under = s3cmd("ls", f"s3://{bucket}/nl").stdout
    assert f"DIR  s3://{bucket}/{NEWLINE_PREFIX}\n" in under, under

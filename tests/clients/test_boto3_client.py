"""boto3 with s3transfer (upload_file/download_file): multipart with 8 MiB parts, 10 threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.clients.conftest import BigFile, ClientTenant, LocalFiles, MiB, sha256_file
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

MULTIPART = TransferConfig(
    multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10
)
# Same transfer settings, but the upload stays one PutObject (threshold above the file).
SINGLE_PUT = TransferConfig(
    multipart_threshold=5 * 1024 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10
)


def s3_client(cluster: Federation, tenant: ClientTenant) -> Any:
    # 10 transfer threads need 10 pooled connections (botocore's default pool is 10).
    return cluster.s3(tenant.access_key, tenant.secret_key, max_pool_connections=20)


def test_small_files_upload_list_download_delete(
    cluster: Federation,
    client_tenant: ClientTenant,
    bucket: str,
    small_files: LocalFiles,
    tmp_path: Path,
) -> None:
    s3 = s3_client(cluster, client_tenant)
    s3.create_bucket(Bucket=bucket)
    for rel in small_files.sha:
        s3.upload_file(str(small_files.root / rel), bucket, f"small/{rel}", Config=MULTIPART)

    listed = client_tenant.keys(bucket)
    assert listed == {f"small/{rel}": size for rel, size in small_files.sizes.items()}

    for rel, sha in small_files.sha.items():
        dest = tmp_path / "down" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, f"small/{rel}", str(dest), Config=MULTIPART)
        assert sha256_file(dest) == sha, rel

    for rel in small_files.sha:
        s3.delete_object(Bucket=bucket, Key=f"small/{rel}")
    assert client_tenant.keys(bucket) == {}
    s3.delete_bucket(Bucket=bucket)
    assert not client_tenant.bucket_exists(bucket)


def test_big_file_single_put_parallel_ranged_download(
    cluster: Federation,
    client_tenant: ClientTenant,
    bucket: str,
    big_file: BigFile,
    tmp_path: Path,
) -> None:
    """One PutObject of the big file, then s3transfer's download: 10 threads of 8 MiB
    ranged GETs, reassembled byte for byte."""
    s3 = s3_client(cluster, client_tenant)
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(big_file.path), bucket, "big-single.bin", Config=SINGLE_PUT)
    head = s3.head_object(Bucket=bucket, Key="big-single.bin")
    assert head["ContentLength"] == big_file.size
    assert "-" not in head["ETag"]  # one PutObject: not a multipart ETag

    dest = tmp_path / "big-single.bin"
    s3.download_file(bucket, "big-single.bin", str(dest), Config=MULTIPART)
    assert dest.stat().st_size == big_file.size
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    s3.delete_object(Bucket=bucket, Key="big-single.bin")
    assert client_tenant.keys(bucket) == {}


def test_big_file_multipart_upload_8mib_parts_concurrency_10(
    cluster: Federation,
    client_tenant: ClientTenant,
    bucket: str,
    big_file: BigFile,
    tmp_path: Path,
) -> None:
    s3 = s3_client(cluster, client_tenant)
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(big_file.path), bucket, "dir/big.bin", Config=MULTIPART)

    parts = -(-big_file.size // (8 * MiB))
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == big_file.size
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # S3's multipart ETag: md5-of-md5s-N
    assert client_tenant.keys(bucket) == {"dir/big.bin": big_file.size}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    dest = tmp_path / "big.bin"
    s3.download_file(bucket, "dir/big.bin", str(dest), Config=MULTIPART)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    s3.delete_object(Bucket=bucket, Key="dir/big.bin")
    assert client_tenant.keys(bucket) == {}
    s3.delete_bucket(Bucket=bucket)

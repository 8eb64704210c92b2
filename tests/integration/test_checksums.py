"""x-amz-checksum-* for every algorithm the issue names, through boto3: verified on the way
in, stored, returned with x-amz-checksum-mode: ENABLED; a wrong value is 400 BadDigest."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _b64(value: int | bytes, width: int = 4) -> str:
    raw = value if isinstance(value, bytes) else value.to_bytes(width, "big")
    return base64.b64encode(raw).decode()


EXPECTED = {
    "CRC32": lambda d: _b64(zlib.crc32(d)),
    "CRC32C": lambda d: _b64(crt.crc32c(d)),
    "SHA1": lambda d: _b64(hashlib.sha1(d).digest()),  # noqa: S324 - the S3 checksum
    "SHA256": lambda d: _b64(hashlib.sha256(d).digest()),
}


@pytest.fixture
def s3(cluster: Federation, bucket_name: str) -> Any:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    client = cluster.s3(key, secret)
    client.create_bucket(Bucket=bucket_name)
    return client


@pytest.mark.parametrize("algorithm", sorted(EXPECTED))
def test_checksum_is_verified_stored_and_returned(
    s3: Any, bucket_name: str, algorithm: str
) -> None:
    data = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket_name, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = s3.get_object(Bucket=bucket_name, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algorithm}"] == EXPECTED[algorithm](data)
    head = s3.head_object(Bucket=bucket_name, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == EXPECTED[algorithm](data)


def test_wrong_crc32c_is_bad_digest_and_stores_nothing(s3: Any, bucket_name: str) -> None:
    with pytest.raises(ClientError) as refused:
        s3.put_object(
            Bucket=bucket_name, Key="bad", Body=b"payload", ChecksumCRC32C=_b64(crt.crc32c(b"x"))
        )
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0


def test_multipart_crc32c_is_composite(s3: Any, bucket_name: str) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(1000)]
    upload = s3.create_multipart_upload(Bucket=bucket_name, Key="mp", ChecksumAlgorithm="CRC32C")
    listed = []
    for number, body in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket_name,
            Key="mp",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32C",
        )
        assert answer["ChecksumCRC32C"] == _b64(crt.crc32c(body))
        listed.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumCRC32C": answer["ChecksumCRC32C"],
            }
        )
    s3.complete_multipart_upload(
        Bucket=bucket_name, Key="mp", UploadId=upload["UploadId"], MultipartUpload={"Parts": listed}
    )
    head = s3.head_object(Bucket=bucket_name, Key="mp", ChecksumMode="ENABLED")
    joined = b"".join(crt.crc32c(p).to_bytes(4, "big") for p in parts)
    assert head["ChecksumCRC32C"] == f"{_b64(crt.crc32c(joined))}-2"
    got = s3.get_object(Bucket=bucket_name, Key="mp")["Body"].read()
    assert got == b"".join(parts)

"""The AWS CLI v1 (`.venv-clients/bin/aws`): `aws s3 mb/cp/sync/ls/rm/rb` and `aws s3api` for
versioning and the multipart calls. Config and credentials come only from tmp_path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
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
    write_random,
)

pytestmark = pytest.mark.integration
skip_module_without("aws")

Aws = Callable[..., Any]


@pytest.fixture
def aws(client_tenant: ClientTenant, tmp_path: Path) -> Aws:
    """``aws(*args, timeout=..., check=True, parse=False)``: runs the CLI against the gateway;
    with ``parse`` returns the JSON output, else the CompletedProcess."""
    binary = client_binary("aws")
    home = tmp_path / "aws-home"
    env = base_env(home)
    config = home / "config"
    config.write_text(
        "[default]\n"
        f"region = {client_tenant.region}\n"
        "output = json\n"
        "s3 =\n"
        "    addressing_style = path\n"
        "    multipart_threshold = 8MB\n"
        "    multipart_chunksize = 8MB\n"
        "    max_concurrent_requests = 10\n"
        "    signature_version = s3v4\n"  # `aws s3 presign` defaults to SigV2 otherwise
    )
    env.update(
        AWS_ACCESS_KEY_ID=client_tenant.access_key,
        AWS_SECRET_ACCESS_KEY=client_tenant.secret_key,
        AWS_DEFAULT_REGION=client_tenant.region,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        AWS_MAX_ATTEMPTS="1",
    )

    def call(*args: str | Path, timeout: float = 180, check: bool = True, parse: bool = False):
        done = run(
            [binary, "--endpoint-url", client_tenant.endpoint, *args],
            env=env,
            timeout=timeout,
            check=check,
            cwd=tmp_path,
        )
        if parse:
            return json.loads(done.stdout) if done.stdout.strip() else {}
        return done

    return call


def ls_sizes(output: str) -> dict[str, int]:
    """`aws s3 ls [--recursive]` lines ``DATE TIME SIZE KEY`` -> {key: size}."""
    found: dict[str, int] = {}
    for line in output.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2].isdigit():
            found[fields[3]] = int(fields[2])
    return found


def test_s3_cp_ls_rm_small_files(
    aws: Aws,
    client_tenant: ClientTenant,
    bucket: str,
    small_files: LocalFiles,
    tmp_path: Path,
) -> None:
    aws("s3", "mb", f"s3://{bucket}")
    assert bucket in aws("s3", "ls").stdout
    for rel in small_files.sha:
        aws("s3", "cp", small_files.root / rel, f"s3://{bucket}/small/{rel}")

    assert ls_sizes(aws("s3", "ls", f"s3://{bucket}/small/").stdout) == small_files.sizes
    assert client_tenant.keys(bucket) == {
        f"small/{rel}": size for rel, size in small_files.sizes.items()
    }

    for rel, sha in small_files.sha.items():
        dest = tmp_path / "down" / rel
        aws("s3", "cp", f"s3://{bucket}/small/{rel}", dest)
        assert sha256_file(dest) == sha, rel

    for rel in small_files.sha:
        aws("s3", "rm", f"s3://{bucket}/small/{rel}")
    assert aws("s3", "ls", f"s3://{bucket}/", "--recursive").stdout.strip() == ""
    assert client_tenant.keys(bucket) == {}
    aws("s3", "rb", f"s3://{bucket}")
    assert not client_tenant.bucket_exists(bucket)


def test_s3_cp_standard_headers_and_metadata(
    aws: Aws, client_tenant: ClientTenant, bucket: str, tmp_path: Path
) -> None:
    """What `aws s3 cp` sets on upload comes back on HEAD, as from S3."""
    aws("s3", "mb", f"s3://{bucket}")
    write_random(tmp_path / "page.html", 300)
    aws(
        "s3",
        "cp",
        "page.html",
        f"s3://{bucket}/page.html",
        "--content-type",
        "text/html",
        "--cache-control",
        "max-age=60",
        "--content-disposition",
        'attachment; filename="page.html"',
        "--content-language",
        "de",
        "--metadata",
        "colour=blue",
    )
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "page.html", parse=True)
    assert head["ContentLength"] == 300
    assert head["Metadata"] == {"colour": "blue"}
    assert head["ContentType"] == "text/html"
    assert head.get("CacheControl") == "max-age=60", f"{head}"
    assert head.get("ContentDisposition") == 'attachment; filename="page.html"', f"{head}"
    assert head.get("ContentLanguage") == "de", f"{head}"
    aws("s3", "rm", f"s3://{bucket}/page.html")
    assert client_tenant.keys(bucket) == {}


def test_s3_presign_sigv4(
    aws: Aws, client_tenant: ClientTenant, bucket: str, small_files: LocalFiles
) -> None:
    """`aws s3 presign` (SigV4, as configured) gives a URL any HTTP client can GET."""
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", small_files.root / "100k.bin", f"s3://{bucket}/shared.bin")
    url = aws("s3", "presign", f"s3://{bucket}/shared.bin", "--expires-in", "300").stdout
    assert "X-Amz-Signature=" in url, url
    response = httpx.get(url.strip(), timeout=60)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == small_files.sha["100k.bin"]
    aws("s3", "rm", f"s3://{bucket}/shared.bin")
    assert client_tenant.keys(bucket) == {}


def test_s3_presign_default_sigv2(
    aws: Aws, client_tenant: ClientTenant, bucket: str, small_files: LocalFiles, tmp_path: Path
) -> None:
    """`aws s3 presign` without a signature_version setting makes a SigV2 URL for us-east-1
    (issue 17); the gateway accepts it."""
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", small_files.root / "100k.bin", f"s3://{bucket}/v2.bin")
    home = tmp_path / "aws-v2-home"
    env = base_env(home)
    (home / "config").write_text("[default]\nregion = us-east-1\n")
    env.update(
        AWS_ACCESS_KEY_ID=client_tenant.access_key,
        AWS_SECRET_ACCESS_KEY=client_tenant.secret_key,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    done = run(
        [client_binary("aws"), "--endpoint-url", client_tenant.endpoint, "s3", "presign"]
        + [f"s3://{bucket}/v2.bin", "--expires-in", "300"],
        env=env,
        timeout=180,
        check=True,
        cwd=tmp_path,
    )
    url = done.stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url, url
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == small_files.sha["100k.bin"]
    aws("s3", "rm", f"s3://{bucket}/v2.bin")


def test_s3_sync_nested_tree(
    aws: Aws, client_tenant: ClientTenant, bucket: str, tree: LocalFiles, tmp_path: Path
) -> None:
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "sync", tree.root, f"s3://{bucket}/tree/")
    expected = {f"tree/{rel}": size for rel, size in tree.sizes.items()}
    assert client_tenant.keys(bucket) == expected
    assert ls_sizes(aws("s3", "ls", f"s3://{bucket}/", "--recursive").stdout) == expected

    # Nothing changed: a second sync transfers nothing.
    again = aws("s3", "sync", tree.root, f"s3://{bucket}/tree/")
    assert again.stdout.strip() == "", again.stdout

    down = tmp_path / "synced"
    aws("s3", "sync", f"s3://{bucket}/tree/", down)
    tree.assert_same_tree(down)

    # A file removed locally is removed remotely with --delete.
    (tree.root / "a" / "one.txt").unlink()
    aws("s3", "sync", tree.root, f"s3://{bucket}/tree/", "--delete")
    del expected["tree/a/one.txt"]
    assert client_tenant.keys(bucket) == expected

    aws("s3", "rm", f"s3://{bucket}/tree/", "--recursive")
    assert client_tenant.keys(bucket) == {}
    aws("s3", "rb", f"s3://{bucket}")


def test_s3_cp_big_file_multipart(
    aws: Aws, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", big_file.path, f"s3://{bucket}/big.bin", timeout=BIG_TIMEOUT_S)
    assert ls_sizes(aws("s3", "ls", f"s3://{bucket}/").stdout) == {"big.bin": big_file.size}
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "big.bin", parse=True)
    assert head["ContentLength"] == big_file.size
    assert head["ETag"].strip('"').endswith(f"-{-(-big_file.size // (8 * MiB))}")

    dest = tmp_path / "big.bin"
    aws("s3", "cp", f"s3://{bucket}/big.bin", dest, timeout=BIG_TIMEOUT_S)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    aws("s3", "rm", f"s3://{bucket}/big.bin")
    assert client_tenant.keys(bucket) == {}
    aws("s3", "rb", f"s3://{bucket}")


def test_big_file_single_put_then_parallel_ranged_cp_download(
    aws: Aws, client_tenant: ClientTenant, bucket: str, big_file: BigFile, tmp_path: Path
) -> None:
    """`aws s3api put-object` (one request, no multipart), then `aws s3 cp` down: the CLI
    fetches an object over the multipart threshold as concurrent 8 MiB ranged GETs."""
    aws("s3", "mb", f"s3://{bucket}")
    put = aws(
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "one-put.bin",
        "--body",
        big_file.path,
        timeout=BIG_TIMEOUT_S,
        parse=True,
    )
    assert "-" not in put["ETag"]
    assert ls_sizes(aws("s3", "ls", f"s3://{bucket}").stdout) == {"one-put.bin": big_file.size}

    dest = tmp_path / "one-put.bin"
    aws("s3", "cp", f"s3://{bucket}/one-put.bin", dest, timeout=BIG_TIMEOUT_S)
    assert sha256_file(dest) == big_file.sha
    dest.unlink()

    aws("s3", "rm", f"s3://{bucket}/one-put.bin")
    assert client_tenant.keys(bucket) == {}
    aws("s3", "rb", f"s3://{bucket}")


def test_s3api_versioning(
    aws: Aws, client_tenant: ClientTenant, bucket: str, tmp_path: Path
) -> None:
    aws("s3api", "create-bucket", "--bucket", bucket)
    before = aws("s3api", "get-bucket-versioning", "--bucket", bucket, parse=True)
    assert "Status" not in before  # never enabled
    aws(
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        bucket,
        "--versioning-configuration",
        "Status=Enabled",
    )
    status = aws("s3api", "get-bucket-versioning", "--bucket", bucket, parse=True)
    assert status["Status"] == "Enabled"

    v1_sha = write_random(tmp_path / "v1.bin", 1000)
    v2_sha = write_random(tmp_path / "v2.bin", 2000)
    put1 = aws(
        "s3api", "put-object", "--bucket", bucket, "--key", "doc", "--body", "v1.bin", parse=True
    )
    put2 = aws(
        "s3api", "put-object", "--bucket", bucket, "--key", "doc", "--body", "v2.bin", parse=True
    )
    v1, v2 = put1["VersionId"], put2["VersionId"]
    assert v1 and v2 and v1 != v2

    listed = aws("s3api", "list-object-versions", "--bucket", bucket, parse=True)
    versions = {v["VersionId"]: v for v in listed["Versions"]}
    assert set(versions) == {v1, v2}
    assert versions[v1]["Size"] == 1000 and not versions[v1]["IsLatest"]
    assert versions[v2]["Size"] == 2000 and versions[v2]["IsLatest"]

    aws("s3api", "get-object", "--bucket", bucket, "--key", "doc", "--version-id", v1, "old.bin")
    assert sha256_file(tmp_path / "old.bin") == v1_sha
    aws("s3api", "get-object", "--bucket", bucket, "--key", "doc", "new.bin")
    assert sha256_file(tmp_path / "new.bin") == v2_sha

    # A plain delete leaves a delete marker; the key disappears from listings.
    deleted = aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc", parse=True)
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert client_tenant.keys(bucket) == {}
    listed = aws("s3api", "list-object-versions", "--bucket", bucket, parse=True)
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker]
    assert {v["VersionId"] for v in listed["Versions"]} == {v1, v2}
    gone = aws("s3api", "head-object", "--bucket", bucket, "--key", "doc", check=False)
    assert gone.returncode != 0 and "404" in gone.stderr, gone.stderr

    # Deleting the marker brings v2 back; deleting every version empties the bucket.
    aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc", "--version-id", marker)
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "doc", parse=True)
    assert head["VersionId"] == v2 and head["ContentLength"] == 2000
    for version in (v1, v2):
        aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc", "--version-id", version)
    listed = aws("s3api", "list-object-versions", "--bucket", bucket, parse=True)
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
    assert client_tenant.keys(bucket) == {}

    aws(
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        bucket,
        "--versioning-configuration",
        "Status=Suspended",
    )
    status = aws("s3api", "get-bucket-versioning", "--bucket", bucket, parse=True)
    assert status["Status"] == "Suspended"
    aws("s3api", "delete-bucket", "--bucket", bucket)


def test_s3api_multipart_upload_and_abort(
    aws: Aws, client_tenant: ClientTenant, bucket: str, tmp_path: Path
) -> None:
    aws("s3api", "create-bucket", "--bucket", bucket)
    part1_sha = write_random(tmp_path / "part1.bin", 8 * MiB)
    part2_sha = write_random(tmp_path / "part2.bin", 3 * MiB + 7)

    created = aws(
        "s3api", "create-multipart-upload", "--bucket", bucket, "--key", "mp/obj", parse=True
    )
    upload_id = created["UploadId"]
    assert created["Key"] == "mp/obj" and upload_id
    uploads = aws("s3api", "list-multipart-uploads", "--bucket", bucket, parse=True)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == [("mp/obj", upload_id)]

    etags = []
    for number, body in ((1, "part1.bin"), (2, "part2.bin")):
        part = aws(
            "s3api",
            "upload-part",
            "--bucket",
            bucket,
            "--key",
            "mp/obj",
            "--upload-id",
            upload_id,
            "--part-number",
            str(number),
            "--body",
            body,
            parse=True,
        )
        etags.append(part["ETag"])

    parts = aws(
        "s3api",
        "list-parts",
        "--bucket",
        bucket,
        "--key",
        "mp/obj",
        "--upload-id",
        upload_id,
        parse=True,
    )
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]] == [
        (1, 8 * MiB, etags[0]),
        (2, 3 * MiB + 7, etags[1]),
    ]
    # Not visible before completion.
    assert client_tenant.keys(bucket) == {}

    manifest = tmp_path / "parts.json"
    manifest.write_text(
        json.dumps({"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    )
    done = aws(
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        bucket,
        "--key",
        "mp/obj",
        "--upload-id",
        upload_id,
        "--multipart-upload",
        f"file://{manifest}",
        parse=True,
    )
    assert done["Key"] == "mp/obj" and done["ETag"].strip('"').endswith("-2")
    assert client_tenant.keys(bucket) == {"mp/obj": 11 * MiB + 7}
    uploads = aws("s3api", "list-multipart-uploads", "--bucket", bucket, parse=True)
    assert uploads.get("Uploads", []) == []

    aws("s3api", "get-object", "--bucket", bucket, "--key", "mp/obj", "whole.bin")
    whole = (tmp_path / "whole.bin").read_bytes()
    assert len(whole) == 11 * MiB + 7
    assert sha256_file(tmp_path / "part1.bin") == part1_sha
    assert whole == (tmp_path / "part1.bin").read_bytes() + (tmp_path / "part2.bin").read_bytes()
    assert sha256_file(tmp_path / "part2.bin") == part2_sha

    # An aborted upload leaves nothing behind.
    other = aws(
        "s3api", "create-multipart-upload", "--bucket", bucket, "--key", "mp/gone", parse=True
    )["UploadId"]
    aws(
        "s3api",
        "upload-part",
        "--bucket",
        bucket,
        "--key",
        "mp/gone",
        "--upload-id",
        other,
        "--part-number",
        "1",
        "--body",
        "part2.bin",
    )
    aws(
        "s3api",
        "abort-multipart-upload",
        "--bucket",
        bucket,
        "--key",
        "mp/gone",
        "--upload-id",
        other,
    )
    uploads = aws("s3api", "list-multipart-uploads", "--bucket", bucket, parse=True)
    assert uploads.get("Uploads", []) == []
    missing = aws(
        "s3api",
        "list-parts",
        "--bucket",
        bucket,
        "--key",
        "mp/gone",
        "--upload-id",
        other,
        check=False,
    )
    assert missing.returncode != 0 and "NoSuchUpload" in missing.stderr, missing.stderr

    aws("s3api", "delete-object", "--bucket", bucket, "--key", "mp/obj")
    assert client_tenant.keys(bucket) == {}
    aws("s3api", "delete-bucket", "--bucket", bucket)


def test_odd_keys_list_as_sent(aws: Aws, client_tenant: ClientTenant, bucket: str) -> None:
    """Issue 17: every printable ASCII character, and a prefix holding a newline, through
    ListObjects v1, v2 and ListObjectVersions (the CLI asks for encoding-type=url)."""
    client_tenant.put_odd_keys(bucket)
    for command in ("list-objects", "list-objects-v2"):
        every = aws("s3api", command, "--bucket", bucket, parse=True)
        assert sorted(o["Key"] for o in every["Contents"]) == sorted(ODD_KEYS)
        page = aws(
            "s3api",
            command,
            "--bucket",
            bucket,
            "--prefix",
            "nl\n",
            "--delimiter",
            "/",
            "--no-paginate",
            parse=True,
        )
        assert page["Prefix"] == "nl\n" and page["Delimiter"] == "/"
        assert [p["Prefix"] for p in page["CommonPrefixes"]] == [NEWLINE_PREFIX]
    versions = aws(
        "s3api",
        "list-object-versions",
        "--bucket",
        bucket,
        "--prefix",
        NEWLINE_PREFIX,
        parse=True,
    )
    assert versions["Prefix"] == NEWLINE_PREFIX
    assert sorted(v["Key"] for v in versions["Versions"]) == sorted(ODD_KEYS[1:])
    listed = aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout
    assert PRINTABLE_KEY_TAIL in listed


PRINTABLE_KEY_TAIL = ODD_KEYS[0].rsplit("/", 1)[-1]

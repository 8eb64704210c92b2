"""The secret scan (issue 14): at the very end of the session (``scan_last``), every secret
the run created is looked for in the gateway's logs, the database and Redis; none may be
there.

Secrets collected:
- never stored in clear anywhere: every tenant secret key the database holds (opened from its
  sealed form with the master key, so keys any test created are included), the bootstrap
  admin token, the master key itself, and every passphrase a test module of this session
  defined (``*PASSPHRASE*`` constants of the loaded ``tests.*`` modules);
- never logged: every wrapped data key the run stored (they are metadata, so the database and
  the cache hold them by design, but no log may).

Places: every file under the Ray session's log directory (Serve replicas, actors, workers,
raylet) and under the federation's state directory except the two files that are the home of
the master key and the admin token; ``pg_dump --data-only`` of the run's database (needles
searched as text and as the hex ``bytea`` form); every Redis key with its value, read by type.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core.sealing import MasterKey
from tests.support.cluster import Federation
from tests.support.envelopes import bp1_header, fake_envelope
from tests.support.raw_s3 import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.scan_last]

_CHUNK = 8 * 1024 * 1024


def _needles(secrets: Iterable[str]) -> list[bytes]:
    out = set()
    for secret in secrets:
        if len(secret) >= 12:  # shorter strings are not secrets a test made (and match noise)
            out.add(secret.encode())
            out.add(secret.encode().hex().encode())  # how pg_dump writes a bytea
    return sorted(out)


def _pattern(needles: list[bytes]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(n) for n in needles))


def _files(root: Path, skip: set[Path]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path not in skip:
            yield path


def _find_in_file(path: Path, pattern: re.Pattern[bytes], overlap: int) -> bytes | None:
    """The first needle in ``path``, read in chunks that overlap by the longest needle."""
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            window = tail + chunk
            found = pattern.search(window)
            if found:
                return found.group(0)
            tail = window[-overlap:]
    return None


def _redis_values(client: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"list":
            values = list(client.lrange(key, 0, -1))
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        yield key, key
        for value in values:
            yield key, value


def _passphrases() -> set[str]:
    found = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("tests."):
            continue
        for attr, value in vars(module).items():
            if "PASSPHRASE" in attr and isinstance(value, str):
                found.add(value)
    return found


def _ray_logs_dir() -> Path:
    import ray

    node = ray._private.worker._global_node  # the session this test process started
    assert node is not None, "the federation's Ray session is not running in this process"
    return Path(node.get_logs_dir_path())


def test_no_secret_of_the_run_is_in_logs_database_or_redis(cluster: Federation) -> None:
    # This test's own traffic, so the scan has something to find even when run alone: a
    # tenant (its secret key), a write with a wrapped key sent in a header, a failed login.
    tenant = Tenant.create(cluster)
    tenant.s3.create_bucket(Bucket="scan-bucket")
    envelope = fake_envelope()
    body = bp1_header(0) + bytes(16)
    put = tenant.raw(
        "PUT",
        "/objects/scan-bucket/obj",
        body=body,
        headers={
            "X-Encrypted-Key": envelope["bp-wrapped-key"],
            "X-Key-Id": envelope["bp-key-id"],
            "X-Key-Version": envelope["bp-key-version"],
            "X-Encryption-Alg": envelope["bp-wrap-alg"],
        },
    )
    assert put.status_code == 200, put.text
    wrong = httpx.get(
        f"{cluster.endpoint}/admin/backends",
        headers={"Authorization": f"Bearer {cluster.admin_token}x"},
        timeout=30,
    )
    assert wrong.status_code in (401, 403)

    settings = cluster.settings
    master_text = settings.master_key_path.read_text()
    master = MasterKey.from_file_text(master_text)
    rows = cluster.sql("SELECT access_key_id, sealed_secret FROM access_keys")
    tenant_secrets = {master.open(bytes(r["sealed_secret"])).decode() for r in rows}
    assert tenant.secret in tenant_secrets
    never_stored = {
        *tenant_secrets,
        cluster.admin_token,
        *(line.strip() for line in master_text.splitlines() if line.strip()),
        *_passphrases(),
    }
    wrapped = {
        base64.b64encode(bytes(r["wrapped_key"])).decode()
        for r in cluster.sql(
            "SELECT wrapped_key FROM object_versions WHERE wrapped_key IS NOT NULL"
        )
    }
    assert envelope["bp-wrapped-key"] in wrapped

    stored_needles = _needles(never_stored)
    logged_needles = _needles(never_stored | wrapped)
    overlap = max(len(n) for n in logged_needles)

    # Logs: the Ray session's and the state directory's (minus the secrets' own files).
    logs_pattern = _pattern(logged_needles)
    # Positive control: the skipped files are where the token and the master key live.
    assert _find_in_file(settings.admin_token_path, logs_pattern, overlap) is not None
    assert _find_in_file(settings.master_key_path, logs_pattern, overlap) is not None
    skip = {settings.master_key_path, settings.admin_token_path}
    scanned = 0
    for root in (_ray_logs_dir(), settings.state_path):
        for path in _files(root, skip):
            scanned += 1
            found = _find_in_file(path, logs_pattern, overlap)
            assert found is None, f"a secret is in {path}: {found[:12]!r}..."
    assert scanned > 10

    # The database, as pg_dump writes it.
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", settings.database_url],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    assert b"COPY public.access_keys" in dump
    assert _pattern(_needles([tenant.key])).search(dump)  # control: key ids are in clear
    found_db = _pattern(stored_needles).search(dump)
    assert found_db is None, f"a secret is in the database dump: {found_db.group(0)[:12]!r}..."

    # Redis: every key and value.
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        stored_pattern = _pattern(stored_needles)
        entries = 0
        for key, value in _redis_values(client):
            entries += 1
            assert stored_pattern.search(value) is None, f"a secret is in Redis under {key!r}"
        assert entries > 0
    finally:
        client.close()

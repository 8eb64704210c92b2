"""The ``bp`` CLI against a real federation: round trips, ranges, listing, and the promises
that matter most: plaintext never leaves the client (backends, PostgreSQL, Redis, logs), a
swapped object is refused with exit 5 and leaves no file, a wrong key or passphrase is a clean
exit 6.

Most cases call ``client.cli.main`` in-process with the environment set by monkeypatch (fast);
a few run the installed ``.venv/bin/bp`` console script end to end. All CLI integration tests
live in this one module because the cluster fixture is slow to start.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from client import PublicKeyRef, seal
from client.cli import main
from client.keyring import Keyring
from tests.integration.test_rewrap import backend_state, settled, signed_json
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

BP = Path(sys.executable).with_name("bp")
PASSPHRASE = "correct horse battery staple"
MARKER = b"BP-MARKER-" + secrets.token_hex(12).encode()
SEG = 64 * 1024


@dataclass
class Account:
    """One tenant with a keyring holding three keys of different types."""

    tenant: str
    access_key: str
    secret: str
    keyring: Path
    other_keyring: Path
    config: Path
    s3: Any


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def account(cluster: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    tenant, key, secret = cluster.create_tenant()
    base = tmp_path_factory.mktemp("bp-cli")
    acct = Account(
        tenant,
        key,
        secret,
        base / "keys",
        base / "other-keys",
        base / "none.yaml",
        cluster.s3(key, secret),
    )
    # carol goes through `bp keygen` (default scrypt cost); the others are made with a cheap
    # scrypt cost so that the many `bp get`s below do not spend their time unlocking keys
    # (the cost is stored per key file, so loading them exercises the same code path).
    cheap = Keyring(acct.keyring, scrypt_log2_n=12)
    cheap.generate("alice", "x25519", PASSPHRASE)
    cheap.generate("bob", "p256", PASSPHRASE)
    Keyring(acct.other_keyring, scrypt_log2_n=12).generate("mallory", "x25519", PASSPHRASE)
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, cluster, acct)
        assert bp("keygen", "--type", "rsa", "carol").code == 0
    yield acct


def _environment(mp: pytest.MonkeyPatch, cluster: Federation, acct: Account) -> None:
    for name in list(os.environ):
        if name.startswith(("BP_", "AWS_")):
            mp.delenv(name)
    mp.setenv("BP_CONFIG", str(acct.config))  # never the developer's own config
    mp.setenv("BP_KEYRING", str(acct.keyring))
    mp.setenv("BP_PASSPHRASE", PASSPHRASE)
    mp.setenv("BP_ENDPOINT", cluster.endpoint)
    mp.setenv("BP_TENANT", acct.tenant)
    mp.setenv("BP_REGION", cluster.settings.region)
    mp.setenv("AWS_ACCESS_KEY_ID", acct.access_key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", acct.secret)


@pytest.fixture(autouse=True)
def env(cluster: Federation, account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    _environment(monkeypatch, cluster, account)


def bp(*args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def bp_process(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BP), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )


@pytest.fixture(scope="module")
def bucket(account: Account, cluster: Federation) -> str:
    name = f"cli-{secrets.token_hex(4)}"
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, cluster, account)
        run = bp("mb", f"s3://{name}")
    assert run.code == 0, run.err
    return name


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".bp-partial")]


# -- keys -------------------------------------------------------------------------------------


def test_key_list_and_export(account: Account) -> None:
    listing = bp("key", "list")
    assert listing.code == 0
    for name, kind in (("alice", "x25519"), ("bob", "p256"), ("carol", "rsa")):
        assert any(line.split()[:3] == [name, "1", kind] for line in listing.out.splitlines())
    exported = bp("key", "export", "carol")
    assert exported.code == 0 and exported.out.startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in exported.out
    assert bp("key", "export", "nobody").code == 3
    again = bp("keygen", "alice")
    assert again.code == 1 and "already exists" in again.err


# -- round trips ------------------------------------------------------------------------------


def test_small_round_trip_and_output_forms(bucket: str, tmp_path: Path) -> None:
    data = b"hello " + MARKER + b" world\n"
    src = write(tmp_path / "small.txt", data)
    put = bp("put", str(src), f"s3://{bucket}/docs/small.txt", "--key", "alice")
    assert put.code == 0, put.err
    assert "content id" in put.err
    got = bp("get", f"s3://{bucket}/docs/small.txt", str(tmp_path / "out.txt"))
    assert got.code == 0, got.err
    assert (tmp_path / "out.txt").read_bytes() == data
    # A directory as destination takes the key's last component.
    outdir = tmp_path / "dir"
    outdir.mkdir()
    assert bp("get", f"s3://{bucket}/docs/small.txt", str(outdir), "-q").code == 0
    assert (outdir / "small.txt").read_bytes() == data
    # Stdout, through the installed console script.
    proc = bp_process("get", f"s3://{bucket}/docs/small.txt", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    # The empty file is one empty final segment.
    empty = write(tmp_path / "empty", b"")
    assert bp("put", str(empty), f"s3://{bucket}/empty", "--key", "bob").code == 0
    assert bp("get", f"s3://{bucket}/empty", str(tmp_path / "empty.out")).code == 0
    assert (tmp_path / "empty.out").read_bytes() == b""
    assert leftovers(tmp_path) == [] and leftovers(outdir) == []


def test_large_file_round_trip_end_to_end(bucket: str, tmp_path: Path) -> None:
    size = 20 * 1024 * 1024 + 12345
    src = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with src.open("wb") as f:
        for _ in range(size // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
        tail = os.urandom(size % (1024 * 1024))
        digest.update(tail)
        f.write(tail)
    url = f"s3://{bucket}/big.bin"
    started = time.monotonic()
    put = bp_process("put", str(src), url, "--key", "carol")
    put_s = time.monotonic() - started
    assert put.returncode == 0, put.stderr
    out = tmp_path / "big.out"
    started = time.monotonic()
    got = bp_process("get", url, str(out))
    get_s = time.monotonic() - started
    assert got.returncode == 0, got.stderr
    got_hash = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            got_hash.update(chunk)
    assert got_hash.hexdigest() == digest.hexdigest()
    mib = size / 2**20
    print(
        f"\n[bp throughput] put {mib:.1f} MiB: {put_s:.2f} s wall ({mib / put_s:.1f} MiB/s); "
        f"get: {get_s:.2f} s wall ({mib / get_s:.1f} MiB/s)\n"
        f"  put: {put.stderr.decode().strip()}\n  get: {got.stderr.decode().strip()}"
    )
    verify = bp("verify", url)
    assert verify.code == 0 and verify.out.startswith(f"OK {url}: {size} bytes, 321 segments")


def test_ranged_get_stays_authenticated(bucket: str, tmp_path: Path) -> None:
    data = os.urandom(3 * SEG + 1000)
    length = len(data)
    url = f"s3://{bucket}/ranged"
    assert bp("put", str(write(tmp_path / "r", data)), url, "--key", "bob").code == 0
    cases = {
        "0-0": data[0:1],
        f"{SEG - 1}-{SEG}": data[SEG - 1 : SEG + 1],
        f"{SEG}-{2 * SEG - 1}": data[SEG : 2 * SEG],
        f"{length - 1}-{length - 1}": data[-1:],
        "-1": data[-1:],
        f"{3 * SEG}-": data[3 * SEG :],
        f"10-{length * 5}": data[10:],
    }
    for spec, expected in cases.items():
        out = tmp_path / "piece"
        run = bp("get", url, str(out), "--range", spec)
        assert run.code == 0, (spec, run.err)
        assert out.read_bytes() == expected, spec
    past_end = bp("get", url, str(tmp_path / "none"), "--range", f"{length}-")
    assert past_end.code == 2 and "range" in past_end.err
    assert not (tmp_path / "none").exists()
    assert bp("get", url, str(tmp_path / "none"), "--range", "5-2").code == 2


def test_ls_rm_and_not_found(bucket: str, tmp_path: Path) -> None:
    src = write(tmp_path / "f", b"x" * 100)
    for key in ("list/a", "list/b", "other/c"):
        assert bp("put", str(src), f"s3://{bucket}/{key}", "--key", "alice", "-q").code == 0
    listing = bp("ls", f"s3://{bucket}/list/")
    assert listing.code == 0
    keys = [line.split()[-1] for line in listing.out.splitlines()]
    assert keys == ["list/a", "list/b"]
    stored = int(listing.out.splitlines()[0].split()[1])
    assert stored == 112 + 100 + 16  # the listing shows the stored (encrypted) size
    assert f"s3://{bucket}" in bp("ls").out.split()
    assert bp("rm", f"s3://{bucket}/list/a").code == 0
    assert [line.split()[-1] for line in bp("ls", f"s3://{bucket}/list/").out.splitlines()] == [
        "list/b"
    ]
    missing = bp("rm", f"s3://{bucket}/list/a")
    assert missing.code == 3
    gone = bp("get", f"s3://{bucket}/list/a", str(tmp_path / "out"))
    assert gone.code == 3 and "NoSuchKey" in gone.err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert bp("ls", "s3://no-such-bucket-here").code == 3


def test_redundancy_class_is_sent(bucket: str, tmp_path: Path, cluster: Federation) -> None:
    src = write(tmp_path / "c", b"class test")
    ok = bp("put", str(src), f"s3://{bucket}/classy", "--key", "alice", "--class", "StandardClass")
    assert ok.code == 0, ok.err
    assert len(cluster.replicas(bucket, "classy")) >= 2
    refused = bp(
        "put", str(src), f"s3://{bucket}/classless", "--class", "NoSuchClass", "--key", "alice"
    )
    assert refused.code == 1 and "NoSuchClass" in refused.err


def test_several_recipients(account: Account, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    url = f"s3://{bucket}/shared"
    put = bp("put", str(write(tmp_path / "s", data)), url, "--key", "alice", "--key", "bob")
    assert put.code == 0, put.err
    for name in ("alice", "bob"):
        out = tmp_path / f"out-{name}"
        run = bp("get", url, str(out), "--key", name)
        assert run.code == 0, run.err
        assert out.read_bytes() == data
    assert bp("verify", url, "--key", "bob").code == 0
    # bob's wrap is in the gateway's recipient list, not in the object's user metadata.
    meta = account.s3.head_object(Bucket=bucket, Key="shared")["Metadata"]
    assert sorted(meta) == ["bp-content-id", "bp-key-id", "bp-key-version",
                            "bp-wrap-alg", "bp-wrapped-key"]  # fmt: skip
    listed = signed_json(account.s3, "GET", f"/{bucket}/shared?recipients").json()["recipients"]
    bob_id = Keyring(account.keyring).info("bob").key_id
    assert [(r["key_id"], r["primary"]) for r in listed][1:] == [(bob_id, False)]
    # A recipient given as an exported PEM file (someone else's public key).
    pem = tmp_path / "carol.pem"
    pem.write_text(bp("key", "export", "carol").out)
    assert bp("put", str(tmp_path / "s"), f"s3://{bucket}/to-pem", "--key", str(pem)).code == 0
    assert bp("get", f"s3://{bucket}/to-pem", str(tmp_path / "o"), "--key", "carol").code == 0
    assert (tmp_path / "o").read_bytes() == data


# -- publishing, sharing, rotation ------------------------------------------------------------


def test_publish_and_list_public_keys(account: Account) -> None:
    keyring = Keyring(account.keyring)
    assert bp("key", "published").code == 0
    published = bp("key", "publish", "alice")
    assert published.code == 0, published.err
    alice = keyring.info("alice")
    assert published.out.split() == ["alice", "v1", alice.key_id, "x25519-hkdf-aes256gcm"]
    assert bp("key", "publish", "carol", "--version", "1").code == 0
    # Publishing the same key again is a no-op, not an error.
    again = bp("key", "publish", "alice")
    assert again.code == 0 and "already published" in again.err
    listing = bp("key", "published")
    assert listing.code == 0, listing.err
    rows = [line.split() for line in listing.out.splitlines()[1:]]
    assert [row[0] for row in rows] == [alice.key_id, keyring.info("carol").key_id]
    assert rows[0] == [alice.key_id, "1", "x25519-hkdf-aes256gcm", "alice", "v1"]
    assert rows[1][2:] == ["rsa-oaep-256", "carol", "v1"]
    # What the gateway holds is exactly the public key (never anything private).
    keys = signed_json(account.s3, "GET", "/?keys").json()["keys"]
    assert keys[0]["public_key_pem"] == bp("key", "export", "alice").out
    assert all("PRIVATE" not in k["public_key_pem"] for k in keys)
    assert bp("key", "publish", "nobody").code == 3


def test_share_lets_a_second_key_read_and_not_a_third(bucket: str, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    url = f"s3://{bucket}/to-share"
    assert bp("put", str(write(tmp_path / "d", data)), url, "--key", "alice").code == 0
    before = bp("get", url, str(tmp_path / "early"), "--key", "bob")
    assert before.code == 6 and not (tmp_path / "early").exists()
    shared = bp("share", url, "--recipient", "bob")
    assert shared.code == 0, shared.err
    assert "shared" in shared.err and "opened with" in shared.err
    for args in ((), ("--range", "70000-70099")):
        got = bp("get", url, str(tmp_path / "bob.out"), "--key", "bob", *args)
        assert got.code == 0, got.err
        expected = data[70000:70100] if args else data
        assert (tmp_path / "bob.out").read_bytes() == expected
    assert bp("verify", url, "--key", "bob").code == 0
    third = bp("get", url, str(tmp_path / "carol.out"), "--key", "carol")
    assert third.code == 6 and "key 'carol' is not a recipient" in third.err
    assert not (tmp_path / "carol.out").exists() and leftovers(tmp_path) == []
    # Sharing again changes nothing; a reader outside the keyring cannot share at all.
    assert "already readable" in bp("share", url, "--recipient", "bob").err
    assert bp("share", f"s3://{bucket}/no-such-key", "--recipient", "bob").code == 3


def _seal_and_put(account: Account, bucket: str, keys: list[str], owner: str) -> None:
    """Objects written as ``bp put`` writes them, in parallel (200 ``bp put`` calls would
    spend the test's time starting boto3 clients, not rotating)."""
    recipient = Keyring(account.keyring).load_public(owner)

    def put(key: str) -> None:
        sealed = seal(
            f"rotation test {key}".encode(),
            tenant=account.tenant,
            bucket=bucket,
            key=key,
            recipients=[PublicKeyRef(recipient.public_key, recipient.key_version)],
        )
        account.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=sealed.body,
            Metadata={k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def _wrapped_under(cluster: Federation, bucket: str, prefix: str) -> dict[str, str]:
    rows = cluster.sql(
        "SELECT v.key, v.key_id FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND v.is_latest AND v.key LIKE $2",
        bucket,
        prefix + "%",
    )
    return {r["key"]: r["key_id"] for r in rows}


def test_rotation_moves_wrapped_keys_and_no_backend_bytes(
    account: Account, cluster: Federation, tmp_path: Path
) -> None:
    keyring = Keyring(account.keyring)
    alice, bob, carol = (keyring.info(name).key_id for name in ("alice", "bob", "carol"))
    name = f"rot-{secrets.token_hex(4)}"
    assert bp("mb", f"s3://{name}").code == 0
    count = 200
    keys = [f"r/{i:03d}" for i in range(count)]
    _seal_and_put(account, name, keys, "alice")
    _seal_and_put(account, name, ["r/zz-carol-0", "r/zz-carol-1"], "carol")
    _seal_and_put(account, name, ["outside"], "alice")
    # One object written by `bp put` itself, with a shared recipient (carol) on top.
    src = write(tmp_path / "own", b"written by bp put")
    assert bp("put", str(src), f"s3://{name}/r/own", "--key", "alice", "--key", "carol").code == 0
    settled(cluster, name)
    before = backend_state(cluster)
    assert len(before) >= count  # every object is on the backends (replicas: more than once)

    run = bp("rotate", "--from", "alice", "--to", "bob", f"s3://{name}/r/")
    assert run.code == 0, run.err
    assert f"{count + 1} rotated, 2 skipped, 0 failed of {count + 3} objects" in run.err
    skipped = sorted(run.out.splitlines())
    assert skipped == [
        f"skipped s3://{name}/r/zz-carol-{i}: wrapped under {carol} v1, not a --from key"
        for i in range(2)
    ]
    under = _wrapped_under(cluster, name, "")
    assert sorted(k for k, v in under.items() if v == bob) == sorted([*keys, "r/own"])
    assert under["outside"] == alice and under["r/zz-carol-0"] == carol
    # The new key reads; the old one no longer can; a shared recipient still can.
    for i in (0, 57, 123, count - 1):
        out = tmp_path / f"o{i}"
        got = bp("get", f"s3://{name}/{keys[i]}", str(out), "--key", "bob")
        assert got.code == 0, got.err
        assert out.read_bytes() == f"rotation test {keys[i]}".encode()
    for key in (keys[0], keys[-1], "r/own"):
        assert bp("verify", f"s3://{name}/{key}", "--key", "bob").code == 0
        stale = bp("verify", f"s3://{name}/{key}", "--key", "alice")
        assert stale.code == 6 and "not a recipient" in stale.err
    assert bp("get", f"s3://{name}/r/own", str(tmp_path / "own.c"), "--key", "carol").code == 0
    assert (tmp_path / "own.c").read_bytes() == b"written by bp put"
    assert backend_state(cluster) == before

    # The same rotation again: nothing is under alice any more, so nothing changes.
    again = bp("rotate", "--from", "alice", "--to", "bob", f"s3://{name}/r/")
    assert again.code == 0, again.err
    assert f"0 rotated, {count + 3} skipped, 0 failed" in again.err
    assert sum("already wrapped under the new key" in line for line in again.out.splitlines()) == (
        count + 1
    )
    assert _wrapped_under(cluster, name, "") == under
    assert backend_state(cluster) == before

    # Two rotations racing over the same objects: each object is re-wrapped exactly once, the
    # loser of each race is told so (skipped, or a precondition failure and exit 1).
    with ThreadPoolExecutor(2) as pool:
        racers = list(
            pool.map(
                lambda _: bp(
                    "rotate", "--from", "bob", "--to", "carol", f"s3://{name}/r/", "--batch", "50"
                ),
                range(2),
            )
        )
    print("\n[racing rotations] " + " | ".join(r.err.strip() for r in racers))
    rotated = [int(r.err.split(" rotated,")[0].rsplit(" ", 1)[1]) for r in racers]
    assert sum(rotated) == count + 1, [r.err for r in racers]
    for racer in racers:
        failures = [line for line in racer.out.splitlines() if line.startswith("failed")]
        assert all("precondition failed" in line for line in failures), failures
        assert racer.code == (1 if failures else 0)
    assert set(_wrapped_under(cluster, name, "r/").values()) == {carol}
    assert bp("verify", f"s3://{name}/{keys[5]}", "--key", "carol").code == 0
    assert backend_state(cluster) == before


@pytest.mark.skipif(
    not os.environ.get("BENCH_ROTATE"), reason="rotation benchmark: set BENCH_ROTATE=1"
)
def test_rotation_rate_for_a_thousand_objects(account: Account, cluster: Federation) -> None:
    """``bp rotate`` end to end (console script, cold start included) over 1,000 objects.

    Opt-in (about a minute): ``BENCH_ROTATE=1``, tuned with ``BENCH_ROTATE_WORKERS`` and
    ``BENCH_ROTATE_BATCH`` (not ``BP_*``: the ``env`` fixture clears those).
    """
    name = f"rot-bench-{secrets.token_hex(4)}"
    assert bp("mb", f"s3://{name}").code == 0
    count = 1000
    _seal_and_put(account, name, [f"b/{i:04d}" for i in range(count)], "alice")
    settled(cluster, name)
    before = backend_state(cluster)
    workers = os.environ.get("BENCH_ROTATE_WORKERS", "8")
    batch = os.environ.get("BENCH_ROTATE_BATCH", "500")
    started = time.monotonic()
    proc = bp_process(
        "rotate", "--from", "alice", "--to", "bob", f"s3://{name}",
        "--workers", workers, "--batch", batch,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    summary = proc.stderr.decode().strip()
    assert f"{count} rotated, 0 skipped, 0 failed" in summary
    assert backend_state(cluster) == before
    print(
        f"\n[bp rotate] {count} objects, workers {workers}, batch {batch}: {summary}\n"
        f"  process wall time {wall:.2f} s ({count / wall:.0f} objects/s incl. start-up)"
    )


# -- what must never happen -------------------------------------------------------------------


def _forms(marker: bytes) -> list[bytes]:
    """The marker, its hex, and its base64 at all three alignments inside a longer string."""
    forms = [marker, marker.hex().encode()]
    for pad in range(3):
        # Only the base64 groups made entirely of marker bytes are independent of neighbours.
        encoded = base64.b64encode(b"\0" * pad + marker)
        forms.append(encoded[4 * -(-pad // 3) : 4 * ((pad + len(marker)) // 3)])
    return [f for f in forms if len(f) >= 12]


def _ray_log_dir() -> Path | None:
    import ray

    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)  # private, but the only handle on this session
    return Path(node.get_logs_dir_path()) if node is not None else None


def test_plaintext_never_leaves_the_client(
    bucket: str, tmp_path: Path, cluster: Federation
) -> None:
    data = (b"prefix " + MARKER + b" suffix ") * 5000  # several segments, marker in each
    url = f"s3://{bucket}/secret-doc"
    assert bp("put", str(write(tmp_path / "m", data)), url, "--key", "alice").code == 0
    assert bp("get", url, str(tmp_path / "back")).code == 0
    assert (tmp_path / "back").read_bytes() == data
    forms = _forms(MARKER)

    def clean(blob: bytes, where: str) -> None:
        for form in forms:
            assert form not in blob, f"plaintext marker found in {where}"

    # Every object on every backend, read directly.
    seen = 0
    for index in range(len(cluster.motos)):
        s3 = cluster.backend_s3(index)
        for b in s3.list_buckets()["Buckets"]:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
                for item in page.get("Contents", []):
                    clean(item["Key"].encode(), f"backend {index} key names")
                    clean(
                        s3.get_object(Bucket=b["Name"], Key=item["Key"])["Body"].read(),
                        f"backend {index} object {item['Key']}",
                    )
                    seen += 1
    assert seen >= 2
    # Every row of every table in PostgreSQL (the named ones first, and all others too).
    tables = [
        r["table_name"]
        for r in cluster.sql(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    assert {"object_versions", "replicas", "jobs", "audit_log"} <= set(tables)
    for table in tables:
        for row in cluster.sql(f'SELECT t::text AS row FROM "{table}" t'):
            clean(row["row"].encode(), f"PostgreSQL table {table}")
    # Every key and value in the cluster's Redis.
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        for name in client.scan_iter(count=500):
            kind = client.type(name).decode()
            if kind == "string":
                values: list[Any] = [client.get(name)]
            elif kind == "hash":
                values = [*client.hgetall(name).items()]
            elif kind == "list":
                values = client.lrange(name, 0, -1)
            elif kind == "set":
                values = list(client.smembers(name))
            elif kind == "zset":
                values = client.zrange(name, 0, -1)
            else:
                values = [repr(client.xrange(name)).encode()] if kind == "stream" else []
            clean(name, "Redis key names")
            clean(
                repr(values).encode() + b"".join(v for v in values if isinstance(v, bytes)),
                f"Redis key {name!r}",
            )
    finally:
        client.close()
    # Every log file of this Ray session (gateway, proxy, actors, workers).
    logs = _ray_log_dir()
    assert logs is not None and logs.is_dir()
    for path in logs.rglob("*"):
        if path.is_file():
            clean(path.read_bytes(), f"log {path}")


def test_swapped_object_is_refused_and_leaves_no_file(
    account: Account, bucket: str, tmp_path: Path
) -> None:
    s3 = account.s3
    for name in ("swap-a", "swap-b"):
        body = write(tmp_path / name, name.encode() * 50_000)
        assert bp("put", str(body), f"s3://{bucket}/{name}", "--key", "alice").code == 0
    # The operator (or anyone with the tenant's S3 credentials) moves A's exact bytes and
    # envelope under B's name: every byte is authentic, only the name is wrong.
    original = s3.get_object(Bucket=bucket, Key="swap-a")
    s3.put_object(
        Bucket=bucket, Key="swap-b", Body=original["Body"].read(), Metadata=original["Metadata"]
    )
    other_bucket = f"cli-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=other_bucket)
    s3.put_object(
        Bucket=other_bucket,
        Key="swap-a",
        Body=s3.get_object(Bucket=bucket, Key="swap-a")["Body"].read(),
        Metadata=original["Metadata"],
    )

    existing = write(tmp_path / "existing", b"keep me")
    for url in (f"s3://{bucket}/swap-b", f"s3://{other_bucket}/swap-a"):
        for target in (tmp_path / "swapped.out", existing):
            run = bp("get", url, str(target))
            assert run.code == 5, run.err
            assert "a different object than the one asked for" in run.err
            assert "nothing was written" in run.err
        assert not (tmp_path / "swapped.out").exists()
        assert existing.read_bytes() == b"keep me"
        assert leftovers(tmp_path) == []
        ranged = bp("get", url, str(tmp_path / "swapped.out"), "--range", "0-9")
        assert ranged.code == 5 and not (tmp_path / "swapped.out").exists()
        verify = bp("verify", url)
        assert verify.code == 5 and verify.out == "" and "integrity check failed" in verify.err
    # The original is still fine.
    assert bp("verify", f"s3://{bucket}/swap-a").code == 0


def test_wrong_key_and_wrong_passphrase(
    account: Account, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{bucket}/for-alice"
    assert bp("put", str(write(tmp_path / "a", b"for alice only")), url, "--key", "alice").code == 0
    wrong = bp("get", url, str(tmp_path / "out"), "--key", "bob")
    assert wrong.code == 6 and "key 'bob' is not a recipient" in wrong.err
    monkeypatch.setenv("BP_KEYRING", str(account.other_keyring))
    stranger = bp("get", url, str(tmp_path / "out"))
    assert stranger.code == 6 and "no key in" in stranger.err and "is a recipient" in stranger.err
    assert bp("verify", url).code == 6
    monkeypatch.setenv("BP_KEYRING", str(account.keyring))
    monkeypatch.setenv("BP_PASSPHRASE", "not the passphrase")
    bad = bp("get", url, str(tmp_path / "out"))
    assert bad.code == 6 and "wrong passphrase" in bad.err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_configuration_and_credential_errors(
    account: Account, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write(tmp_path / "f", b"data")
    url = f"s3://{bucket}/cfg"
    monkeypatch.delenv("BP_TENANT")
    for args in (
        ("put", str(src), url, "--key", "alice"),
        ("get", url, str(tmp_path / "o")),
        ("verify", url),
    ):
        run = bp(*args)
        assert run.code == 2 and "tenant" in run.err and "BP_TENANT" in run.err, run.err
    # The tenant from a config profile works; flags still beat it.
    account.config.write_text(f"work:\n  tenant: {account.tenant}\n")
    assert bp("--profile", "work", "put", str(src), url, "--key", "alice", "-q").code == 0
    assert bp("get", url, str(tmp_path / "o"), "--profile", "work").code == 0
    # Binding to the wrong tenant name is an integrity failure, not a silent success.
    wrong_tenant = bp("get", url, str(tmp_path / "o2"), "--tenant", "someone-else")
    assert wrong_tenant.code == 5 and not (tmp_path / "o2").exists()
    monkeypatch.setenv("BP_TENANT", account.tenant)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    denied = bp("ls", f"s3://{bucket}")
    assert denied.code == 4 and "SignatureDoesNotMatch" in denied.err
    monkeypatch.delenv("BP_ENDPOINT")
    assert bp("ls").code == 2
    monkeypatch.setenv("BP_ENDPOINT", "http://127.0.0.1:9")
    assert bp("ls").code == 7


def _run_measured(args: list[str]) -> tuple[int, int, bytes]:
    """Run ``bp`` as a child process; (exit code, peak RSS in MiB, stderr)."""
    proc = subprocess.Popen(
        [str(BP), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss // 1024, err


def test_file_over_one_gib_round_trips_with_flat_memory(bucket: str, tmp_path: Path) -> None:
    """Issue 4: > 1 GiB through the gateway, client memory independent of the file size."""
    block = os.urandom(4 * 1024 * 1024)
    size = 1024**3 + 12_345  # over 1 GiB and not a multiple of the segment size
    src, out = tmp_path / "big.bin", tmp_path / "big.out"
    digest = hashlib.sha256()
    with src.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
    url = f"s3://{bucket}/big.bin"
    code, put_rss, err = _run_measured(["--quiet", "put", str(src), url, "--key", "alice"])
    assert code == 0, err
    code, get_rss, err = _run_measured(["--quiet", "get", url, str(out), "--key", "alice"])
    assert code == 0, err
    got = hashlib.sha256()
    with out.open("rb") as handle:
        for chunk in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            got.update(chunk)
    assert got.digest() == digest.digest() and out.stat().st_size == size
    # Flat: the same peak as for a 1 MiB file, give or take a few 8 MiB windows; never the
    # file (1 GiB).
    small = tmp_path / "small.bin"
    small.write_bytes(block[: 1024 * 1024])
    code, small_put_rss, err = _run_measured(
        ["--quiet", "put", str(small), url + ".small", "--key", "alice"]
    )
    assert code == 0, err
    code, small_get_rss, err = _run_measured(
        ["--quiet", "get", url + ".small", str(tmp_path / "small.out"), "--key", "alice"]
    )
    assert code == 0, err
    assert put_rss < small_put_rss + 64 and get_rss < small_get_rss + 64, (
        put_rss,
        small_put_rss,
        get_rss,
        small_get_rss,
    )
    src.unlink()
    out.unlink()

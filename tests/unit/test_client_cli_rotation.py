"""``bp rotate`` without a network: batching, what is rotated, skipped or failed and why, and
that a rotation reads headers only and never an object's body (the fake gateway has no way to
serve one to it). The in-memory gateway is :class:`FakeApi` over :class:`FakeStore`."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

import client.cli as cli
from client import PublicKeyRef, seal, unseal
from client.api_records import RewrapItem
from client.cli_context import CommandContext
from client.errors import DecryptionFailed
from client.format import HEADER_LEN
from client.recipient import PrivateKey
from client.remote import GatewayUnavailable, RequestRefused, VersionInfo
from client.rotation import (
    MAX_BATCH,
    ObjectOutcome,
    RotationPlan,
    RotationProgress,
    RotationSummary,
    batched,
    rotate,
)
from client.s3url import S3Url
from tests.unit.test_client_cli_transfer import TENANT, FakeApi, FakeStore

BUCKET = "bkt"


def store_object(store: FakeStore, key: str, owner: Any, data: bytes | None = None) -> bytes:
    plaintext = data if data is not None else f"object {key}".encode()
    sealed = seal(
        plaintext, tenant=TENANT, bucket=BUCKET, key=key, recipients=[PublicKeyRef(owner)]
    )
    meta = {k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()}
    assert isinstance(sealed.body, bytes)
    store.objects[(BUCKET, key)] = (sealed.body, meta)
    return plaintext


def read(store: FakeStore, key: str, private: PrivateKey) -> bytes:
    body, meta = store.objects[(BUCKET, key)]
    return unseal(body, meta, private, tenant=TENANT, bucket=BUCKET, key=key)


def plan(old: x25519.X25519PrivateKey, new: x25519.X25519PrivateKey, **kw: Any) -> RotationPlan:
    from client.recipient import key_id

    return RotationPlan(
        bucket=BUCKET,
        tenant=TENANT,
        old_keys={key_id(old): old},
        new=PublicKeyRef(new.public_key(), 2),
        **kw,
    )


def run_rotation(
    api: FakeApi, keys: list[str], rotation: RotationPlan
) -> tuple[RotationSummary, list[ObjectOutcome]]:
    reports: list[ObjectOutcome] = []
    summary = rotate(api, keys, rotation, report=reports.append)  # type: ignore[arg-type]
    return summary, reports


@pytest.fixture
def keys() -> tuple[x25519.X25519PrivateKey, ...]:
    return tuple(x25519.X25519PrivateKey.generate() for _ in range(3))


# -- batching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [(0, 3, []), (1, 3, [1]), (3, 3, [3]), (7, 3, [3, 3, 1]), (1000, 500, [500, 500])],
)
def test_batched(count: int, size: int, expected: list[int]) -> None:
    batches = list(batched(range(count), size))
    assert [len(b) for b in batches] == expected
    assert [x for b in batches for x in b] == list(range(count))


def test_batched_refuses_an_empty_batch_size() -> None:
    with pytest.raises(ValueError):
        list(batched([1], 0))


@pytest.mark.parametrize(
    "kw", [{"batch_size": 0}, {"batch_size": MAX_BATCH + 1}, {"workers": 0}, {"workers": 65}]
)
def test_plan_limits(kw: dict[str, int], keys: tuple[x25519.X25519PrivateKey, ...]) -> None:
    with pytest.raises(ValueError):
        plan(keys[0], keys[1], **kw)
    with pytest.raises(ValueError, match="at least one key"):
        RotationPlan(BUCKET, TENANT, {}, PublicKeyRef(keys[1].public_key()))


# -- the engine -------------------------------------------------------------------------------


def test_rotation_rotates_in_batches_and_skips_what_is_not_under_the_old_key(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, other = keys
    store = FakeStore()
    api = FakeApi(store)
    plaintexts = {
        f"o/{i:03d}": store_object(store, f"o/{i:03d}", old.public_key()) for i in range(25)
    }
    for i in range(3):
        store_object(store, f"x/{i}", other.public_key())
    store.objects[(BUCKET, "plain")] = (b"not encrypted at all", {"color": "blue"})
    bodies = {k: v[0] for k, v in store.objects.items()}
    names = sorted(k for _, k in store.objects) + ["vanished"]

    summary, reports = run_rotation(api, names, plan(old, new, batch_size=10, workers=4))

    assert (summary.listed, summary.rotated, summary.skipped, summary.failed) == (30, 25, 5, 0)
    assert sorted(len(b) for b in api.batches) == [5, 10, 10]
    # Headers come with the envelopes, a batch at a time: no ranged read of any object.
    assert api.envelope_reads == [10, 10, 10] and api.header_reads == 0
    assert {k: v[0] for k, v in store.objects.items()} == bodies  # no byte of any body changed
    for key, plaintext in plaintexts.items():
        assert read(store, key, new) == plaintext
        with pytest.raises(DecryptionFailed):
            read(store, key, old)
    items = [item for batch in api.batches for item in batch]
    assert all(item.expect_key_version == 1 and item.wrapped.key_version == 2 for item in items)
    reasons = {r.key: (r.outcome, r.reason) for r in reports}
    assert reasons["plain"] == ("skipped", "not client-side encrypted")
    assert reasons["vanished"] == ("skipped", "deleted since it was listed")
    assert all(
        reasons[f"x/{i}"][0] == "skipped" and "not a --from key" in reasons[f"x/{i}"][1]
        for i in range(3)
    )
    assert summary.seconds > 0 and summary.rate > 0

    # The same rotation again changes nothing: everything is already under the new key.
    api.batches.clear()
    again, reports = run_rotation(api, names, plan(old, new, batch_size=10, workers=4))
    assert (again.rotated, again.skipped, again.failed) == (0, 30, 0)
    assert api.batches == []
    assert sum("already wrapped under the new key" in r.reason for r in reports) == 25


def test_concurrent_rotations_and_deletions_are_reported_per_object(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, thief = keys
    store = FakeStore()
    api = FakeApi(store)
    for i in range(6):
        store_object(store, f"k{i}", old.public_key())

    def someone_else_first(items: list[RewrapItem]) -> None:
        # Between the header reads and the batch: k1 is rotated elsewhere, k2 is deleted.
        body, meta = store.objects[(BUCKET, "k1")]
        store.objects[(BUCKET, "k1")] = (body, {**meta, "bp-key-id": "bp:elsewhere"})
        del store.objects[(BUCKET, "k2")]

    api.before_rewrap = someone_else_first
    summary, reports = run_rotation(api, [f"k{i}" for i in range(6)], plan(old, new))
    assert (summary.rotated, summary.skipped, summary.failed) == (4, 1, 1)
    outcome = {r.key: r for r in reports}
    assert outcome["k1"].outcome == "failed" and "precondition failed" in outcome["k1"].reason
    assert outcome["k2"].outcome == "skipped" and "deleted" in outcome["k2"].reason


def test_an_object_whose_header_is_not_its_own_is_not_rewrapped(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, _ = keys
    store = FakeStore()
    api = FakeApi(store)
    store_object(store, "a", old.public_key())
    store_object(store, "b", old.public_key())
    store.objects[(BUCKET, "b")] = store.objects[(BUCKET, "a")]  # a's bytes under b's name
    summary, reports = run_rotation(api, ["a", "b"], plan(old, new))
    assert (summary.rotated, summary.failed) == (1, 1)
    assert reports[0].key == "b" and "integrity check failed" in reports[0].reason
    assert [item.key for batch in api.batches for item in batch] == ["a"]


def test_versions_without_a_stored_header_are_read_from_their_objects(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    """Versions written before the gateway stored headers (migration 0022) fall back to a
    ranged GET each; so does every version of a batch the gateway refuses to describe."""
    old, new, _ = keys
    store = FakeStore()
    api = FakeApi(store)
    names = [f"k{i}" for i in range(8)]
    plaintexts = {name: store_object(store, name, old.public_key()) for name in names}
    api.stored_headers = {"k0", "k1", "k2"}
    summary, reports = run_rotation(api, names, plan(old, new, batch_size=4))
    assert (summary.rotated, summary.failed) == (8, 0), reports
    assert api.envelope_reads == [4, 4] and api.header_reads == 5
    assert all(read(store, name, new) == data for name, data in plaintexts.items())

    # A gateway without ?envelopes (an older one): every header from its object.
    fresh = FakeStore()
    older = FakeApi(fresh)
    for name in names:
        store_object(fresh, name, old.public_key())
    older.refuse_envelopes = RequestRefused("envelopes: NotImplemented", status=501)
    summary, _ = run_rotation(older, names, plan(old, new, batch_size=4))
    assert (summary.rotated, summary.failed) == (8, 0)
    assert older.header_reads == 8


def test_a_tampered_stored_header_is_refused_not_rewrapped(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    """The stored header is only the gateway's word: one that is not the object's own (another
    object's, or altered in a byte) fails that object's checks; nothing is wrapped against it."""
    old, new, _ = keys
    store = FakeStore()
    api = FakeApi(store)
    for name in ("a", "b", "c"):
        store_object(store, name, old.public_key())
    a_header = store.objects[(BUCKET, "a")][0][:HEADER_LEN]
    c_header = bytearray(store.objects[(BUCKET, "c")][0][:HEADER_LEN])
    c_header[40] ^= 1  # a byte of the key commitment
    api.forged_headers = {"b": a_header, "c": bytes(c_header)}
    summary, reports = run_rotation(api, ["a", "b", "c"], plan(old, new))
    assert (summary.rotated, summary.failed) == (1, 2)
    assert {r.key for r in reports} == {"b", "c"}
    assert all("integrity check failed, not re-wrapped" in r.reason for r in reports)
    assert [item.key for batch in api.batches for item in batch] == ["a"]


def test_a_lost_batch_answer_fails_its_objects_and_a_rerun_finishes_the_job(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, _ = keys
    store = FakeStore()
    api = FakeApi(store)
    names = [f"k{i}" for i in range(5)]
    for name in names:
        store_object(store, name, old.public_key())
    api.refuse_batches = GatewayUnavailable("rewrap: the gateway timed out")
    summary, reports = run_rotation(api, names, plan(old, new, batch_size=2))
    assert (summary.rotated, summary.failed) == (0, 5)
    assert all("outcome is unknown" in r.reason for r in reports)
    api.refuse_batches = None
    summary, _ = run_rotation(api, names, plan(old, new, batch_size=2))
    assert (summary.rotated, summary.failed) == (5, 0)


def test_progress_is_drawn_on_the_stream_it_is_given(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, _ = keys
    store = FakeStore()
    api = FakeApi(store)
    for i in range(3):
        store_object(store, f"k{i}", old.public_key())
    stream = io.StringIO()
    rotate(
        api,  # type: ignore[arg-type]
        ["k0", "k1", "k2"],
        plan(old, new),
        report=lambda _: None,
        progress=RotationProgress("rotate s3://bkt", stream),
    )
    text = stream.getvalue()
    assert "rotate s3://bkt" in text and "3 rotated" in text and text.endswith("\n")


# -- the command ------------------------------------------------------------------------------


class _ListingStore(FakeStore):
    """Lists as the gateway lists an unversioned bucket: every object is its null version."""

    def list_versions(self, url: S3Url) -> list[VersionInfo]:
        return [
            VersionInfo(key, "null", True, len(data), "2026-01-01T00:00:00Z")
            for (bucket, key), (data, _) in sorted(self.objects.items())
            if bucket == url.bucket and key.startswith(url.key)
        ]


def test_bp_rotate_reports_each_object_and_exits_1_on_any_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("BP_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BP_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("BP_KEYRING", str(tmp_path / "keys"))
    monkeypatch.setenv("BP_PASSPHRASE", "pw")
    monkeypatch.setenv("BP_TENANT", TENANT)
    monkeypatch.setenv("BP_ENDPOINT", "http://gateway.invalid")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    from client.keyring import Keyring

    keyring = Keyring(tmp_path / "keys", scrypt_log2_n=12)
    keyring.generate("old", "x25519", "pw")
    keyring.generate("new", "p256", "pw")
    old_public = keyring.load_public("old").public_key
    store = _ListingStore()
    api = FakeApi(store)
    for i in range(4):
        store_object(store, f"docs/{i}", old_public)
    store_object(store, "elsewhere/0", old_public)
    monkeypatch.setattr(CommandContext, "store", lambda self: store)
    monkeypatch.setattr(CommandContext, "api", lambda self, connections=4: _Closing(api))

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return cli.main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()

    code, out, err = run("rotate", "--from", "old", "--to", "new", "s3://bkt/docs/")
    assert code == 0 and out == ""
    assert "4 rotated, 0 skipped, 0 failed of 4 objects" in err and "objects/s" in err
    new_private = keyring.load_private("new", "pw")
    assert read(store, "docs/3", new_private) == b"object docs/3"
    assert read(store, "elsewhere/0", keyring.load_private("old", "pw")) == b"object elsewhere/0"

    # One object is rotated by someone else between its header read and the batch.
    store_object(store, "docs/9", old_public)

    def rotated_elsewhere(items: list[RewrapItem]) -> None:
        body, meta = store.objects[(BUCKET, "docs/9")]
        store.objects[(BUCKET, "docs/9")] = (body, {**meta, "bp-key-id": "bp:elsewhere"})

    api.before_rewrap = rotated_elsewhere
    code, out, err = run("rotate", "--from", "old", "--to", "new", "s3://bkt/docs/", "-q")
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert sorted(lines[:-1]) == [
        f"skipped s3://bkt/docs/{i}: already wrapped under the new key "
        f"{keyring.info('new').key_id} v1"
        for i in range(4)
    ]
    assert lines[-1].startswith("failed s3://bkt/docs/9: precondition failed")


class _Closing:
    """A FakeApi usable as ``with ctx.api() as api``."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def __enter__(self) -> FakeApi:
        return self.api

    def __exit__(self, *exc: object) -> None:
        pass

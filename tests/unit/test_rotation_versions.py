"""Rotation reaches every object version, not only the current one.

Server side without a database: how ``?rewrap&versionId=`` is routed, how a batch item's
``version_id`` is read, which error a missing version gets. Client side over an in-memory
*versioned* gateway (:class:`VersionedStore` / :class:`VersionedApi`): ``bp rotate`` re-wraps
every version and names each in its reports, ``bp get --version-id`` reads a noncurrent
version, and the wire documents carry the version.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

import client.cli as cli
from client import PublicKeyRef, seal, unseal
from client.api import GatewayApi
from client.api_records import EnvelopeResult, ObjectHead, Recipients, RewrapItem, RewrapResult
from client.cli_context import CommandContext
from client.envelope import envelope_headers, parse_envelope_headers
from client.errors import DecryptionFailed
from client.format import HEADER_LEN
from client.recipient import PrivateKey, key_id
from client.remote import ObjectNotFound, RequestRefused, VersionInfo
from client.rotation import ObjectOutcome, RotationPlan, VersionRef, rotate
from client.s3url import S3Url
from client.sharing import download
from client.transfer import PlaintextRange
from client.wrap import WrappedKey
from core import errors as domain
from gateway.s3 import errors as s3e
from gateway.s3 import operations as ops
from gateway.s3.handlers import rewrap as handler
from tests.support.envelopes import fake_wrapped_key
from tests.unit.test_client_cli_transfer import TENANT, Holder

BUCKET = "bkt"

# -- the gateway: routing and documents -------------------------------------------------------


def parse(method: str, path: str, query: list[tuple[str, str]]) -> ops.Operation:
    return ops.parse_operation(method, path, query, {})


def test_rewrap_routing_takes_a_version_id_like_get() -> None:
    assert parse("POST", "/bkt/k", [("rewrap", "")]) == ops.RewrapObject("bkt", "k")
    assert parse("POST", "/bkt/k", [("rewrap", "")]) == ops.RewrapObject("bkt", "k", None)
    named = parse("POST", "/bkt/a%2Fb", [("rewrap", ""), ("versionId", "v-1")])
    assert named == ops.RewrapObject("bkt", "a/b", "v-1")
    assert parse("POST", "/bkt/k", [("rewrap", ""), ("versionId", "null")]) == ops.RewrapObject(
        "bkt", "k", "null"
    )
    for bad in ("", "x" * 129):
        with pytest.raises(s3e.InvalidArgument):
            parse("POST", "/bkt/k", [("rewrap", ""), ("versionId", bad)])
    # The batch form: each item names its own version; a versionId on the request is refused.
    assert parse("POST", "/bkt", [("rewrap", "")]) == ops.RewrapObjects("bkt")
    with pytest.raises(s3e.InvalidArgument, match="version_id"):
        parse("POST", "/bkt", [("rewrap", ""), ("versionId", "v-1")])
    with pytest.raises(s3e.MethodNotAllowed):
        parse("GET", "/bkt/k", [("rewrap", ""), ("versionId", "v-1")])


def _document(**extra: Any) -> dict[str, Any]:
    wrapped = WrappedKey.from_bytes(fake_wrapped_key(key_id="bp:new", version=2))
    return {**RewrapItem("k", "bp:old", 1, wrapped, "ab" * 16).document(), **extra}


def test_batch_items_name_their_version_or_none() -> None:
    assert handler._item(_document(key="k"), need_key=True).version_id is None
    for version_id in ("null", "3f1c0a", "x" * 128):
        item = handler._item(_document(key="k", version_id=version_id), need_key=True)
        assert (item.key, item.version_id) == ("k", version_id)
    # JSON null is not the null version: S3 names that "null"; leaving the field out means
    # the current version, so an ambiguous document is refused rather than guessed at.
    for bad in (None, "", 7, ["v"], "x" * 129):
        with pytest.raises(s3e.InvalidRequest, match="version_id"):
            handler._item(_document(key="k", version_id=bad), need_key=True)
    # The single form names its version in the query only.
    with pytest.raises(s3e.InvalidRequest, match="query"):
        handler._item(_document(version_id="v-1"), need_key=False)
    assert handler._item(_document(), need_key=False).version_id is None


def test_a_missing_or_deleted_version_is_no_such_version() -> None:
    named = handler._item(_document(key="k", version_id="v-1"), need_key=True)
    current = handler._item(_document(key="k"), need_key=True)
    gone = domain.NoSuchKey("no version 'v-1' of 'k'")
    err = handler._failure(named, gone)
    assert isinstance(err, s3e.NoSuchVersion) and err.code == "NoSuchVersion"
    assert err.status == 404 and "v-1" in err.message
    assert handler._ERRORS_BY_CODE["NoSuchVersion"] is s3e.NoSuchVersion
    assert isinstance(handler._failure(current, domain.NoSuchKey("no object 'k'")), s3e.NoSuchKey)
    stale = handler._failure(named, domain.PreconditionFailed("wrapped under another key"))
    assert isinstance(stale, s3e.PreconditionFailed)


# -- the client: wire documents ----------------------------------------------------------------


def test_rewrap_item_document_names_the_version_only_when_given() -> None:
    wrapped = _document()
    item = RewrapItem("k", "bp:old", 1, parse_wrapped(wrapped), "ab" * 16)
    assert "version_id" not in item.document()
    named = RewrapItem("k", "bp:old", 1, parse_wrapped(wrapped), "ab" * 16, "null")
    assert named.document()["version_id"] == "null"
    assert json.loads(json.dumps(named.document())) == named.document()


def parse_wrapped(document: dict[str, Any]) -> WrappedKey:
    return WrappedKey.from_bytes(base64.b64decode(document["wrapped_key"]))


class _Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self._body, self.headers = status, body, headers or {}

    def read(self, amount: int | None = None) -> bytes:
        data, self._body = (
            (self._body, b"") if amount is None else (self._body[:amount], self._body[amount:])
        )
        return data

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def _api(monkeypatch: pytest.MonkeyPatch, answer: _Answer, seen: list[tuple[str, str]]) -> Any:
    api = GatewayApi("http://gateway.invalid", "id", "secret", region="us-east-1")

    def fake_open(method: str, path: str, query: str, *args: Any, **kw: Any) -> _Answer:
        seen.append((path, query))
        return answer

    monkeypatch.setattr(api, "_open", fake_open)
    return api


def test_read_header_asks_for_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    header = os.urandom(HEADER_LEN)
    answer = _Answer(206, header, {"Content-Range": "bytes 0-111/5000", "ETag": '"e"'})
    api = _api(monkeypatch, answer, seen)
    head = api.read_header(S3Url("bkt", "a b"), "v+1/=")
    assert head.header == header and head.size == 5000
    assert seen == [("/bkt/a%20b", "versionId=v%2B1%2F%3D")]
    answer._body = header
    api.read_header(S3Url("bkt", "k"))
    assert seen[-1] == ("/bkt/k", "")


def test_rewrap_results_must_name_the_items_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapped = parse_wrapped(_document())
    items = [
        RewrapItem("k", "bp:old", 1, wrapped, "ab" * 16, "v-1"),
        RewrapItem("k", "bp:old", 1, wrapped, "cd" * 16, "v-2"),
        RewrapItem("j", "bp:old", 1, wrapped, "ef" * 16),
    ]
    results = [
        {"key": "k", "version_id": "v-1", "status": "ok"},
        {"key": "k", "version_id": "v-2", "status": "NoSuchVersion", "message": "gone"},
        {"key": "j", "version_id": "null", "status": "ok"},
    ]
    seen: list[tuple[str, str]] = []
    api = _api(monkeypatch, _Answer(200, json.dumps({"results": results}).encode()), seen)
    out = api.rewrap("bkt", items)
    assert seen == [("/bkt", "rewrap")]
    assert [(r.key, r.version_id, r.status) for r in out] == [
        ("k", "v-1", "ok"),
        ("k", "v-2", "NoSuchVersion"),
        ("j", None, "ok"),
    ]
    swapped = [results[1], results[0], results[2]]
    api = _api(monkeypatch, _Answer(200, json.dumps({"results": swapped}).encode()), seen)
    with pytest.raises(RequestRefused, match="versions"):
        api.rewrap("bkt", items)


# -- an in-memory versioned gateway ------------------------------------------------------------


class VersionedStore:
    """Every version of every key, oldest first (the last one is current); delete markers are
    ``None`` bodies. GETs by version id, ranges as S3 serves them."""

    def __init__(self) -> None:
        self.versions: dict[str, list[tuple[str, bytes | None, dict[str, str]]]] = {}
        self.gets: list[tuple[str | None, str | None]] = []

    def add(self, key: str, version_id: str, body: bytes | None, meta: dict[str, str]) -> None:
        self.versions.setdefault(key, []).append((version_id, body, meta))

    def find(self, key: str, version_id: str | None) -> tuple[bytes, dict[str, str]]:
        entries = self.versions.get(key, [])
        found = entries[-1:] if version_id is None else [e for e in entries if e[0] == version_id]
        if not found or found[0][1] is None:
            raise ObjectNotFound(f"{key} {version_id}: NoSuchVersion", code="NoSuchVersion")
        _, body, meta = found[0]
        assert body is not None
        return body, meta

    def set_meta(self, key: str, version_id: str | None, meta: dict[str, str]) -> None:
        entries = self.versions[key]
        index = (
            len(entries) - 1 if version_id is None else [e[0] for e in entries].index(version_id)
        )
        entries[index] = (entries[index][0], entries[index][1], meta)

    def get(
        self,
        url: S3Url,
        byte_range: str | None = None,
        if_match: str | None = None,
        *,
        version_id: str | None = None,
    ) -> Any:
        self.gets.append((version_id, byte_range))
        data, meta = self.find(url.key, version_id)
        response: dict[str, Any] = {"Metadata": dict(meta), "ETag": '"etag"'}
        if byte_range:
            first, last = (int(x) for x in byte_range.removeprefix("bytes=").split("-"))
            last = min(last, len(data) - 1)
            response["ContentRange"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
        response["ContentLength"] = len(data)
        response["Body"] = io.BytesIO(data)
        return response

    def read_stream(self, response: Any, what: str) -> Any:
        return response["Body"]

    def list_versions(self, url: S3Url) -> list[VersionInfo]:
        return [
            VersionInfo(key, version_id, index == len(entries) - 1, len(body), "2026-01-01")
            for key, entries in sorted(self.versions.items())
            if key.startswith(url.key)
            for index, (version_id, body, _) in reversed(list(enumerate(entries)))
            if body is not None
        ]


class VersionedApi:
    """``read_header`` and ``?rewrap`` by version over a :class:`VersionedStore`."""

    def __init__(self, store: VersionedStore) -> None:
        self.store = store
        self.header_reads: list[tuple[str, str | None]] = []
        self.envelope_reads: list[tuple[str, str | None]] = []
        #: the versions whose header the gateway has stored (None: all of them)
        self.stored: set[tuple[str, str]] | None = None
        self.batches: list[list[RewrapItem]] = []
        self.before_rewrap: Any = None

    def envelopes(self, bucket: str, refs: list[tuple[str, str | None]]) -> list[EnvelopeResult]:
        out = []
        for key, version_id in refs:
            self.envelope_reads.append((key, version_id))
            try:
                data, meta = self.store.find(key, version_id)
            except ObjectNotFound:
                code = "NoSuchKey" if version_id is None else "NoSuchVersion"
                out.append(EnvelopeResult(key, version_id, code, "gone"))
                continue
            found = version_id or "current"
            stored = self.stored is None or (key, found) in self.stored
            prefixed = {f"x-amz-meta-{name}": value for name, value in meta.items()}
            header = data[:HEADER_LEN] if stored else None
            out.append(EnvelopeResult(key, found, "ok", "", prefixed, header))
        return out

    def read_header(self, url: S3Url, version_id: str | None = None) -> ObjectHead:
        self.header_reads.append((url.key, version_id))
        data, meta = self.store.find(url.key, version_id)
        prefixed = {f"x-amz-meta-{name}": value for name, value in meta.items()}
        return ObjectHead(data[:HEADER_LEN], prefixed, '"etag"', len(data))

    def recipients(self, url: S3Url) -> Recipients:
        envelope = parse_envelope_headers(self.store.find(url.key, None)[1])
        return Recipients(envelope.content_id, envelope.wrapped_key, ())

    def rewrap(self, bucket: str, items: list[RewrapItem]) -> list[RewrapResult]:
        self.batches.append(list(items))
        if self.before_rewrap is not None:
            self.before_rewrap(items)
        results = []
        for item in items:
            try:
                _, meta = self.store.find(item.key, item.version_id)
            except ObjectNotFound:
                results.append(RewrapResult(item.key, "NoSuchVersion", "gone", item.version_id))
                continue
            current = (meta["bp-key-id"], int(meta["bp-key-version"]))
            if current != (item.expect_key_id, item.expect_key_version):
                results.append(
                    RewrapResult(
                        item.key, "PreconditionFailed", f"under {current}", item.version_id
                    )
                )
                continue
            content_id = bytes.fromhex(meta["bp-content-id"])
            new = {**meta, **envelope_headers(item.wrapped, content_id, prefixed=False)}
            self.store.set_meta(item.key, item.version_id, new)
            results.append(RewrapResult(item.key, "ok", "", item.version_id))
        return results


def put_version(
    store: VersionedStore, key: str, version_id: str, owner: Any, data: bytes | None = None
) -> bytes:
    plaintext = data if data is not None else f"{key} as of {version_id}".encode()
    sealed = seal(plaintext, tenant=TENANT, bucket=BUCKET, key=key, recipients=[owner])
    assert isinstance(sealed.body, bytes)
    meta = {k.removeprefix("x-amz-meta-"): v for k, v in sealed.headers.items()}
    store.add(key, version_id, sealed.body, meta)
    return plaintext


def read_version(store: VersionedStore, key: str, version_id: str, private: PrivateKey) -> bytes:
    body, meta = store.find(key, version_id)
    return unseal(body, meta, private, tenant=TENANT, bucket=BUCKET, key=key)


def refs(store: VersionedStore, prefix: str = "") -> list[VersionRef]:
    return [
        VersionRef(v.key, v.version_id, v.is_latest)
        for v in store.list_versions(S3Url(BUCKET, prefix))
    ]


@pytest.fixture
def keys() -> tuple[x25519.X25519PrivateKey, ...]:
    return tuple(x25519.X25519PrivateKey.generate() for _ in range(3))


def test_every_version_is_rewrapped_and_outcomes_name_the_version(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, other = keys
    old_ref, new_ref = PublicKeyRef(old.public_key()), PublicKeyRef(new.public_key(), 2)
    store = VersionedStore()
    api = VersionedApi(store)
    plaintexts = {v: put_version(store, "doc", v, old_ref) for v in ("v1", "v2", "v3")}
    store.add("doc", "marker", None, {})  # a delete marker on top: listed nowhere
    plaintexts["v4"] = put_version(store, "doc", "v4", old_ref)
    put_version(store, "doc", "v5", PublicKeyRef(other.public_key()))
    put_version(store, "solo", "null", old_ref)
    plan = RotationPlan(BUCKET, TENANT, {key_id(old): old}, new_ref, batch_size=2, workers=3)
    reports: list[ObjectOutcome] = []

    summary = rotate(api, refs(store), plan, report=reports.append)  # type: ignore[arg-type]

    assert (summary.listed, summary.rotated, summary.skipped, summary.failed) == (6, 5, 1, 0)
    assert sorted(api.envelope_reads) == sorted(
        [("doc", v) for v in ("v1", "v2", "v3", "v4", "v5")] + [("solo", "null")]
    )
    assert api.header_reads == []  # every header was stored: no ranged read
    sent = [(item.key, item.version_id) for batch in api.batches for item in batch]
    assert sorted(sent) == sorted(
        [("doc", v) for v in ("v1", "v2", "v3", "v4")] + [("solo", "null")]
    )
    for version_id, plaintext in plaintexts.items():
        assert read_version(store, "doc", version_id, new) == plaintext
        with pytest.raises(DecryptionFailed):
            read_version(store, "doc", version_id, old)
    assert read_version(store, "solo", "null", new) == b"solo as of null"
    [skipped] = reports
    assert (skipped.key, skipped.version_id, skipped.is_latest) == ("doc", "v5", True)
    assert "not a --from key" in skipped.reason

    # Again: every version is already under the new key, nothing is sent.
    api.batches.clear()
    reports.clear()
    again = rotate(api, refs(store), plan, report=reports.append)  # type: ignore[arg-type]
    assert (again.rotated, again.skipped, again.failed) == (0, 6, 0)
    assert api.batches == []
    notes = sorted(r.version_note for r in reports)
    assert notes == ["", *(f" (version v{i})" for i in range(1, 6))]  # solo: unversioned


def test_version_note_names_what_the_key_alone_does_not() -> None:
    assert ObjectOutcome("k", "skipped").version_note == ""
    assert ObjectOutcome("k", "skipped", version_id="null").version_note == ""
    noncurrent_null = ObjectOutcome("k", "skipped", version_id="null", is_latest=False)
    assert noncurrent_null.version_note == " (version null)"
    assert ObjectOutcome("k", "rotated", version_id="v9").version_note == " (version v9)"


def test_versions_deleted_or_rotated_meanwhile_are_reported_with_their_version(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, _ = keys
    store = VersionedStore()
    api = VersionedApi(store)
    for version_id in ("v1", "v2", "v3"):
        put_version(store, "doc", version_id, PublicKeyRef(old.public_key()))

    def meanwhile(items: list[RewrapItem]) -> None:
        store.versions["doc"] = [e for e in store.versions["doc"] if e[0] != "v1"]
        _, meta = store.find("doc", "v2")
        store.set_meta("doc", "v2", {**meta, "bp-key-id": "bp:elsewhere"})

    api.before_rewrap = meanwhile
    plan = RotationPlan(BUCKET, TENANT, {key_id(old): old}, PublicKeyRef(new.public_key(), 2))
    reports: list[ObjectOutcome] = []
    summary = rotate(api, refs(store), plan, report=reports.append)  # type: ignore[arg-type]
    assert (summary.rotated, summary.skipped, summary.failed) == (1, 1, 1)
    by_version = {r.version_id: r for r in reports}
    assert by_version["v1"].outcome == "skipped" and "deleted" in by_version["v1"].reason
    assert by_version["v2"].outcome == "failed" and "precondition" in by_version["v2"].reason
    assert read_version(store, "doc", "v3", new) == b"doc as of v3"


def test_bare_keys_still_rotate_the_current_version(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    old, new, _ = keys
    store = VersionedStore()
    api = VersionedApi(store)
    put_version(store, "doc", "v1", PublicKeyRef(old.public_key()))
    put_version(store, "doc", "v2", PublicKeyRef(old.public_key()))
    plan = RotationPlan(BUCKET, TENANT, {key_id(old): old}, PublicKeyRef(new.public_key(), 2))
    summary = rotate(api, ["doc"], plan, report=lambda _: None)  # type: ignore[arg-type]
    assert summary.rotated == 1 and api.envelope_reads == [("doc", None)]
    assert [item.version_id for item in api.batches[0]] == [None]
    assert read_version(store, "doc", "v2", new) == b"doc as of v2"
    assert read_version(store, "doc", "v1", old) == b"doc as of v1"


def test_download_reads_the_version_asked_for_whole_and_ranged(
    keys: tuple[x25519.X25519PrivateKey, ...],
) -> None:
    owner, stranger, _ = keys
    store = VersionedStore()
    api = VersionedApi(store)
    first = put_version(store, "doc", "v1", PublicKeyRef(owner.public_key()), os.urandom(70_000))
    put_version(store, "doc", "v2", PublicKeyRef(owner.public_key()), b"current")
    url = S3Url(BUCKET, "doc")
    for rng, expected in ((None, first), (PlaintextRange(65_530, 65_545), first[65_530:65_546])):
        sink = io.BytesIO()
        store.gets.clear()
        download(
            store,  # type: ignore[arg-type]
            api,  # type: ignore[arg-type]
            url,
            sink,
            Holder(owner),
            tenant=TENANT,
            byte_range=rng,
            version_id="v1",
        )
        assert sink.getvalue() == expected
        assert store.gets and all(version == "v1" for version, _ in store.gets)
    # The recipient list is the current version's: for a noncurrent version that is not the
    # one read, only the primary wrap is tried (a stranger is not a recipient).
    sink = io.BytesIO()
    with pytest.raises(DecryptionFailed):
        download(
            store,  # type: ignore[arg-type]
            api,  # type: ignore[arg-type]
            url,
            sink,
            Holder(stranger),
            tenant=TENANT,
            version_id="v1",
        )


# -- the commands ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from client.keyring import Keyring

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
    keyring = Keyring(tmp_path / "keys", scrypt_log2_n=12)
    keyring.generate("old", "x25519", "pw")
    keyring.generate("new", "p256", "pw")
    store = VersionedStore()
    api = VersionedApi(store)
    monkeypatch.setattr(CommandContext, "store", lambda self, **kw: store)
    monkeypatch.setattr(CommandContext, "api", lambda self, connections=4: _Closing(api))
    return keyring, store, api


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_bp_rotate_rotates_every_version_and_names_versions_in_reports(
    cli_env: Any, tmp_path: Path
) -> None:
    keyring, store, _ = cli_env
    old = keyring.load_public("old")
    old_ref = PublicKeyRef(old.public_key, old.key_version)
    for version_id in ("v1", "v2", "v3"):
        put_version(store, "docs/a", version_id, old_ref)
    store.add("docs/a", "dm", None, {})
    put_version(store, "docs/b", "null", old_ref)

    code, out, err = run("rotate", "--from", "old", "--to", "new", "s3://bkt/docs/")
    assert code == 0 and out == "", err
    assert "4 rotated, 0 skipped, 0 failed of 4 objects" in err
    new_private = keyring.load_private("new", "pw")
    for version_id in ("v1", "v2", "v3"):
        assert read_version(store, "docs/a", version_id, new_private) == (
            f"docs/a as of {version_id}".encode()
        )

    code, out, err = run("rotate", "--from", "old", "--to", "new", "s3://bkt/docs/", "-q")
    assert code == 0 and err == ""
    new_id = keyring.info("new").key_id
    assert sorted(out.splitlines()) == [
        f"skipped s3://bkt/docs/a (version {v}): already wrapped under the new key {new_id} v1"
        for v in ("v1", "v2", "v3")
    ] + [f"skipped s3://bkt/docs/b: already wrapped under the new key {new_id} v1"]

    # bp get / verify --version-id read a noncurrent version with the new key.
    code, _, err = run("get", "s3://bkt/docs/a", str(tmp_path / "v1"), "--version-id", "v1")
    assert code == 0, err
    assert (tmp_path / "v1").read_bytes() == b"docs/a as of v1" and "(version v1)" in err
    code, out, _ = run("verify", "s3://bkt/docs/a", "--version-id", "v2", "--key", "new")
    assert code == 0 and out.startswith("OK s3://bkt/docs/a (version v2): ")
    stale = run("verify", "s3://bkt/docs/a", "--version-id", "v2", "--key", "old")
    assert stale[0] == 6 and "not a recipient" in stale[2]
    assert run("get", "s3://bkt/docs/a", str(tmp_path / "x"), "--version-id", "")[0] == 2
    assert run("get", "s3://bkt/docs/a", str(tmp_path / "x"), "--version-id", "dm")[0] == 3


class _Closing:
    def __init__(self, api: VersionedApi) -> None:
        self.api = api

    def __enter__(self) -> VersionedApi:
        return self.api

    def __exit__(self, *exc: object) -> None:
        pass

"""The BPSNAP1 snapshot file: descriptor framing, encryption to the operator's key, and
refusal of a damaged file, a spliced descriptor and a wrong key (no services)."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from client import PublicKeyRef, seal_stream
from jobs.restore import RestoreError, decrypt_snapshot, private_key_from_pem
from jobs.snapshot_format import (
    BINDING_BUCKET,
    BINDING_TENANT,
    SnapshotFormatError,
    encode_descriptor,
    read_descriptor,
)


def pem(key: x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_snapshot(path: Path, plaintext: bytes, key: x25519.X25519PrivateKey, name: str) -> None:
    sealed = seal_stream(
        [plaintext],
        len(plaintext),
        tenant=BINDING_TENANT,
        bucket=BINDING_BUCKET,
        key=name,
        recipients=[PublicKeyRef(key.public_key())],
        seg_log2=16,
    )
    descriptor = {
        "v": 1,
        "name": name,
        "created_at": 0,
        "pg_dump_version": "pg_dump (PostgreSQL) 15",
        "format": "pg_dump-custom",
        "plaintext_length": len(plaintext),
        "binding": {"tenant": BINDING_TENANT, "bucket": BINDING_BUCKET, "key": name},
        "envelope": sealed.headers,
    }
    assert not isinstance(sealed.body, bytes)
    path.write_bytes(b"".join(itertools.chain([encode_descriptor(descriptor)], sealed.body)))


def test_descriptor_round_trip_and_bad_magic() -> None:
    blob = encode_descriptor({"v": 1, "name": "s"}) + b"BODY"
    handle = io.BytesIO(blob)
    assert read_descriptor(handle) == {"v": 1, "name": "s"}
    assert handle.read() == b"BODY"
    with pytest.raises(SnapshotFormatError):
        read_descriptor(io.BytesIO(b"PGDMP" + blob))
    with pytest.raises(SnapshotFormatError):
        read_descriptor(io.BytesIO(blob[:12]))


def test_encrypted_to_the_operator_and_decrypts_with_the_private_key(tmp_path: Path) -> None:
    key = x25519.X25519PrivateKey.generate()
    plaintext = os.urandom(200_000) + b"object_versions payroll"
    make_snapshot(tmp_path / "s.bpsnap", plaintext, key, "snap-1")
    stored = (tmp_path / "s.bpsnap").read_bytes()
    assert b"payroll" not in stored  # what backends hold is ciphertext
    descriptor = decrypt_snapshot(tmp_path / "s.bpsnap", key, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == plaintext
    assert descriptor["name"] == "snap-1"


def test_wrong_key_tampering_and_splicing_are_refused(tmp_path: Path) -> None:
    key = x25519.X25519PrivateKey.generate()
    make_snapshot(tmp_path / "s.bpsnap", os.urandom(100_000), key, "snap-1")
    other = x25519.X25519PrivateKey.generate()
    with pytest.raises(RestoreError):
        decrypt_snapshot(tmp_path / "s.bpsnap", other, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    data = bytearray((tmp_path / "s.bpsnap").read_bytes())
    data[-100] ^= 1
    (tmp_path / "t.bpsnap").write_bytes(bytes(data))
    with pytest.raises(RestoreError):
        decrypt_snapshot(tmp_path / "t.bpsnap", key, tmp_path / "out")

    # A descriptor that claims another snapshot's name: the BP1 binding refuses it.
    raw = (tmp_path / "s.bpsnap").read_bytes()
    descriptor = read_descriptor(io.BytesIO(raw))
    body = raw[len(encode_descriptor(descriptor)) :]
    descriptor["name"] = "snap-2"
    descriptor["binding"]["key"] = "snap-2"
    (tmp_path / "u.bpsnap").write_bytes(encode_descriptor(descriptor) + body)
    with pytest.raises(RestoreError):
        decrypt_snapshot(tmp_path / "u.bpsnap", key, tmp_path / "out")
    assert json.loads(json.dumps(descriptor))  # the descriptor itself is plain JSON


def test_private_key_from_pem_checks_the_passphrase() -> None:
    key = x25519.X25519PrivateKey.generate()
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    assert private_key_from_pem(locked, b"secret").public_key().public_bytes_raw() == (
        key.public_key().public_bytes_raw()
    )
    assert private_key_from_pem(pem(key), None)
    with pytest.raises(RestoreError):
        private_key_from_pem(locked, b"wrong")

"""The directory keyring: generation, passphrase protection, versions, file modes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

import client
from client import keyring as keyring_module
from client.errors import KeyExists, KeyNotFound, KeyringError, UnsupportedKey, WrongPassphrase
from client.keyring import Keyring

PASS = "correct horse battery staple"


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys", scrypt_log2_n=10)  # cheap KDF for tests only


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("x25519", x25519.X25519PrivateKey),
        ("p256", ec.EllipticCurvePrivateKey),
        ("rsa", rsa.RSAPrivateKey),
    ],
)
def test_generate_load_and_use(ring: Keyring, kind: str, cls: type) -> None:
    info = ring.generate("alice", kind, PASS)  # type: ignore[arg-type]
    assert (info.name, info.version, info.type) == ("alice", 1, kind)
    private = ring.load_private("alice", PASS)
    assert isinstance(private, cls)
    assert client.key_id(private) == info.key_id
    ref = ring.load_public("alice")
    assert (ref.key_id, ref.key_version) == (info.key_id, 1)
    if kind == "rsa":
        assert private.key_size == 3072  # type: ignore[union-attr]
    names = {"tenant": "t", "bucket": "b", "key": "k"}
    sealed = client.seal(b"secret", recipients=[ref], **names)
    assert isinstance(sealed.body, bytes)
    assert client.unseal(sealed.body, sealed.headers, private, **names) == b"secret"


def test_files_and_modes(ring: Keyring) -> None:
    ring.generate("bob", "x25519", PASS)
    version_dir = ring.path / "bob" / "v1"
    assert mode(ring.path) == 0o700 and mode(ring.path / "bob") == 0o700
    assert mode(version_dir / "private.pem") == 0o600
    pem = (version_dir / "private.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    meta = json.loads((version_dir / "key.json").read_text())
    assert meta["kdf"]["name"] == "scrypt" and meta["kdf"]["log2_n"] == 10
    assert not [p for p in (ring.path / "bob").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(TypeError):  # not loadable without a password
        serialization.load_pem_private_key(pem, password=None)


def test_wrong_passphrase(ring: Keyring) -> None:
    ring.generate("carol", "p256", PASS)
    with pytest.raises(WrongPassphrase, match="carol"):
        ring.load_private("carol", "wrong horse")
    with pytest.raises(WrongPassphrase):
        ring.load_private("carol", PASS.encode() + b" ")
    assert isinstance(ring.load_private("carol", PASS.encode()), ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError):
        ring.load_private("carol", "")


def test_export_public_pem(ring: Keyring) -> None:
    info = ring.generate("dave", "x25519", PASS)
    pem = ring.export_public_pem("dave")
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pem.encode())
    assert client.key_id(public) == info.key_id  # type: ignore[arg-type]


def test_versions_and_rotation(ring: Keyring) -> None:
    first = ring.generate("erin", "x25519", PASS)
    with pytest.raises(WrongPassphrase):
        ring.rotate("erin", "nope")
    second = ring.rotate("erin", PASS)
    assert second.version == 2 and second.key_id != first.key_id
    assert ring.versions("erin") == [1, 2]
    assert ring.load_public("erin").key_version == 2
    assert ring.load_public("erin", 1).key_id == first.key_id
    assert client.key_id(ring.load_private("erin", PASS, version=1)) == first.key_id
    with pytest.raises(KeyNotFound):
        ring.load_public("erin", 3)


def test_list_exists_and_missing(ring: Keyring) -> None:
    assert ring.list_keys() == []
    ring.generate("b-key", "x25519", PASS)
    ring.generate("a-key", "p256", PASS)
    ring.rotate("a-key", PASS)
    listed = [(k.name, k.version, k.type) for k in ring.list_keys()]
    assert listed == [("a-key", 1, "p256"), ("a-key", 2, "p256"), ("b-key", 1, "x25519")]
    with pytest.raises(KeyExists):
        ring.generate("a-key", "x25519", PASS)
    with pytest.raises(KeyNotFound):
        ring.load_public("nobody")
    with pytest.raises(KeyNotFound):
        ring.load_private("nobody", PASS)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65, "sp ace"])
def test_names_cannot_escape_the_keyring(ring: Keyring, name: str) -> None:
    with pytest.raises(ValueError):
        ring.generate(name, "x25519", PASS)


def test_refuses_weak_or_unknown_keys(ring: Keyring) -> None:
    with pytest.raises(UnsupportedKey):
        ring.generate("weak", "rsa", PASS, bits=2048)
    with pytest.raises(UnsupportedKey):
        ring.generate("odd", "ed25519", PASS)  # type: ignore[arg-type]
    assert ring.list_keys() == []


def test_swapped_key_file_is_detected(ring: Keyring) -> None:
    ring.generate("one", "x25519", PASS)
    ring.generate("two", "x25519", PASS)
    (ring.path / "one" / "v1" / "public.pem").write_bytes(
        (ring.path / "two" / "v1" / "public.pem").read_bytes()
    )
    with pytest.raises(KeyringError, match="key id"):
        ring.load_public("one")


def test_default_location_and_module_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BP_KEYRING", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Keyring().path == tmp_path / "home" / ".config" / "bp" / "keys"
    monkeypatch.setenv("BP_KEYRING", str(tmp_path / "env-keys"))
    assert Keyring().path == tmp_path / "env-keys"
    info = Keyring(scrypt_log2_n=10).generate("frank", "p256", PASS)
    assert keyring_module.load_public("frank").key_id == info.key_id
    assert client.key_id(keyring_module.load_private("frank", PASS)) == info.key_id
    assert keyring_module.export_public_pem("frank").startswith("-----BEGIN PUBLIC KEY-----")
    assert [k.name for k in keyring_module.list_keys()] == ["frank"]

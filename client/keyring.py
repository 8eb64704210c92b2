"""A directory keyring of recipient key pairs, private halves encrypted under a passphrase.

Layout (``$BP_KEYRING``, default ``~/.config/bp/keys``; directories 0700)::

    <name>/v<version>/private.pem   PKCS#8, BestAvailableEncryption, mode 0600
    <name>/v<version>/public.pem    SubjectPublicKeyInfo PEM, mode 0644
    <name>/v<version>/key.json      type, version, key id, creation time, KDF parameters

A version directory is written under a temporary name and renamed into place, so a version
either exists completely or not at all, and two writers cannot both create ``v3``.

Why the passphrase is stretched before PKCS#8 sees it: ``cryptography`` 50 encrypts PKCS#8 with
PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) at a fixed 2048 iterations and offers no way to raise
that for PKCS#8, which is cheap to guess against offline. The PKCS#8 password is therefore
``hex(scrypt(passphrase, salt, N=2**17, r=8, p=1, 32 bytes))`` with the salt and parameters in
``key.json``. The file stays standard PKCS#8 (``openssl pkey -passin pass:<hex>`` opens it
given the stretched password); the passphrase itself costs ~128 MiB and a fraction of a second
per guess.

What this module does not do: agent caching of unlocked keys, hardware tokens, or deleting
keys (old versions are needed to read old objects until they are re-wrapped).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from client.errors import KeyExists, KeyNotFound, KeyringError, UnsupportedKey, WrongPassphrase
from client.recipient import MAX_RSA_BITS, MIN_RSA_BITS, PrivateKey, PublicKeyRef, key_id

__all__ = [
    "DEFAULT_KEYRING",
    "ENV_VAR",
    "KeyInfo",
    "KeyType",
    "Keyring",
    "export_public_pem",
    "generate",
    "list_keys",
    "load_private",
    "load_public",
    "rotate",
]

ENV_VAR = "BP_KEYRING"
DEFAULT_KEYRING = "~/.config/bp/keys"
KeyType = Literal["rsa", "x25519", "p256"]
_KEY_TYPES = ("rsa", "x25519", "p256")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_RE = re.compile(r"v([1-9][0-9]{0,9})")
_FORMAT = "bp-keyring-1"
_SCRYPT_R, _SCRYPT_P = 8, 1
DEFAULT_SCRYPT_LOG2_N = 17


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key version in the keyring (public facts only)."""

    name: str
    version: int
    type: KeyType
    key_id: str
    created: str


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not raw:
        raise ValueError("an empty passphrase would leave the private key unprotected")
    return raw


def _stretch(passphrase: bytes, kdf: dict[str, object]) -> bytes:
    salt, log2_n = kdf.get("salt"), kdf.get("log2_n")
    if kdf.get("name") != "scrypt" or not isinstance(salt, str) or not isinstance(log2_n, int):
        raise KeyringError("unsupported key-file KDF parameters")
    if not 10 <= log2_n <= 22:
        raise KeyringError("key-file scrypt cost out of range")
    derived = Scrypt(
        salt=bytes.fromhex(salt), length=32, n=1 << log2_n, r=_SCRYPT_R, p=_SCRYPT_P
    ).derive(passphrase)
    return derived.hex().encode("ascii")


def _new_private_key(key_type: str, bits: int) -> PrivateKey:
    if key_type == "rsa":
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise UnsupportedKey(f"RSA keys must be {MIN_RSA_BITS}..{MAX_RSA_BITS} bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "x25519":
        return x25519.X25519PrivateKey.generate()
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise UnsupportedKey(f"key type must be one of {', '.join(_KEY_TYPES)}")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Keyring:
    """A keyring rooted at ``path`` (default: ``$BP_KEYRING`` or ``~/.config/bp/keys``).

    ``scrypt_log2_n`` only affects keys written from now on (tests lower it; loading always
    uses the parameters stored with each key).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> None:
        if path is None:
            path = os.environ.get(ENV_VAR) or DEFAULT_KEYRING
        self.path = Path(path).expanduser()
        self._scrypt_log2_n = scrypt_log2_n

    def __repr__(self) -> str:
        return f"Keyring({str(self.path)!r})"

    # -- paths -----------------------------------------------------------------------------

    def _key_dir(self, name: str) -> Path:
        if not _NAME_RE.fullmatch(name):
            raise ValueError("key names are 1..64 of A-Z a-z 0-9 . _ - and start alphanumeric")
        return self.path / name

    def versions(self, name: str) -> list[int]:
        """The versions of ``name``, ascending; empty if there is no such key."""
        key_dir = self._key_dir(name)
        if not key_dir.is_dir():
            return []
        found = []
        for entry in key_dir.iterdir():
            match = _VERSION_RE.fullmatch(entry.name)
            if match and (entry / "key.json").is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def _version_dir(self, name: str, version: int | None) -> tuple[Path, int]:
        versions = self.versions(name)
        if not versions:
            raise KeyNotFound(f"no key named {name!r} in {self.path}")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise KeyNotFound(f"key {name!r} has no version {version}")
        return self._key_dir(name) / f"v{version}", version

    def _meta(self, version_dir: Path) -> dict[str, object]:
        try:
            meta = json.loads((version_dir / "key.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyringError(f"unreadable key metadata in {version_dir}") from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise KeyringError(f"unknown key metadata format in {version_dir}")
        return meta

    def _info(self, name: str, version_dir: Path) -> KeyInfo:
        meta = self._meta(version_dir)
        return KeyInfo(
            name=name,
            version=int(str(meta["version"])),
            type=str(meta["type"]),  # type: ignore[arg-type]
            key_id=str(meta["key_id"]),
            created=str(meta["created"]),
        )

    # -- writing ---------------------------------------------------------------------------

    def _store(
        self, name: str, version: int, key_type: str, private_key: PrivateKey, passphrase: bytes
    ) -> KeyInfo:
        key_dir = self._key_dir(name)
        kdf: dict[str, object] = {
            "name": "scrypt",
            "log2_n": self._scrypt_log2_n,
            "r": _SCRYPT_R,
            "p": _SCRYPT_P,
            "salt": secrets.token_bytes(16).hex(),
        }
        password = _stretch(passphrase, kdf)
        private_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        info = KeyInfo(
            name=name,
            version=version,
            type=key_type,  # type: ignore[arg-type]
            key_id=key_id(private_key),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        meta = {
            "format": _FORMAT,
            "type": info.type,
            "version": info.version,
            "key_id": info.key_id,
            "created": info.created,
            "kdf": kdf,
        }
        staging = key_dir / f".tmp-{secrets.token_hex(8)}"
        os.mkdir(staging, 0o700)
        try:
            _write(staging / "private.pem", private_pem, 0o600)
            _write(staging / "public.pem", public_pem, 0o644)
            _write(staging / "key.json", json.dumps(meta, indent=2).encode() + b"\n", 0o644)
            try:
                os.rename(staging, key_dir / f"v{version}")
            except OSError as exc:  # another writer created this version first
                raise KeyExists(f"key {name!r} version {version} already exists") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return info

    def generate(
        self, name: str, type: KeyType, passphrase: str | bytes, bits: int = MIN_RSA_BITS
    ) -> KeyInfo:
        """Create key ``name`` (version 1); raises :class:`KeyExists` if the name is taken."""
        if type not in _KEY_TYPES:
            raise UnsupportedKey(f"key type must be one of {', '.join(_KEY_TYPES)}")
        secret = _passphrase_bytes(passphrase)
        key_dir = self._key_dir(name)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        try:
            os.mkdir(key_dir, 0o700)
        except FileExistsError:
            raise KeyExists(f"a key named {name!r} already exists; rotate it instead") from None
        try:
            return self._store(name, 1, type, _new_private_key(type, bits), secret)
        except BaseException:
            shutil.rmtree(key_dir, ignore_errors=True)
            raise

    def rotate(self, name: str, passphrase: str | bytes, bits: int | None = None) -> KeyInfo:
        """Add the next version of ``name``, same type (RSA keeps its size unless ``bits``).

        The passphrase must open the current version, so a rotation cannot be done by someone
        who merely can write to the directory.
        """
        current = self.load_private(name, passphrase)
        info = self.info(name)
        if bits is None:
            bits = current.key_size if isinstance(current, rsa.RSAPrivateKey) else MIN_RSA_BITS
        secret = _passphrase_bytes(passphrase)
        private_key = _new_private_key(info.type, bits)
        return self._store(name, info.version + 1, info.type, private_key, secret)

    # -- reading ---------------------------------------------------------------------------

    def info(self, name: str, version: int | None = None) -> KeyInfo:
        """Public facts about a key version (default: the latest)."""
        version_dir, _ = self._version_dir(name, version)
        return self._info(name, version_dir)

    def list_keys(self) -> list[KeyInfo]:
        """Every version of every key, by name then version."""
        return list(self._iter_infos())

    def _iter_infos(self) -> Iterator[KeyInfo]:
        if not self.path.is_dir():
            return
        for entry in sorted(self.path.iterdir()):
            if entry.is_dir() and _NAME_RE.fullmatch(entry.name):
                for version in self.versions(entry.name):
                    yield self._info(entry.name, entry / f"v{version}")

    def load_private(
        self, name: str, passphrase: str | bytes, version: int | None = None
    ) -> PrivateKey:
        """Decrypt a private key; raises :class:`WrongPassphrase` if the passphrase is wrong."""
        version_dir, version = self._version_dir(name, version)
        meta = self._meta(version_dir)
        kdf = meta.get("kdf")
        if not isinstance(kdf, dict):
            raise KeyringError(f"key {name!r} v{version} has no KDF parameters")
        password = _stretch(_passphrase_bytes(passphrase), kdf)
        try:
            pem = (version_dir / "private.pem").read_bytes()
        except OSError as exc:
            raise KeyringError(f"cannot read the private key of {name!r} v{version}") from exc
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except ValueError:
            raise WrongPassphrase(
                f"wrong passphrase for key {name!r} v{version} (or a damaged key file)"
            ) from None
        if not isinstance(
            key, rsa.RSAPrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
        ):
            raise KeyringError(f"key {name!r} v{version} is of an unsupported type")
        if key_id(key) != meta.get("key_id"):
            raise KeyringError(f"key {name!r} v{version} does not match its recorded key id")
        return key

    def load_public(self, name: str, version: int | None = None) -> PublicKeyRef:
        """The recipient for ``name`` (default: the latest version), ready for ``wrap``."""
        version_dir, version = self._version_dir(name, version)
        meta = self._meta(version_dir)
        try:
            key = serialization.load_pem_public_key((version_dir / "public.pem").read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyringError(f"cannot read the public key of {name!r} v{version}") from exc
        if not isinstance(
            key, rsa.RSAPublicKey | x25519.X25519PublicKey | ec.EllipticCurvePublicKey
        ):
            raise KeyringError(f"key {name!r} v{version} is of an unsupported type")
        if key_id(key) != meta.get("key_id"):
            raise KeyringError(f"key {name!r} v{version} does not match its recorded key id")
        return PublicKeyRef(key, version)

    def export_public_pem(self, name: str, version: int | None = None) -> str:
        """The public key as SubjectPublicKeyInfo PEM text, to hand to other writers."""
        ref = self.load_public(name, version)
        pem = ref.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")


def generate(
    name: str, type: KeyType, passphrase: str | bytes, bits: int = MIN_RSA_BITS
) -> KeyInfo:
    """:meth:`Keyring.generate` on the default keyring."""
    return Keyring().generate(name, type, passphrase, bits)


def rotate(name: str, passphrase: str | bytes, bits: int | None = None) -> KeyInfo:
    """:meth:`Keyring.rotate` on the default keyring."""
    return Keyring().rotate(name, passphrase, bits)


def load_private(name: str, passphrase: str | bytes, version: int | None = None) -> PrivateKey:
    """:meth:`Keyring.load_private` on the default keyring."""
    return Keyring().load_private(name, passphrase, version)


def load_public(name: str, version: int | None = None) -> PublicKeyRef:
    """:meth:`Keyring.load_public` on the default keyring."""
    return Keyring().load_public(name, version)


def export_public_pem(name: str, version: int | None = None) -> str:
    """:meth:`Keyring.export_public_pem` on the default keyring."""
    return Keyring().export_public_pem(name, version)


def list_keys() -> list[KeyInfo]:
    """:meth:`Keyring.list_keys` on the default keyring."""
    return Keyring().list_keys()

"""Which keys a ``bp`` command uses: recipients to encrypt to, keyring keys to open with.

Recipients are public halves only (a keyring key name, or a PEM public key file), so choosing
them never asks for a passphrase. A private key is unlocked only when an object names it:
:class:`KeyringChoice` matches by key id first, so a reader without a matching key is told so
(exit 6) without being prompted. A passphrase comes from ``BP_PASSPHRASE`` or a prompt on the
terminal (never echoed, never empty), nowhere else.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from client.cli_context import CommandContext
from client.errors import KeyNotFound, WrongKey
from client.exit_codes import UsageError
from client.keyring import KeyInfo, Keyring
from client.recipient import PrivateKey, PublicKeyRef
from client.wrap import WrappedKey

__all__ = ["KeyringChoice", "read_passphrase", "resolve_recipient", "resolve_recipients"]


def _terminal_available() -> bool:
    """Whether getpass can prompt without echo (it reads /dev/tty, not stdin)."""
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def read_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """``BP_PASSPHRASE``, else a prompt on the terminal (never echoed); never an empty one."""
    value = os.environ.get("BP_PASSPHRASE")
    if value:
        return value
    if not _terminal_available():
        raise UsageError("a passphrase is needed: set BP_PASSPHRASE or run bp in a terminal")
    value = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != value:
        raise UsageError("the passphrases do not match")
    if not value:
        raise UsageError("an empty passphrase would leave the private key unprotected")
    return value


def _load_pem_recipient(path: str) -> PublicKeyRef:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
    except ValueError:
        raise UsageError(f"{path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | x25519.X25519PublicKey | ec.EllipticCurvePublicKey):
        raise UsageError(f"{path}: only RSA, X25519 and P-256 public keys can be recipients")
    return PublicKeyRef(key, 1)


def resolve_recipient(keyring: Keyring, name: str, version: int | None = None) -> PublicKeyRef:
    """A keyring key name, or the path of a PEM public key (anything with a ``/`` or ending in
    ``.pem``); only public halves are read, so no passphrase is needed."""
    if os.sep in name or name.endswith(".pem"):
        ref = _load_pem_recipient(name)
        return PublicKeyRef(ref.public_key, version) if version is not None else ref
    return keyring.load_public(name, version)


def resolve_recipients(ctx: CommandContext, names: Sequence[str] | None) -> list[PublicKeyRef]:
    """Public keys to encrypt to; no passphrase needed (only public halves are read)."""
    keyring = ctx.keyring()
    if not names:
        default = ctx.settings.default_key
        if default:
            names = [default]
        else:
            available = sorted({info.name for info in keyring.list_keys()})
            if len(available) != 1:
                choice = ", ".join(available) if available else "none; run bp keygen NAME"
                raise UsageError(
                    f"which recipient key? pass --key NAME or set default_key (keys: {choice})"
                )
            names = available
    refs = [resolve_recipient(keyring, name) for name in names]
    if len({ref.key_id for ref in refs}) != len(refs):
        raise UsageError("the same recipient key is given twice")
    return refs


class KeyringChoice:
    """The keyring keys whose ids an object's wrapped keys name; unlocked only when used.

    Matching by key id needs no passphrase, so a reader without a matching key is told so
    (exit 6) without being prompted, the prompt names the key it is for, and ``holds`` lets
    :mod:`client.sharing` ask for the recipient list only when the primary wrap is not ours.
    """

    def __init__(self, keyring: Keyring, name: str | None) -> None:
        self._keyring = keyring
        self._name = name

    def _infos(self) -> list[KeyInfo]:
        infos = self._keyring.list_keys()
        if self._name is not None:
            infos = [info for info in infos if info.name == self._name]
            if not infos:
                raise KeyNotFound(f"no key named {self._name!r} in {self._keyring.path}")
        return infos

    def holds(self, wrapped: Sequence[WrappedKey]) -> bool:
        wanted = {w.key_id for w in wrapped}
        return any(info.key_id in wanted for info in self._infos())

    def unlock(self, wrapped: Sequence[WrappedKey]) -> PrivateKey:
        wanted = {w.key_id for w in wrapped}
        matches = [info for info in self._infos() if info.key_id in wanted]
        readable = ", ".join(sorted(f"{w.key_id} v{w.key_version}" for w in wrapped))
        if not matches:
            name = self._name
            whose = f"key {name!r}" if name is not None else f"no key in {self._keyring.path}"
            verb = "is not" if name is not None else "is"
            raise WrongKey(f"the object is encrypted for {readable}; {whose} {verb} a recipient")
        info = matches[-1]
        return self._keyring.load_private(
            info.name, read_passphrase(f"passphrase for key {info.name!r}"), info.version
        )

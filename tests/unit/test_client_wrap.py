"""Data-key wrapping for the three algorithms, the wrapped-key encoding, and the envelope."""

from __future__ import annotations

import base64
import functools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

import client
from client.envelope import (
    CONTENT_ID,
    KEY_ID,
    KEY_VERSION,
    MAX_USER_METADATA,
    WRAP_ALG,
    WRAPPED_KEY,
    metadata_size,
)
from client.errors import (
    BindingMismatch,
    InvalidEnvelope,
    MalformedHeader,
    Tampered,
    UnsupportedKey,
    WrongKey,
    WrongKeyType,
)
from client.format import ObjectBinding
from client.stream import Encryptor
from client.wrap import WrappedKey

DEK = bytes(range(32))
BINDING = ObjectBinding("acme", "photos", "a/b.jpg", bytes(16))


@functools.cache
def private_key(kind: str) -> Any:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise AssertionError(kind)


KINDS = ["rsa3072", "rsa4096", "x25519", "p256"]
ALGS = {
    "rsa3072": "rsa-oaep-256",
    "rsa4096": "rsa-oaep-256",
    "x25519": "x25519-hkdf-aes256gcm",
    "p256": "p256-ecdh-hkdf-aes256gcm",
}


def header_for(length: int = 10, binding: ObjectBinding = BINDING) -> bytes:
    return Encryptor(binding, length).header_bytes


@pytest.mark.parametrize("kind", KINDS)
def test_wrap_unwrap_round_trip(kind: str) -> None:
    key = private_key(kind)
    ref = client.PublicKeyRef(key.public_key(), 4)
    header = header_for()
    wrapped = client.wrap(DEK, ref, header)
    assert (wrapped.alg, wrapped.key_id, wrapped.key_version) == (ALGS[kind], ref.key_id, 4)
    assert client.unwrap(wrapped, key, header) == DEK
    assert WrappedKey.from_bytes(wrapped.to_bytes()) == wrapped
    assert client.wrap(DEK, ref, header).payload != wrapped.payload  # randomised


@pytest.mark.parametrize("kind", KINDS)
def test_wrap_is_bound_to_the_header(kind: str) -> None:
    key = private_key(kind)
    wrapped = client.wrap(DEK, client.PublicKeyRef(key.public_key()), header_for())
    with pytest.raises(Tampered):
        client.unwrap(wrapped, key, header_for())  # another object's header
    with pytest.raises(MalformedHeader):
        client.unwrap(wrapped, key, b"not a header")


@pytest.mark.parametrize("kind", KINDS)
def test_relabelled_or_damaged_wrap_fails(kind: str) -> None:
    key = private_key(kind)
    header = header_for()
    wrapped = client.wrap(DEK, client.PublicKeyRef(key.public_key(), 2), header)
    relabelled = WrappedKey(wrapped.alg, wrapped.key_id, 3, wrapped.payload)
    with pytest.raises(Tampered):
        client.unwrap(relabelled, key, header)
    damaged = bytearray(wrapped.payload)
    damaged[-1] ^= 1
    with pytest.raises(Tampered):
        client.unwrap(WrappedKey(wrapped.alg, wrapped.key_id, 2, bytes(damaged)), key, header)
    renamed = WrappedKey(wrapped.alg, "bp:someone-else", 2, wrapped.payload)
    with pytest.raises(WrongKey):
        client.unwrap(renamed, key, header)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_private_key_of_the_same_type(kind: str) -> None:
    wrong = {
        "rsa3072": lambda: private_key("rsa4096"),
        "rsa4096": lambda: private_key("rsa3072"),
        "x25519": x25519.X25519PrivateKey.generate,
        "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    }[kind]()
    header = header_for()
    wrapped = client.wrap(DEK, client.PublicKeyRef(private_key(kind).public_key()), header)
    with pytest.raises(WrongKey) as info:
        client.unwrap(wrapped, wrong, header)
    assert not isinstance(info.value, WrongKeyType)


@pytest.mark.parametrize(
    ("kind", "wrong"),
    [("rsa3072", "x25519"), ("x25519", "p256"), ("p256", "rsa3072"), ("p256", "p384")],
)
def test_wrong_key_type(kind: str, wrong: str) -> None:
    header = header_for()
    wrapped = client.wrap(DEK, client.PublicKeyRef(private_key(kind).public_key()), header)
    with pytest.raises(WrongKeyType):
        client.unwrap(wrapped, private_key(wrong), header)


def test_unsupported_recipient_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnsupportedKey):
        client.PublicKeyRef(weak.public_key())
    with pytest.raises(UnsupportedKey):
        client.PublicKeyRef(private_key("p384").public_key())
    with pytest.raises(ValueError):
        client.PublicKeyRef(private_key("x25519").public_key(), 0)


def test_several_recipients() -> None:
    kinds = ["rsa3072", "x25519", "p256"]
    refs = [client.PublicKeyRef(private_key(k).public_key(), i + 1) for i, k in enumerate(kinds)]
    header = header_for()
    wrapped = client.wrap_for_all(DEK, refs, header)
    encoded = WrappedKey.encode_list(wrapped)
    assert WrappedKey.decode_list(encoded) == wrapped
    for kind in kinds:
        assert client.unwrap_any(wrapped, private_key(kind), header) == DEK
    with pytest.raises(WrongKey):
        client.unwrap_any(wrapped, private_key("rsa4096"), header)


def test_key_id_is_a_stable_fingerprint() -> None:
    key = private_key("p256")
    kid = client.key_id(key)
    assert kid == client.key_id(key.public_key()) == client.PublicKeyRef(key.public_key()).key_id
    assert kid.startswith("bp:") and len(kid) == 35 and kid[3:].isalnum() and kid == kid.lower()
    assert kid != client.key_id(private_key("x25519"))


def test_wrapped_key_encoding_is_strict() -> None:
    header = header_for()
    raw = client.wrap(
        DEK, client.PublicKeyRef(private_key("x25519").public_key()), header
    ).to_bytes()
    assert raw[0] == 1 and raw[1] == 2 and raw[2] == 35
    for bad in (raw[:-1], raw + b"\x00", b"\x02" + raw[1:], raw[:1] + b"\x09" + raw[2:], b""):
        with pytest.raises(InvalidEnvelope):
            WrappedKey.from_bytes(bad)
    with pytest.raises(InvalidEnvelope):  # alg id swapped: payload length no longer fits
        WrappedKey.from_bytes(raw[:1] + b"\x03" + raw[2:])
    with pytest.raises(InvalidEnvelope):
        WrappedKey("x25519-hkdf-aes256gcm", "bp:é", 1, bytes(80))


# -- envelope headers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_headers_round_trip(kind: str) -> None:
    wrapped = client.wrap(
        DEK, client.PublicKeyRef(private_key(kind).public_key(), 12), header_for()
    )
    cid = bytes(range(16))
    headers = client.envelope_headers(wrapped, cid)
    assert list(headers) == [WRAPPED_KEY, KEY_ID, KEY_VERSION, WRAP_ALG, CONTENT_ID]
    assert headers[KEY_VERSION] == "12" and headers[WRAP_ALG] == ALGS[kind]
    assert headers[CONTENT_ID] == cid.hex() and headers[KEY_ID] == wrapped.key_id
    assert base64.b64decode(headers[WRAPPED_KEY]) == wrapped.to_bytes()
    assert metadata_size(headers) < MAX_USER_METADATA
    if kind == "rsa4096":
        assert 700 <= len(headers[WRAPPED_KEY]) <= 760
    parsed = client.parse_envelope_headers(headers)
    assert parsed.wrapped_key == wrapped and parsed.content_id == cid
    assert (parsed.key_id, parsed.key_version, parsed.wrap_alg) == (wrapped.key_id, 12, ALGS[kind])
    boto = client.envelope_headers(wrapped, cid, prefixed=False)
    assert set(boto) == {h.removeprefix("x-amz-meta-") for h in headers}
    assert client.parse_envelope_headers(boto) == parsed
    upper = {name.upper(): value for name, value in headers.items()}
    assert client.parse_envelope_headers({**upper, "Content-Type": "x"}) == parsed


def test_envelope_parse_errors_name_the_field() -> None:
    wrapped = client.wrap(DEK, client.PublicKeyRef(private_key("p256").public_key()), header_for())
    good = client.envelope_headers(wrapped, bytes(16))
    for name in good:
        broken = dict(good)
        del broken[name]
        with pytest.raises(InvalidEnvelope, match=name):
            client.parse_envelope_headers(broken)
    cases = {
        WRAPPED_KEY: "not base64!",
        KEY_ID: "bp:other",
        KEY_VERSION: "2",
        WRAP_ALG: "x25519-hkdf-aes256gcm",
        CONTENT_ID: "00" * 15,
    }
    for name, value in cases.items():
        with pytest.raises(InvalidEnvelope, match=name):
            client.parse_envelope_headers({**good, name: value})
    for version in ("0", "01", "-1", "1.0", "+1"):
        with pytest.raises(InvalidEnvelope, match=KEY_VERSION):
            client.parse_envelope_headers({**good, KEY_VERSION: version})
    truncated = base64.b64encode(wrapped.to_bytes()[:-1]).decode()
    with pytest.raises(InvalidEnvelope, match=WRAPPED_KEY):
        client.parse_envelope_headers({**good, WRAPPED_KEY: truncated})


# -- the recipe ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa3072", "x25519", "p256"])
def test_seal_unseal(kind: str) -> None:
    key = private_key(kind)
    data = b"hello " * 50_000
    names = {"tenant": "acme", "bucket": "photos", "key": "x/y.bin"}
    sealed = client.seal(data, recipients=[client.PublicKeyRef(key.public_key())], **names)
    assert isinstance(sealed.body, bytes)
    assert client.unseal(sealed.body, sealed.headers, key, **names) == data
    with pytest.raises(BindingMismatch):
        client.unseal(sealed.body, sealed.headers, key, **{**names, "key": "x/other.bin"})
    with pytest.raises(WrongKey):
        client.unseal(sealed.body, sealed.headers, private_key("rsa4096"), **names)


def test_unseal_checks_what_the_server_returns() -> None:
    key = private_key("x25519")
    ref = client.PublicKeyRef(key.public_key())
    names = {"tenant": "acme", "bucket": "photos"}
    a = client.seal(b"A" * 1000, key="a", recipients=[ref], **names)
    b = client.seal(b"B" * 1000, key="b", recipients=[ref], **names)
    assert isinstance(a.body, bytes) and isinstance(b.body, bytes)
    with pytest.raises(BindingMismatch):  # the server answers GET a with object b
        client.unseal(b.body, b.headers, key, key="a", **names)
    with pytest.raises(Tampered):  # a's body with b's envelope: wrap bound to a's header fails
        client.unseal(
            a.body, {**a.headers, WRAPPED_KEY: b.headers[WRAPPED_KEY]}, key, key="a", **names
        )
    salted = bytearray(a.body)
    salted[9] ^= 1  # altered salt: the wrap no longer opens for this header
    with pytest.raises(Tampered):
        client.unseal(bytes(salted), a.headers, key, key="a", **names)


def test_seal_for_several_recipients() -> None:
    primary, second = private_key("p256"), private_key("rsa3072")
    refs = [client.PublicKeyRef(primary.public_key()), client.PublicKeyRef(second.public_key())]
    names = {"tenant": "t", "bucket": "b", "key": "k"}
    sealed = client.seal(b"data", recipients=refs, **names)
    assert isinstance(sealed.body, bytes)
    assert sealed.headers[KEY_ID] == refs[0].key_id
    assert client.unseal(sealed.body, sealed.headers, primary, **names) == b"data"
    with pytest.raises(WrongKey):
        client.unseal(sealed.body, sealed.headers, second, **names)
    others = sealed.wrapped_keys[1:]
    assert (
        client.unseal(sealed.body, sealed.headers, second, other_wrapped_keys=others, **names)
        == b"data"
    )


def test_seal_stream() -> None:
    key = private_key("x25519")
    names = {"tenant": "t", "bucket": "b", "key": "k"}
    chunks = [b"a" * 70_000, b"b" * 70_000]
    sealed = client.seal_stream(
        chunks, 140_000, recipients=[client.PublicKeyRef(key.public_key())], seg_log2=17, **names
    )
    assert not isinstance(sealed.body, bytes)
    body = list(sealed.body)
    out = client.unseal_stream(body, sealed.headers, key, **names)
    assert b"".join(out) == b"".join(chunks)

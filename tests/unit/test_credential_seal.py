"""Sealed import-source credentials: the documented format, its test vector, every bound, one
error for every failure to open, and the browser pair (WebCrypto in Node) both ways."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.credential_seal import (
    MAX_BLOB_CHARS,
    SOURCE_AAD,
    SealOpenFailed,
    check_sealed,
    open_sealed,
    seal,
)
from core.errors import InvalidInput

DOC = Path(__file__).resolve().parents[2] / "docs" / "import.md"
CREDS = {
    "access_key": "AKIAIOSFODNN7EXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
PASS = "correct horse battery stäple"


def doc_block(marker: str, lang: str) -> str:
    """The fenced block right after ``<!-- marker -->`` in docs/import.md."""
    found = re.search(
        rf"<!-- {marker} -->\n```{lang}\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S
    )
    assert found, f"docs/import.md has no {marker} block"
    return found.group(1)


def independent_seal(
    plaintext: bytes,
    passphrase: str = PASS,
    *,
    salt: bytes = bytes(range(16)),
    iv: bytes = bytes(range(0xA0, 0xAC)),
    iterations: int = 600_000,
    aad: str = SOURCE_AAD,
    **overrides: Any,
) -> str:
    """The format as the doc states it, built from hashlib and AESGCM (not the module)."""
    password = unicodedata.normalize("NFC", passphrase).encode()
    key = hashlib.pbkdf2_hmac("sha256", password, salt, iterations, 32)
    ct = AESGCM(key).encrypt(iv, plaintext, aad.encode())
    doc: dict[str, Any] = {
        "v": 1,
        "kdf": "PBKDF2-SHA256",
        "iter": iterations,
        "salt": base64.b64encode(salt).decode(),
        "iv": base64.b64encode(iv).decode(),
        "aad": aad,
        "ct": base64.b64encode(ct).decode(),
    }
    doc.update(overrides)
    return json.dumps(doc, separators=(",", ":"))


def test_the_documented_vector_opens_and_is_the_format_as_written() -> None:
    vector = doc_block("test-vector", "json")
    assert open_sealed(vector, PASS) == CREDS
    # The same passphrase typed decomposed (a + combining diaeresis) derives the same key.
    assert open_sealed(vector, unicodedata.normalize("NFD", PASS)) == CREDS
    plaintext = json.dumps(CREDS, separators=(",", ":")).encode()
    assert independent_seal(plaintext) == vector
    key = hashlib.pbkdf2_hmac("sha256", PASS.encode(), bytes(range(16)), 600_000, 32)
    assert key.hex() in DOC.read_text(encoding="utf-8")


def test_round_trip_with_fresh_salt_and_iv_every_time() -> None:
    creds = dict(CREDS, session_token="FwoGZXIvYXdzE" * 40)
    first, second = seal(creds, PASS), seal(creds, PASS, iterations=700_000)
    assert open_sealed(first, PASS) == creds and open_sealed(second, PASS) == creds
    a, b = json.loads(first), json.loads(second)
    assert a["salt"] != b["salt"] and a["iv"] != b["iv"]
    assert (a["v"], a["kdf"], a["iter"], a["aad"], b["iter"]) == (
        1,
        "PBKDF2-SHA256",
        600_000,
        SOURCE_AAD,
        700_000,
    )
    assert len(base64.b64decode(a["salt"])) == 16 and len(base64.b64decode(a["iv"])) == 12
    assert CREDS["secret_key"] not in first and PASS not in first


def test_wrong_passphrase_and_every_tampering_are_one_error() -> None:
    blob = seal(CREDS, PASS)
    doc = json.loads(blob)
    ct = bytearray(base64.b64decode(doc["ct"]))
    ct[3] ^= 1
    iv = bytearray(base64.b64decode(doc["iv"]))
    iv[0] ^= 1
    salt = bytearray(base64.b64decode(doc["salt"]))
    salt[-1] ^= 1
    variants = [
        dict(doc, ct=base64.b64encode(bytes(ct)).decode()),
        dict(doc, iv=base64.b64encode(bytes(iv)).decode()),
        dict(doc, salt=base64.b64encode(bytes(salt)).decode()),
        dict(doc, iter=doc["iter"] + 1),
    ]
    for variant in variants:
        with pytest.raises(SealOpenFailed, match="wrong passphrase, or the blob was altered"):
            open_sealed(json.dumps(variant), PASS)
    with pytest.raises(SealOpenFailed, match="wrong passphrase") as caught:
        open_sealed(blob, PASS + "!")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # A blob sealed for another purpose does not open as source credentials, and vice versa.
    other = seal(CREDS, PASS, aad="something-else:v1")
    with pytest.raises(SealOpenFailed, match="aad"):
        open_sealed(other, PASS)
    assert open_sealed(other, PASS, aad="something-else:v1") == CREDS
    with pytest.raises(SealOpenFailed, match="aad"):
        open_sealed(json.dumps(dict(doc, aad="something-else:v1")), PASS)
    with pytest.raises(SealOpenFailed, match="passphrase is required"):
        open_sealed(blob, "")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"iter": 599_999}, "iter"),
        ({"iter": 10_000_001}, "iter"),
        ({"iter": True}, "iter"),
        ({"iter": "600000"}, "iter"),
        ({"iter": 600_000.0}, "iter"),
        ({"salt": base64.b64encode(b"s" * 15).decode()}, "salt"),
        ({"salt": base64.b64encode(b"s" * 65).decode()}, "salt"),
        ({"iv": base64.b64encode(b"i" * 11).decode()}, "iv"),
        ({"iv": base64.b64encode(b"i" * 13).decode()}, "iv"),
        ({"iv": "not base64!"}, "iv"),
        ({"salt": 12}, "salt"),
        ({"ct": base64.b64encode(b"c" * 16).decode()}, "ct"),
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"kdf": "Argon2id"}, "kdf"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bounds_are_checked_before_any_key_is_derived(change: dict[str, Any], field: str) -> None:
    doc = json.loads(doc_block("test-vector", "json"))
    with pytest.raises(SealOpenFailed, match=field) as caught:
        open_sealed(json.dumps(dict(doc, **change)), PASS)
    assert PASS not in str(caught.value)


def test_malformed_blobs_are_the_same_error() -> None:
    vector = doc_block("test-vector", "json")
    doc = json.loads(vector)
    del doc["iv"]
    for bad in ["", "{", "[]", "null", json.dumps(doc), " " * (MAX_BLOB_CHARS + 1), "[" * 5000]:
        with pytest.raises(SealOpenFailed):
            open_sealed(bad, PASS)
    with pytest.raises(SealOpenFailed, match="at most"):
        open_sealed(vector + " " * MAX_BLOB_CHARS, PASS)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'{"access_key": "AK"}',
        b'{"access_key": "AK", "secret_key": ""}',
        b'{"access_key": "AK", "secret_key": "SK", "session_token": null}',
        b'{"access_key": "AK", "secret_key": "SK", "region": "x"}',
    ],
)
def test_authentic_blobs_with_the_wrong_content_do_not_open(plaintext: bytes) -> None:
    with pytest.raises(SealOpenFailed):
        open_sealed(independent_seal(plaintext), PASS)


def test_seal_refuses_bad_input_with_the_field_named() -> None:
    with pytest.raises(InvalidInput, match="secret_key"):
        seal({"access_key": "AK"}, PASS)
    with pytest.raises(InvalidInput, match="region"):
        seal(dict(CREDS, region="eu"), PASS)
    with pytest.raises(InvalidInput, match="passphrase"):
        seal(CREDS, "short")
    for iterations in (100_000, 10_000_001):
        with pytest.raises(InvalidInput, match="iterations"):
            seal(CREDS, PASS, iterations=iterations)
    with pytest.raises(InvalidInput, match="exceed"):
        seal(dict(CREDS, session_token="t" * MAX_BLOB_CHARS), PASS)


_NODE = shutil.which("node")
_DRIVER = """
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = input.op === "seal"
    ? await sealCredentials(input.credentials, input.passphrase)
    : JSON.stringify(await openSealed(input.blob, input.passphrase));
  process.stdout.write(out);
})().catch((e) => { process.stderr.write(String(e)); process.exit(3); });
"""


def node(request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    assert _NODE is not None
    return subprocess.run(
        [_NODE, "-e", doc_block("webcrypto", "js") + _DRIVER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(_NODE is None, reason="node is not installed (WebCrypto interop)")
def test_webcrypto_and_python_open_each_others_blobs() -> None:
    creds = dict(CREDS, session_token="tok/+=")
    sealed_by_browser = node({"op": "seal", "credentials": creds, "passphrase": PASS})
    assert sealed_by_browser.returncode == 0, sealed_by_browser.stderr
    assert open_sealed(sealed_by_browser.stdout, unicodedata.normalize("NFD", PASS)) == creds
    opened = node({"op": "open", "blob": seal(creds, PASS), "passphrase": PASS})
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout) == creds
    vector = node({"op": "open", "blob": doc_block("test-vector", "json"), "passphrase": PASS})
    assert json.loads(vector.stdout) == CREDS
    wrong = node({"op": "open", "blob": seal(creds, PASS), "passphrase": "wrong passphrase"})
    assert wrong.returncode == 3


def test_the_server_checks_a_blob_it_cannot_open() -> None:
    check_sealed(doc_block("test-vector", "json"))
    with pytest.raises(SealOpenFailed, match="iter"):
        check_sealed(json.dumps(dict(json.loads(seal(CREDS, PASS)), iter=1)))
    with pytest.raises(SealOpenFailed, match="aad"):
        check_sealed(seal(CREDS, PASS, aad="other:v1"))

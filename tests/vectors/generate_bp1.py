"""Generate tests/vectors/bp1.json with the client SDK. Run ONCE per format version.

    .venv/bin/python tests/vectors/generate_bp1.py

The vectors freeze the BP1 wire format: tests/unit/test_client_vectors.py checks them against
both the SDK and an independent straight-line implementation, so a change to the format (or a
regenerated file that disagrees with the reference) fails the tests. Regenerating is only
right when the format version changes; the script refuses to overwrite an existing file
unless ``--force`` is given.

Deterministic inputs: fixed DEK, salt, content id and names; plaintext byte i is ``i % 251``.
The wraps are randomised (OAEP padding, HPKE ephemeral keys), so for them the file stores the
recipients' private keys and the wrapped bytes, and the test checks that unwrapping gives the
DEK.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519  # noqa: E402

from client.envelope import envelope_headers  # noqa: E402
from client.format import ObjectBinding, plaintext_range_to_ciphertext_range  # noqa: E402
from client.keyschedule import derive_keys  # noqa: E402
from client.recipient import PublicKeyRef  # noqa: E402
from client.stream import Encryptor  # noqa: E402
from client.wrap import wrap  # noqa: E402

OUT = Path(__file__).with_name("bp1.json")
DEK = bytes(range(0x00, 0x20))
SALT = bytes(range(0x20, 0x40))
CONTENT_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
TENANT, BUCKET, KEY = "acme", "photos", "2024/été/🙂 cat.jpg"


def plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def main() -> None:
    if OUT.exists() and "--force" not in sys.argv:
        raise SystemExit(f"{OUT} exists; the vectors are frozen (pass --force for a new format)")
    binding = ObjectBinding(TENANT, BUCKET, KEY, CONTENT_ID)
    keys = derive_keys(DEK, SALT)
    S = 1 << 16
    cases = [
        ("empty", 16, 0),
        ("one byte", 16, 1),
        ("exactly one segment", 16, S),
        ("one segment plus one byte", 16, S + 1),
        ("three segments", 16, 3 * S),
        ("one byte, seg_log2 20", 20, 1),
    ]
    objects = []
    for name, seg_log2, length in cases:
        enc = Encryptor._from_parts(binding, length, seg_log2, DEK, SALT)
        body = b"".join(enc.encrypt([plaintext(length)]))
        entry: dict[str, object] = {
            "name": name,
            "seg_log2": seg_log2,
            "plaintext_length": length,
            "header": enc.header_bytes.hex(),
            "ciphertext_length": len(body),
            "ciphertext_sha256": hashlib.sha256(body).hexdigest(),
        }
        if len(body) <= 256:
            entry["ciphertext"] = body.hex()
        objects.append(entry)

    three = Encryptor._from_parts(binding, 3 * S + 100, 16, DEK, SALT).header
    ranges = []
    for first, last in [(0, 0), (S - 1, S), (S, 2 * S - 1), (3 * S + 99, 3 * S + 99), (5, 10**9)]:
        span = plaintext_range_to_ciphertext_range(first, last, three)
        ranges.append(
            {
                "first": first,
                "last": last,
                "offset": span.offset,
                "length": span.length,
                "first_segment": span.first_segment,
            }
        )

    header = Encryptor._from_parts(binding, 3 * S, 16, DEK, SALT).header_bytes
    wraps = []
    recipients = [
        (rsa.generate_private_key(public_exponent=65537, key_size=3072), 1),
        (x25519.X25519PrivateKey.generate(), 2),
        (ec.generate_private_key(ec.SECP256R1()), 7),
    ]
    for private_key, version in recipients:
        ref = PublicKeyRef(private_key.public_key(), version)
        wrapped = wrap(DEK, ref, header)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        wraps.append(
            {
                "alg": ref.wrap_alg,
                "key_id": ref.key_id,
                "key_version": version,
                "private_key_pem": pem,
                "header": header.hex(),
                "wrapped_key": wrapped.to_bytes().hex(),
                "envelope_headers": envelope_headers(wrapped, CONTENT_ID),
            }
        )

    doc = {
        "format": "BP1",
        "description": "BP1 test vectors; see docs/envelope.md. Plaintext byte i is i % 251.",
        "dek": DEK.hex(),
        "salt": SALT.hex(),
        "content_id": CONTENT_ID.hex(),
        "tenant": TENANT,
        "bucket": BUCKET,
        "key": KEY,
        "binding_encoding": binding.encode().hex(),
        "binding": binding.digest().hex(),
        "payload_key": keys.payload_key.hex(),
        "commitment": keys.commitment.hex(),
        "objects": objects,
        "ranges_for_3S_plus_100": ranges,
        "wraps": wraps,
    }
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

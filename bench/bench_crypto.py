"""``python -m bench.bench_crypto [--quick]``: the client SDK's encryption per core (target P6).

What ``bp`` does to every byte before it leaves the machine, against the floor it cannot beat:

* **SDK**: ``client.stream.Encryptor`` over one in-memory buffer (BP1 format: header, then
  64 KiB segments each sealed with AES-256-GCM under a derived key and a per-segment nonce), then
  ``client.stream.decrypt`` of the result, which authenticates every segment and the binding;
* **raw**: ``cryptography``'s ``AESGCM`` over the same bytes cut into the same segments, with a
  counter nonce, no header, no key derivation: the cost of AES-GCM itself on this CPU.

Both run on one thread (one core), best of ``repeat``; MB = 10^6 bytes of plaintext. The SDK's
decrypt output is compared with the input, so a fast wrong answer cannot pass. Needs no services.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.format import DEFAULT_SEG_LOG2, ObjectBinding
from client.stream import Encryptor, decrypt

__all__ = ["measure"]

MIB = 1024 * 1024


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(quick: bool) -> dict[str, Any]:
    """SDK and raw AES-256-GCM encrypt and decrypt MB/s on one core (64 MiB quick, else 256)."""
    size = (64 if quick else 256) * MIB
    repeat = 2 if quick else 3
    data = os.urandom(size)
    segment = 1 << DEFAULT_SEG_LOG2
    binding = ObjectBinding.new("bench", "bench", "crypto")
    holder: dict[str, Any] = {}

    def sdk_encrypt() -> None:
        encryptor = Encryptor(binding, size)
        holder["dek"] = encryptor.dek
        holder["ct"] = b"".join(encryptor.encrypt((data,)))

    encrypt_s = _best(sdk_encrypt, repeat)
    ciphertext, dek = holder.pop("ct"), holder.pop("dek")

    def sdk_decrypt() -> None:
        holder["pt"] = decrypt(ciphertext, dek=dek, expected=binding)

    decrypt_s = _best(sdk_decrypt, repeat)
    if holder.pop("pt") != data:  # a fast wrong answer must not be scored
        raise RuntimeError("the SDK's decrypt returned other bytes than were encrypted")

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    view = memoryview(data)
    offsets = range(0, size, segment)

    def raw_encrypt() -> None:
        holder["raw"] = [
            aead.encrypt(i.to_bytes(12, "big"), view[o : o + segment], None)
            for i, o in enumerate(offsets)
        ]

    ciphertext = b""  # let the SDK's ciphertext go before the raw pass allocates its own
    raw_encrypt_s = _best(raw_encrypt, repeat)
    sealed = holder.pop("raw")

    def raw_decrypt() -> None:
        for i, block in enumerate(sealed):
            aead.decrypt(i.to_bytes(12, "big"), block, None)

    raw_decrypt_s = _best(raw_decrypt, repeat)
    return {
        "size_bytes": size,
        "segment_bytes": segment,
        "repeat": repeat,
        "threads": 1,
        "encrypt_mb_per_s": round(size / encrypt_s / 1e6, 1),
        "decrypt_mb_per_s": round(size / decrypt_s / 1e6, 1),
        "raw_encrypt_mb_per_s": round(size / raw_encrypt_s / 1e6, 1),
        "raw_decrypt_mb_per_s": round(size / raw_decrypt_s / 1e6, 1),
        "decrypted_equals_input": True,
        "loadavg": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_crypto")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 256 MiB")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

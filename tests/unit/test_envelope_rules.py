"""core/envelope.py: what the gateway checks of an envelope without a key (invariant 1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import ciphertext_length as client_ciphertext_length
from core.envelope import (
    BP1_HEADER_SIZE,
    ciphertext_length,
    envelope_from_metadata,
    parse_bp1_header,
)
from core.errors import InvalidEnvelope
from tests.support.envelopes import bp1_header, fake_envelope, fake_wrapped_key


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=16, max_value=20))
def test_length_rule_agrees_with_the_client(pt_len: int, seg_log2: int) -> None:
    assert ciphertext_length(pt_len, seg_log2) == client_ciphertext_length(pt_len, seg_log2)


@given(
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=16, max_value=20),
    st.integers(min_value=-20, max_value=20),
)
def test_body_length_must_match_bp1_header(pt_len: int, seg_log2: int, delta: int) -> None:
    expected = ciphertext_length(pt_len, seg_log2)
    head = bp1_header(pt_len, seg_log2=seg_log2)
    if delta == 0:
        assert parse_bp1_header(head, expected).plaintext_length == pt_len
    else:
        with pytest.raises(InvalidEnvelope, match="length"):
            parse_bp1_header(head, expected + delta)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"magic": b"BPE2"}, "magic"),
        ({"version": 2}, "version"),
        ({"suite": 0}, "suite"),
        ({"seg_log2": 15}, "seg_log2"),
        ({"seg_log2": 21}, "seg_log2"),
        ({"reserved": 7}, "reserved"),
    ],
)
def test_malformed_headers_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEnvelope, match=message):
        parse_bp1_header(bp1_header(0, **kwargs), BP1_HEADER_SIZE + 16)  # type: ignore[arg-type]


def test_short_body_is_not_bp1() -> None:
    with pytest.raises(InvalidEnvelope, match="shorter"):
        parse_bp1_header(b"BPE1", 4)


def good_meta() -> dict[str, str]:
    return {**fake_envelope("rsa-oaep-256", "bp:abc", 3), "bp-content-id": "00" * 16}


def test_no_envelope_fields_means_plaintext() -> None:
    assert envelope_from_metadata({"colour": "blue"}) is None


def test_complete_envelope_parses() -> None:
    env = envelope_from_metadata(good_meta())
    assert env is not None and env.key_version == 3 and env.wrap_alg == "rsa-oaep-256"
    assert env.as_metadata()["bp-key-id"] == "bp:abc"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bp-wrapped-key": None}, "bp-wrapped-key is missing"),
        ({"bp-key-id": None}, "bp-key-id is missing"),
        ({"bp-key-version": None}, "bp-key-version is missing"),
        ({"bp-wrap-alg": None}, "bp-wrap-alg is missing"),
        ({"bp-wrapped-key": "not base64!"}, "base64"),
        ({"bp-wrapped-key": base64.b64encode(b"short").decode()}, "16..1024"),
        ({"bp-key-version": "-1"}, "positive decimal integer"),
        ({"bp-key-version": "0"}, "positive decimal integer"),
        ({"bp-key-version": "4294967296"}, "at most 2147483647"),
        ({"bp-key-version": "2147483648"}, "at most 2147483647"),
        ({"bp-wrap-alg": "aes-kw"}, "not allowed"),
        ({"bp-wrap-alg": "x25519-hkdf-aes256gcm"}, "names another"),
        ({"bp-key-id": "x" * 65}, "1..64"),
        ({"bp-key-id": "bp:abd"}, "names another"),
        ({"bp-key-version": "4"}, "names another"),
        ({"bp-wrapped-key": base64.b64encode(bytes([2]) + bytes(100)).decode()}, "format"),
        (
            {
                "bp-wrapped-key": base64.b64encode(
                    fake_wrapped_key("rsa-oaep-256", "bp:abc", 3)[:40]
                ).decode()
            },
            "length does not match",
        ),
        ({"bp-content-id": "abc"}, "32 hex"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, str | None], message: str) -> None:
    meta = good_meta()
    for name, value in change.items():
        if value is None:
            del meta[name]
        else:
            meta[name] = value
    with pytest.raises(InvalidEnvelope, match=message):
        envelope_from_metadata(meta)


def test_key_version_with_non_ascii_digits_is_refused_not_a_crash() -> None:
    """``str.isdigit`` accepts superscripts that ``int`` cannot read: a clean refusal."""
    import pytest

    from core.envelope import envelope_from_metadata
    from core.errors import InvalidEnvelope
    from tests.support.envelopes import fake_envelope

    meta = fake_envelope()
    meta["bp-key-version"] = "\u00b2"
    with pytest.raises(InvalidEnvelope):
        envelope_from_metadata(meta)

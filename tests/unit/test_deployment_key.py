"""The deployment signing key: derived from the master key, verifies, refuses any change."""

from __future__ import annotations

import pytest

from core.deployment_key import DeploymentKey, SignatureInvalid, verify_signed
from core.sealing import MasterKey, generate_master_key


def test_same_master_key_gives_same_deployment_key() -> None:
    raw = generate_master_key()
    assert DeploymentKey.from_master(MasterKey(raw)).public_keys == (
        DeploymentKey.from_master(MasterKey(raw)).public_keys
    )


def test_signed_statement_verifies_and_tampering_fails() -> None:
    key = DeploymentKey.from_master(MasterKey(generate_master_key()))
    signed = key.sign({"bucket": "b", "pieces": [{"sha256": "ab"}]})
    assert verify_signed(signed, key.public_keys) == {"bucket": "b", "pieces": [{"sha256": "ab"}]}
    tampered = {**signed, "statement": {"bucket": "c", "pieces": [{"sha256": "ab"}]}}
    with pytest.raises(SignatureInvalid):
        verify_signed(tampered, key.public_keys)
    other = DeploymentKey.from_master(MasterKey(generate_master_key()))
    with pytest.raises(SignatureInvalid):
        verify_signed(signed, other.public_keys)


def test_rotation_keeps_old_statements_verifiable() -> None:
    old, new = generate_master_key(), generate_master_key()
    before = DeploymentKey.from_master(MasterKey(old))
    signed = before.sign({"seq": 1})
    after = DeploymentKey.from_master(MasterKey(new, old))
    assert after.key_id != before.key_id
    assert verify_signed(signed, after.public_keys) == {"seq": 1}


def test_derived_subkeys_differ_by_purpose() -> None:
    master = MasterKey(generate_master_key())
    assert master.derive("a") != master.derive("b")
    assert len(master.derive("a")[0]) == 32

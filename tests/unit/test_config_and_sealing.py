"""Settings precedence and the master-key sealing of secrets at rest."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.sealing import MasterKey, SealBroken, generate_master_key, hash_token, token_matches
from core.settings import Settings, load_settings


def test_environment_overrides_file_overrides_defaults() -> None:
    assert load_settings(env={}).http_port == 9000
    assert load_settings(env={}, file_values={"http_port": 9100}).http_port == 9100
    settings = load_settings(
        env={"BP_HTTP_PORT": "9200", "BP_DASHBOARD": "yes"}, file_values={"http_port": 9100}
    )
    assert settings.http_port == 9200 and settings.dashboard is True
    assert load_settings(env={"RAY_ADDRESS": "ray://h:1"}).ray_address == "ray://h:1"
    assert Settings(state_dir="/s").master_key_path.as_posix() == "/s/master.key"


def test_bad_settings_are_refused_with_the_name() -> None:
    with pytest.raises(InvalidInput, match="http_port"):
        load_settings(env={"BP_HTTP_PORT": "ninety"})
    with pytest.raises(InvalidInput, match="bogus"):
        load_settings(env={}, file_values={"bogus": 1})


def test_sealing_round_trip_and_rotation() -> None:
    old, new = generate_master_key(), generate_master_key()
    sealed = MasterKey(old).seal(b"secret")
    assert b"secret" not in sealed
    rotated_keyring = MasterKey(new, old)
    assert rotated_keyring.open(sealed) == b"secret"
    resealed = rotated_keyring.rotate(sealed)
    assert MasterKey(new).open(resealed) == b"secret"
    with pytest.raises(SealBroken):
        MasterKey(new).open(sealed)
    with pytest.raises(SealBroken):
        MasterKey(old).open(sealed[:-2] + b"AA")


def test_tokens_are_stored_hashed() -> None:
    digest = hash_token("tok")
    assert (
        "tok" not in digest and token_matches("tok", digest) and not token_matches("tok2", digest)
    )

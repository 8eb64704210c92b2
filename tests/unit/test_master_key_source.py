"""The master key comes from the environment secret, else the mounted file; a node with
neither refuses, naming itself and both ways to provide it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from actors.master_key import MasterKeyMissing, load_master_key
from core.sealing import MasterKey, generate_master_key


def test_environment_secret_wins_over_the_file(tmp_path: Path) -> None:
    env_key, file_key = generate_master_key(), generate_master_key()
    (tmp_path / "master.key").write_bytes(file_key + b"\n")
    sealed = MasterKey(env_key).seal(b"secret")
    master = load_master_key(tmp_path / "master.key", {"BP_MASTER_KEY": env_key.decode()})
    assert master.open(sealed) == b"secret"


def test_several_keys_newest_first_comma_separated(tmp_path: Path) -> None:
    old, new = generate_master_key(), generate_master_key()
    sealed_old = MasterKey(old).seal(b"before rotation")
    master = load_master_key(tmp_path / "none", {"BP_MASTER_KEY": f"{new.decode()},{old.decode()}"})
    assert master.open(sealed_old) == b"before rotation"
    assert MasterKey(new).open(master.seal(b"x")) == b"x"  # the newest key seals


def test_the_file_when_no_environment_secret(tmp_path: Path) -> None:
    key = generate_master_key()
    (tmp_path / "master.key").write_bytes(key + b"\n")
    assert load_master_key(tmp_path / "master.key", {}).open(MasterKey(key).seal(b"a")) == b"a"


def test_neither_refuses_naming_the_node(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyMissing) as caught:
        load_master_key(tmp_path / "master.key", {"BP_MASTER_KEY": "  "})
    message = str(caught.value)
    assert socket.gethostname() in message and "BP_MASTER_KEY" in message
    assert str(tmp_path / "master.key") in message

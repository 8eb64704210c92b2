"""``cluster.ray_join``: when joining a cluster turns Ray's token mode on, and when it must not."""

from __future__ import annotations

from pathlib import Path

from cluster.ray_join import enable_token_auth_for_join, token_available


def test_token_file_in_home_turns_token_mode_on(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc\n")
    env = {"HOME": str(tmp_path)}
    assert enable_token_auth_for_join(env) is True
    assert env["RAY_AUTH_MODE"] == "token"


def test_token_from_env_or_named_path(tmp_path: Path) -> None:
    assert token_available({"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "t"})
    named = tmp_path / "tok"
    named.write_text("secret")
    assert token_available({"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(named)})
    # A named path wins over ~/.ray/auth_token, even when it is missing.
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert not token_available({"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "x")})


def test_no_token_leaves_mode_unset(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("  \n")  # empty: no token
    assert enable_token_auth_for_join(env) is False
    assert "RAY_AUTH_MODE" not in env


def test_operator_choice_is_respected(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "t", "RAY_AUTH_MODE": "disabled"}
    assert enable_token_auth_for_join(env) is False
    assert env["RAY_AUTH_MODE"] == "disabled"
    assert enable_token_auth_for_join({"RAY_AUTH_MODE": "TOKEN"}) is True

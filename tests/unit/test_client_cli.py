"""``bp`` without a network: argument parsing, s3:// URLs, exit codes and messages, config
precedence, and the commands that only touch the local keyring."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from client.cli import main
from client.cli_parser import build_parser
from client.config import (
    DEFAULT_REGION,
    ConfigError,
    Overrides,
    Settings,
    load_config_file,
    resolve_settings,
)
from client.errors import (
    BindingMismatch,
    InvalidEnvelope,
    KeyExists,
    KeyNotFound,
    MalformedHeader,
    RangeNotSatisfiable,
    Tampered,
    Truncated,
    WrongKey,
    WrongKeyType,
    WrongPassphrase,
)
from client.exit_codes import (
    EXIT_CODES,
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_WRONG_KEY,
    UsageError,
    describe_error,
    exit_code_for,
)
from client.remote import (
    AccessDenied,
    GatewayUnavailable,
    ObjectChanged,
    ObjectNotFound,
    RequestRefused,
)
from client.s3url import S3Url, parse_s3_url


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's environment, config or keyring."""
    import os

    for name in list(os.environ):
        if name.startswith(("BP_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BP_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("BP_KEYRING", str(tmp_path / "keys"))
    return tmp_path


# -- parsing ----------------------------------------------------------------------------------


def test_put_parses_recipients_class_and_global_options_on_either_side() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["--endpoint", "http://gw", "put", "f.txt", "s3://bkt/a/b", "--key", "alice",
         "--key", "bob.pem", "--class", "StandardClass", "--tenant", "acme", "-q"]
    )  # fmt: skip
    assert args.command == "put" and args.file == "f.txt" and args.url == "s3://bkt/a/b"
    assert args.keys == ["alice", "bob.pem"] and args.redundancy_class == "StandardClass"
    assert args.endpoint == "http://gw" and args.tenant == "acme" and args.quiet is True


def test_an_option_before_the_command_survives_the_subcommand_defaults() -> None:
    args = build_parser().parse_args(["--tenant", "acme", "--quiet", "get", "s3://bkt/k", "-"])
    assert args.tenant == "acme" and args.quiet is True and args.output == "-"
    assert args.key is None and args.byte_range is None


def test_get_verify_keygen_key_and_listing_commands_parse() -> None:
    parser = build_parser()
    get = parser.parse_args(["get", "s3://bkt/k", "out", "--key", "alice", "--range", "0-99"])
    assert (get.key, get.byte_range, get.output) == ("alice", "0-99", "out")
    assert parser.parse_args(["verify", "s3://bkt/k"]).command == "verify"
    keygen = parser.parse_args(["keygen", "--type", "rsa", "--bits", "4096", "carol"])
    assert (keygen.type, keygen.bits, keygen.name) == ("rsa", 4096, "carol")
    assert parser.parse_args(["keygen", "dave"]).type == "x25519"
    assert parser.parse_args(["key", "export", "carol", "--version", "2"]).version == 2
    assert parser.parse_args(["key", "list"]).key_command == "list"
    assert parser.parse_args(["ls"]).url is None
    assert parser.parse_args(["ls", "s3://bkt/pre"]).url == "s3://bkt/pre"
    assert parser.parse_args(["rm", "s3://bkt/k"]).command == "rm"
    assert parser.parse_args(["mb", "s3://bkt"]).command == "mb"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["put", "only-a-file"],
        ["keygen", "--type", "dsa", "x"],
        ["keygen", "--bits", "2048", "x"],
        ["key"],
        ["get", "s3://bkt/k"],
        ["key", "publish"],
        ["share", "s3://bkt/k"],
        ["share", "s3://bkt", "--recipient", "bob"],
        ["rotate", "s3://bkt", "--to", "b"],
        ["rotate", "s3://bkt", "--from", "a"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--batch", "0"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--batch", "1001"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--workers", "0"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--workers", "65"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--batch", "ten"],
        ["rotate", "s3://bkt", "--from", "a", "--to", "b", "--to-version", "0"],
        ["rotate", "not-a-url", "--from", "a", "--to", "b"],
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert code == EXIT_USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bp")


def test_key_publish_published_share_and_rotate_parse() -> None:
    parser = build_parser()
    publish = parser.parse_args(["key", "publish", "alice", "--version", "2", "-q"])
    assert (publish.key_command, publish.name, publish.version, publish.quiet) == (
        "publish", "alice", 2, True
    )  # fmt: skip
    published = parser.parse_args(["key", "published", "--endpoint", "http://gw"])
    assert published.key_command == "published" and published.endpoint == "http://gw"
    share = parser.parse_args(["share", "s3://bkt/k", "--recipient", "bob.pem", "--key", "a"])
    assert (share.url, share.recipient, share.key) == ("s3://bkt/k", "bob.pem", "a")
    rotate = parser.parse_args(["rotate", "--from", "a", "--to", "b", "s3://bkt/pre/"])
    assert (rotate.from_key, rotate.to_key, rotate.url) == ("a", "b", "s3://bkt/pre/")
    assert (rotate.batch, rotate.workers, rotate.to_version, rotate.from_version) == (
        500, 8, None, None
    )  # fmt: skip
    tuned = parser.parse_args(
        ["--tenant", "acme", "rotate", "s3://bkt", "--from", "a", "--from-version", "1",
         "--to", "b", "--to-version", "3", "--batch", "1000", "--workers", "64"]
    )  # fmt: skip
    assert (tuned.batch, tuned.workers, tuned.to_version, tuned.from_version) == (1000, 64, 3, 1)
    assert tuned.tenant == "acme"


def test_rotate_refuses_the_same_key_on_both_sides_before_any_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BP_PASSPHRASE", "pw")
    monkeypatch.setenv("BP_TENANT", "acme")
    assert run("keygen", "a")[0] == 0
    code, _, err = run("rotate", "s3://bkt", "--from", "a", "--to", "a")
    assert code == EXIT_USAGE and "same key" in err
    code, _, err = run("rotate", "s3://bkt", "--from", "nobody", "--to", "a")
    assert code == EXIT_NOT_FOUND and "nobody" in err
    code, _, err = run("rotate", "s3://bkt", "--from", "a", "--from-version", "2", "--to", "a")
    assert code == EXIT_NOT_FOUND and "no version 2" in err


def test_help_exits_zero_and_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for code in EXIT_CODES:
        assert f"{code:>3}  " in text


# -- URLs and ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bkt", S3Url("bkt", "")),
        ("s3://bkt/", S3Url("bkt", "")),
        ("s3://bkt/key", S3Url("bkt", "key")),
        ("s3://my.bucket-1/a/b/c.txt", S3Url("my.bucket-1", "a/b/c.txt")),
        ("s3://bkt/a//b/../c", S3Url("bkt", "a//b/../c")),  # kept byte for byte: it is bound
        ("s3://bkt/spaced name ü", S3Url("bkt", "spaced name ü")),
    ],
)
def test_s3_urls_parse_and_keep_the_key_verbatim(text: str, expected: S3Url) -> None:
    assert parse_s3_url(text) == expected
    assert str(expected) in (text, text.rstrip("/"))


@pytest.mark.parametrize(
    ("text", "kwargs", "fragment"),
    [
        ("bkt/key", {}, "not an s3://"),
        ("https://bkt/key", {}, "not an s3://"),
        ("s3://", {}, "no bucket"),
        ("s3:///key", {}, "no bucket"),
        ("s3://Upper/key", {}, "not a valid bucket"),
        ("s3://ab/key", {}, "not a valid bucket"),
        ("s3://a..b/key", {}, "not a valid bucket"),
        ("s3://bkt", {"require_key": True}, "names no object key"),
        ("s3://bkt/key", {"allow_key": False}, "only a bucket"),
        ("s3://bkt/" + "k" * 1025, {}, "1024 bytes"),
        ("s3://bkt/\udcff", {}, "not valid UTF-8"),
    ],
)
def test_bad_s3_urls_are_refused_clearly(text: str, kwargs: dict[str, bool], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_s3_url(text, **kwargs)


def test_bad_urls_are_usage_errors_on_the_command_line() -> None:
    code, _, err = run("rm", "s3://bkt")
    assert code == EXIT_USAGE and "names no object key" in err
    code, _, err = run("mb", "s3://bkt/key")
    assert code == EXIT_USAGE and "only a bucket" in err


# -- exit codes and messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("x"), EXIT_USAGE),
        (ConfigError("x"), EXIT_USAGE),
        (RangeNotSatisfiable("x"), EXIT_USAGE),
        (ObjectNotFound("x"), EXIT_NOT_FOUND),
        (KeyNotFound("x"), EXIT_NOT_FOUND),
        (FileNotFoundError(2, "No such file or directory", "f"), EXIT_NOT_FOUND),
        (AccessDenied("x"), EXIT_DENIED),
        (BindingMismatch("x"), EXIT_INTEGRITY),
        (Tampered("x"), EXIT_INTEGRITY),
        (Truncated("x"), EXIT_INTEGRITY),
        (MalformedHeader("x"), EXIT_INTEGRITY),
        (InvalidEnvelope("x"), EXIT_INTEGRITY),
        (WrongKey("x"), EXIT_WRONG_KEY),
        (WrongKeyType("x"), EXIT_WRONG_KEY),
        (WrongPassphrase("x"), EXIT_WRONG_KEY),
        (GatewayUnavailable("x"), EXIT_UNAVAILABLE),
        (ObjectChanged("x"), EXIT_UNAVAILABLE),
        (RequestRefused("x"), EXIT_ERROR),
        (KeyExists("x"), EXIT_ERROR),
        (PermissionError(13, "Permission denied", "f"), EXIT_ERROR),
        (RuntimeError("x"), EXIT_ERROR),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
    ],
)
def test_exit_code_table(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_exit_codes_are_distinct_and_documented() -> None:
    assert len(set(EXIT_CODES)) == len(EXIT_CODES)
    assert {EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_INTEGRITY, EXIT_WRONG_KEY} <= set(
        EXIT_CODES
    )
    docs = (Path(__file__).parents[2] / "docs" / "client.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} " in docs


def test_messages_name_the_kind_of_failure() -> None:
    assert describe_error(BindingMismatch("bound elsewhere")).startswith(
        "integrity check failed: the gateway returned a different object than the one asked for"
    )
    assert "truncated" in describe_error(Truncated("ends early"))
    assert "was modified" in describe_error(Tampered("segment 3 failed authentication"))
    assert describe_error(WrongKey("not for you")) == "wrong key: not for you"
    assert "BP_PASSPHRASE" in describe_error(WrongPassphrase("wrong passphrase for key 'a'"))
    assert describe_error(FileNotFoundError(2, "No such file or directory", "in.txt")) == (
        "in.txt: No such file or directory"
    )
    assert describe_error(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe_error(ValueError("line one\nline two")) == "line one"


# -- configuration ----------------------------------------------------------------------------

FULL_ENV = {
    "BP_ENDPOINT": "http://env",
    "BP_TENANT": "env-tenant",
    "BP_DEFAULT_KEY": "env-key",
    "AWS_ACCESS_KEY_ID": "ENVKEY",
    "AWS_SECRET_ACCESS_KEY": "envsecret",
    "AWS_REGION": "eu-env-1",
}
PROFILES = {
    "default": {
        "endpoint": "http://default",
        "tenant": "default-tenant",
        "access_key_id": "DEFKEY",
        "secret_access_key": "defsecret",
        "default_key": "default-key",
        "region": "eu-default-1",
    },
    "work": {
        "endpoint": "http://work",
        "tenant": "work-tenant",
        "access_key_id": "WORKKEY",
        "secret_access_key": "worksecret",
    },
}


def test_flags_beat_everything() -> None:
    settings = resolve_settings(
        Overrides(endpoint="http://flag", tenant="flag-tenant", region="flag-1", profile="work"),
        FULL_ENV,
        PROFILES,
    )
    assert (settings.endpoint, settings.tenant, settings.region) == (
        "http://flag",
        "flag-tenant",
        "flag-1",
    )


def test_environment_beats_the_implicit_default_profile() -> None:
    settings = resolve_settings(Overrides(), FULL_ENV, PROFILES)
    assert settings.endpoint == "http://env" and settings.tenant == "env-tenant"
    assert (settings.access_key_id, settings.secret_access_key) == ("ENVKEY", "envsecret")
    assert settings.default_key == "env-key" and settings.region == "eu-env-1"


def test_the_default_profile_fills_what_the_environment_lacks() -> None:
    settings = resolve_settings(Overrides(), {"BP_TENANT": "env-tenant"}, PROFILES)
    assert settings.tenant == "env-tenant" and settings.endpoint == "http://default"
    assert settings.access_key_id == "DEFKEY" and settings.region == "eu-default-1"
    assert settings.profile == "default"


def test_a_profile_named_on_the_command_line_beats_the_environment() -> None:
    settings = resolve_settings(Overrides(profile="work"), FULL_ENV, PROFILES)
    assert settings.endpoint == "http://work" and settings.tenant == "work-tenant"
    assert (settings.access_key_id, settings.secret_access_key) == ("WORKKEY", "worksecret")
    # What the named profile lacks still comes from the environment, never the default profile.
    assert settings.default_key == "env-key" and settings.region == "eu-env-1"


def test_bp_profile_selects_the_implicit_profile() -> None:
    settings = resolve_settings(Overrides(), {"BP_PROFILE": "work"}, PROFILES)
    assert settings.endpoint == "http://work" and settings.profile == "work"


def test_credentials_are_taken_as_a_pair_from_one_source() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "orphan-secret"}  # no id in the environment
    settings = resolve_settings(Overrides(), env, PROFILES)
    assert (settings.access_key_id, settings.secret_access_key) == ("DEFKEY", "defsecret")
    with pytest.raises(ConfigError, match="without its secret"):
        resolve_settings(Overrides(), {"AWS_ACCESS_KEY_ID": "lonely"}, {})


def test_unknown_profiles_and_defaults() -> None:
    with pytest.raises(ConfigError, match="no profile 'nope'.*default, work"):
        resolve_settings(Overrides(profile="nope"), {}, PROFILES)
    with pytest.raises(ConfigError, match="no profile 'gone'"):
        resolve_settings(Overrides(), {"BP_PROFILE": "gone"}, {})
    empty = resolve_settings(Overrides(), {}, {})
    assert empty == Settings(region=DEFAULT_REGION)
    with pytest.raises(ConfigError, match="BP_ENDPOINT"):
        empty.require_endpoint()
    with pytest.raises(ConfigError, match="tenant name is needed to get.*BP_TENANT"):
        empty.require_tenant("get")


def test_the_secret_never_appears_in_a_repr() -> None:
    assert "defsecret" not in repr(resolve_settings(Overrides(), {}, PROFILES))


def test_config_file_loading(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    assert load_config_file(tmp_path / "missing.yaml") == {}
    path.write_text("default:\n  endpoint: http://gw:8080\n  tenant: acme\n")
    assert load_config_file(path) == {"default": {"endpoint": "http://gw:8080", "tenant": "acme"}}
    path.write_text("default:\n  endpoint: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="map profile names"):
        load_config_file(path)
    path.write_text("default:\n  passwd: hunter2\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config_file(path)


def test_missing_settings_are_reported_before_any_network(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "f").write_bytes(b"x")
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k", "--key", "a")
    assert code == EXIT_USAGE and "tenant" in err and "BP_TENANT" in err
    monkeypatch.setenv("BP_TENANT", "acme")
    monkeypatch.setenv("BP_PASSPHRASE", "pw")
    assert run("keygen", "a")[0] == 0
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k", "--key", "a")
    assert code == EXIT_USAGE and "BP_ENDPOINT" in err
    monkeypatch.setenv("BP_ENDPOINT", "http://127.0.0.1:9")
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k", "--key", "a")
    assert code == EXIT_USAGE and "AWS_ACCESS_KEY_ID" in err
    code, _, err = run("put", str(isolated / "missing"), "s3://bkt/k", "--key", "a")
    assert code == EXIT_NOT_FOUND and "No such file" in err


# -- local keyring commands -------------------------------------------------------------------


def test_keygen_list_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BP_PASSPHRASE", "pw")
    code, out, _ = run("keygen", "--type", "p256", "alice")
    assert code == 0 and out.startswith("alice v1 p256 bp:")
    code, out, _ = run("key", "list")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["alice", "1", "p256"]
    code, out, _ = run("key", "export", "alice")
    assert code == 0 and out.startswith("-----BEGIN PUBLIC KEY-----")
    code, _, err = run("keygen", "alice")
    assert code == EXIT_ERROR and "already exists" in err
    code, _, err = run("key", "export", "bob")
    assert code == EXIT_NOT_FOUND and "bob" in err


def test_keygen_without_a_passphrase_source_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    import client.cli_keys as cli_keys

    monkeypatch.setattr(cli_keys, "_terminal_available", lambda: False)
    code, _, err = run("keygen", "alice")
    assert code == EXIT_USAGE and "BP_PASSPHRASE" in err
    assert run("key", "list")[1] == ""


def test_put_needs_a_recipient_when_there_is_no_single_key(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BP_PASSPHRASE", "pw")
    monkeypatch.setenv("BP_TENANT", "acme")
    (isolated / "f").write_bytes(b"x")
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k")
    assert code == EXIT_USAGE and "run bp keygen" in err
    run("keygen", "a")
    run("keygen", "b")
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k")
    assert code == EXIT_USAGE and "keys: a, b" in err
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k", "--key", "a", "--key", "a")
    assert code == EXIT_USAGE and "twice" in err
    (isolated / "not.pem").write_text("garbage")
    code, _, err = run("put", str(isolated / "f"), "s3://bkt/k", "--key", str(isolated / "not.pem"))
    assert code == EXIT_USAGE and "not a PEM public key" in err

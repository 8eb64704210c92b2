"""``bulletproof policy ...``: argument parsing and the admin calls each command makes, with the
admin helper replaced (the integration tests run the same commands against a gateway)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from cluster import cli_policy
from cluster.cli_policy import register


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bulletproof")
    p.add_argument("--config")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    made: list[tuple[str, str, Any]] = []
    answers: dict[tuple[str, str], Any] = {
        ("PUT", "/admin/policy"): {
            "version": 3,
            "unchanged": False,
            "default_class": "StandardClass",
            "added": ["Hot5"],
            "removed": [],
            "changed": [],
            "marked_objects": 0,
        },
        ("POST", "/admin/policy/explain"): {"lines": ["a", "b"], "placeable": False},
    }

    def fake(settings: Any, method: str, path: str, payload: Any = None) -> Any:
        made.append((method, path, payload))
        return answers.get((method, path.split("?")[0]), {"marked_objects": 2, "tenant": "t"})

    monkeypatch.setattr(cli_policy, "admin_call", fake)
    return made


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


def test_apply_sends_the_file(calls, tmp_path, capsys) -> None:
    doc = tmp_path / "p.yaml"
    doc.write_text("version: 1\n")
    assert run(["policy", "apply", str(doc), "--comment", "why"]) == 0
    assert calls == [("PUT", "/admin/policy", {"document": "version: 1\n", "comment": "why"})]
    assert "policy version 3 applied" in capsys.readouterr().out


def test_explain_exit_status_says_whether_placeable(calls, capsys) -> None:
    assert run(["policy", "explain", "bkt", "dir/k", "--class", "Hot5", "--size", "9"]) == 1
    assert calls == [
        (
            "POST",
            "/admin/policy/explain",
            {"bucket": "bkt", "key": "dir/k", "class": "Hot5", "size": 9},
        )
    ]
    assert capsys.readouterr().out == "a\nb\n"


def test_bucket_and_tenant_settings(calls) -> None:
    run(["policy", "bucket", "acme", "photos"])
    run(["policy", "bucket", "acme", "photos", "--class", "Hot5", "--region-lock", "eu, ch"])
    run(["policy", "bucket", "acme", "photos", "--no-class", "--no-region-lock"])
    run(["policy", "tenant", "acme", "--backends", "b0,b1", "--jurisdiction-deny", "US"])
    run(["policy", "tenant", "acme", "--all-backends", "--jurisdiction-allow", ""])
    run(
        [
            "policy",
            "relocate",
            "b2",
            "--region",
            "eu-west",
            "--country",
            "ie",
            "--jurisdiction",
            "eu",
        ]
    )
    base = "/admin/tenants/acme/buckets/photos/placement"
    assert calls == [
        ("GET", base, None),
        ("PUT", base, {"default_class": "Hot5", "region_lock": ["eu", "ch"]}),
        ("PUT", base, {"default_class": None, "region_lock": []}),
        (
            "PUT",
            "/admin/tenants/acme/placement",
            {"allowed_backends": ["b0", "b1"], "jurisdiction_deny": ["US"]},
        ),
        (
            "PUT",
            "/admin/tenants/acme/placement",
            {"allowed_backends": None, "jurisdiction_allow": []},
        ),
        (
            "PUT",
            "/admin/backends/b2/location",
            {"region": "eu-west", "country": "ie", "jurisdiction": "eu"},
        ),
    ]


def test_conflicting_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["policy", "bucket", "a", "b", "--class", "X", "--no-class"])
    with pytest.raises(SystemExit):
        parser().parse_args(["policy", "tenant", "a", "--backends", "b0", "--all-backends"])

"""``cluster.cli_workers.register`` adds agent, worker and restore to any parser."""

from __future__ import annotations

import argparse

import pytest

from cluster.cli_workers import cmd_agent, cmd_restore, cmd_worker_run, register


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bulletproof")
    p.add_argument("--config")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_commands_parse() -> None:
    args = parser().parse_args(["agent", "--once", "--concurrency", "3"])
    assert args.func is cmd_agent and args.once and args.concurrency == 3
    args = parser().parse_args(["worker", "run", "vacuumer", "--set", "grace_s=0"])
    assert args.func is cmd_worker_run and args.name == "vacuumer" and args.set == ["grace_s=0"]
    args = parser().parse_args(["restore", "snap.json", "--private-key", "k.pem"])
    assert args.func is cmd_restore and args.snapshot == "snap.json"


def test_unknown_worker_and_missing_key_are_refused() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["worker", "run", "janitor"])
    with pytest.raises(SystemExit):
        parser().parse_args(["restore", "snap.json"])


def test_restore_takes_a_pem_or_a_keyring_key_not_both() -> None:
    args = parser().parse_args(["restore", "s.json", "--keyring-key", "ops:2"])
    assert args.keyring_key == "ops:2" and args.private_key is None
    with pytest.raises(SystemExit):
        parser().parse_args(["restore", "s.json", "--keyring-key", "ops", "--private-key", "k"])

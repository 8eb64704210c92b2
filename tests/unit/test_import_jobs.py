"""The import job's submission: deterministic ids, a command line and runtime_env naming the
run only, and the dashboard on by default (job submission needs it)."""

from __future__ import annotations

import json

import pytest

from actors.import_jobs import _runtime_env, entrypoint, parse_submission_id, submission_id
from core.settings import load_settings


def test_submission_ids_are_deterministic_per_run_and_attempt() -> None:
    assert submission_id(12, 1) == "bp-import-12-1"
    assert parse_submission_id("bp-import-12-3") == (12, 3)
    for bad in ("bp-import-x-1", "import-1-1", "bp-import-1-"):
        with pytest.raises(ValueError):
            parse_submission_id(bad)
    with pytest.raises(ValueError):
        submission_id(0, 1)


def test_the_job_names_the_run_and_nothing_else() -> None:
    assert entrypoint(7) == "python -m jobs.importer --run-id 7"
    env = _runtime_env()
    assert set(env) == {"env_vars"} and set(env["env_vars"]) == {"PATH", "PYTHONPATH"}
    assert "${PATH}" in env["env_vars"]["PATH"] and "passphrase" not in json.dumps(env).lower()


def test_the_dashboard_is_on_unless_turned_off() -> None:
    assert load_settings(env={}).dashboard is True
    assert load_settings(env={"BP_DASHBOARD": "false"}).dashboard is False


def test_no_dashboard_flag_turns_it_off() -> None:
    from cluster.cli import build_parser
    from cluster.cli_base import settings_of

    assert settings_of(build_parser().parse_args(["--no-dashboard", "status"])).dashboard is False
    assert settings_of(build_parser().parse_args(["status"])).dashboard is True

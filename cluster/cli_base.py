"""What every ``bulletproof`` command shares: its settings and its way of reaching ``/admin``.

Settings come from ``BP_*`` variables overlaid on ``--config FILE.yaml`` (``core.settings``
decides the precedence; this module only reads the file). Commands that change a running
gateway call its ``/admin`` API with the bootstrap admin token, never the database directly,
so the gateway stays the one writer of what it serves.
"""

from __future__ import annotations

import argparse
import dataclasses
import ssl
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.settings import Settings, load_settings

__all__ = ["admin_call", "admin_response", "admin_token", "pid_file", "settings_of"]


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings a command runs with: ``--config`` (if the command has one) under ``BP_*``,
    and ``--no-dashboard`` over both."""
    file_values: dict[str, Any] = {}
    config = getattr(args, "config", None)
    if config:
        loaded = yaml.safe_load(Path(config).read_text())
        if not isinstance(loaded, dict):
            raise SystemExit(f"{config}: expected a mapping of settings")
        file_values = loaded
    settings = load_settings(file_values=file_values)
    if getattr(args, "no_dashboard", False):
        settings = dataclasses.replace(settings, dashboard=False)
    return settings


def pid_file(settings: Settings) -> Path:
    """Where ``up`` records the gateway's PID and ``down`` finds it."""
    return settings.state_path / "gateway.pid"


def admin_token(settings: Settings) -> str:
    """The bootstrap admin token: configured, else the one ``up`` generated into the state dir."""
    if settings.admin_token:
        return settings.admin_token
    return settings.admin_token_path.read_text().strip()


def tls_verify(settings: Settings) -> ssl.SSLContext | bool:
    """How the CLI checks the gateway's certificate: against ``tls_ca_file`` when set (a
    private CA or a self-signed certificate), else the system's trust store."""
    if settings.tls_ca_file:
        return ssl.create_default_context(cafile=settings.tls_ca_file)
    return True


def admin_response(
    settings: Settings, method: str, path: str, payload: Any = None
) -> httpx.Response:
    """One ``/admin`` call with the admin token; the caller judges the status."""
    return httpx.request(
        method,
        f"{settings.endpoint}{path}",
        json=payload,
        headers={"Authorization": f"Bearer {admin_token(settings)}"},
        timeout=60,
        verify=tls_verify(settings),
    )


def admin_call(settings: Settings, method: str, path: str, payload: Any = None) -> Any:
    """One ``/admin`` call whose answer must be 200: its JSON, else exit with the error."""
    response = admin_response(settings, method, path, payload)
    if response.status_code != 200:
        raise SystemExit(f"error {response.status_code}: {response.text}")
    return response.json()

"""What every ``bp`` command is handed: its arguments, its streams, and lazy access to the
configuration, the gateway and the keyring.

Nothing is resolved until a command asks for it, so ``bp key list`` reads no configuration and
touches no network, and a missing endpoint or credential is reported (exit 2) by the first
command that needs one. Human summaries go to stderr through :meth:`CommandContext.say`, never
stdout, which may be carrying object data. Tests replace :meth:`CommandContext.store` and
:meth:`CommandContext.api` to run commands against fakes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TextIO

from client.api import GatewayApi
from client.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigError,
    Overrides,
    Settings,
    load_config_file,
    resolve_settings,
)
from client.exit_codes import UsageError
from client.keyring import Keyring
from client.progress import Progress, make_progress
from client.remote import RemoteStore
from client.s3url import S3Url, parse_s3_url

__all__ = ["CommandContext", "s3_url"]


class CommandContext:
    """Everything a command needs, resolved lazily so ``bp key list`` touches no network."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.quiet: bool = bool(getattr(args, "quiet", False))
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            path = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
            overrides = Overrides(
                endpoint=getattr(self.args, "endpoint", None),
                tenant=getattr(self.args, "tenant", None),
                region=getattr(self.args, "region", None),
                profile=getattr(self.args, "profile", None),
            )
            self._settings = resolve_settings(overrides, os.environ, load_config_file(path))
        return self._settings

    def _credentials(self) -> tuple[str, str, str]:
        settings = self.settings
        endpoint = settings.require_endpoint()
        if not settings.access_key_id or not settings.secret_access_key:
            raise ConfigError(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "access_key_id and secret_access_key in the config profile"
            )
        return endpoint, settings.access_key_id, settings.secret_access_key

    def store(self, connections: int = 10) -> RemoteStore:
        endpoint, access_key_id, secret = self._credentials()
        return RemoteStore(
            endpoint, access_key_id, secret, region=self.settings.region, connections=connections
        )

    def api(self, connections: int = 4) -> GatewayApi:
        """The gateway's extensions (keys, recipients, rewrap), same endpoint and credentials."""
        endpoint, access_key_id, secret = self._credentials()
        try:
            return GatewayApi(
                endpoint,
                access_key_id,
                secret,
                region=self.settings.region,
                connections=connections,
            )
        except ValueError as exc:
            raise ConfigError(f"bad gateway endpoint: {exc}") from None

    def keyring(self) -> Keyring:
        return Keyring()

    def progress(self, label: str) -> Callable[[int], Progress]:
        return lambda total: make_progress(label, total, self.stderr, quiet=self.quiet)

    def say(self, text: str) -> None:
        """A human summary on stderr (stdout may be carrying object data)."""
        if not self.quiet:
            print(text, file=self.stderr)


def s3_url(text: str, **kwargs: bool) -> S3Url:
    """An ``s3://`` argument; a malformed one is a usage error (exit 2)."""
    try:
        return parse_s3_url(text, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

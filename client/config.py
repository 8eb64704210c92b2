"""Where ``bp`` finds its endpoint, credentials, tenant and default key.

Sources, highest precedence first:

1. command-line flags (``--endpoint``, ``--tenant``, ``--region``; a command's ``--key``
   beats ``default_key``);
2. with ``--profile NAME`` on the command line: that profile of the config file (naming a
   profile is itself a command-line choice, as in the AWS CLI);
3. the environment: ``BP_ENDPOINT``, ``BP_TENANT``, ``BP_DEFAULT_KEY``, ``BP_REGION``
   (else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), ``AWS_ACCESS_KEY_ID`` +
   ``AWS_SECRET_ACCESS_KEY``;
4. without ``--profile``: the profile ``$BP_PROFILE`` or ``default`` of the config file;
5. built-in defaults (region ``us-east-1``; nothing else has one).

The config file (``$BP_CONFIG``, default ``~/.config/bp/config.yaml``) is optional YAML, a
mapping of profile names to settings::

    default:
      endpoint: https://gateway.example:8443
      access_key_id: AKIA...
      secret_access_key: ...
      tenant: acme
      default_key: alice
      region: us-east-1

Credentials are taken as a pair from the first source that has an access key id, never an id
from one source and a secret from another. This module does no I/O except reading the config
file, and never prints a secret (``Settings.__repr__`` hides it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DEFAULT_PROFILE",
    "DEFAULT_REGION",
    "PROFILE_KEYS",
    "ConfigError",
    "Overrides",
    "Settings",
    "load_config_file",
    "resolve_settings",
]

CONFIG_ENV = "BP_CONFIG"
DEFAULT_CONFIG = "~/.config/bp/config.yaml"
DEFAULT_PROFILE = "default"
DEFAULT_REGION = "us-east-1"
PROFILE_KEYS = frozenset(
    {"endpoint", "access_key_id", "secret_access_key", "tenant", "default_key", "region"}
)


class ConfigError(Exception):
    """The configuration is unusable: unreadable file, unknown profile, or a missing setting."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says; ``None`` means "not given"."""

    endpoint: str | None = None
    tenant: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration for one ``bp`` invocation."""

    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    tenant: str | None = None
    default_key: str | None = None
    region: str = DEFAULT_REGION
    profile: str | None = None

    def require_endpoint(self) -> str:
        if not self.endpoint:
            raise ConfigError(
                "no gateway endpoint: pass --endpoint, set BP_ENDPOINT, or set endpoint: in the "
                "config profile"
            )
        return self.endpoint

    def require_tenant(self, command: str) -> str:
        """The tenant name; it is hashed into every object's binding, so it cannot be guessed."""
        if not self.tenant:
            raise ConfigError(
                f"the tenant name is needed to {command} (it is part of every object's "
                "encryption binding): pass --tenant, set BP_TENANT, or set tenant: in the "
                "config profile"
            )
        return self.tenant


def load_config_file(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Read the YAML config; a missing file is an empty config, a malformed one an error."""
    file = Path(path).expanduser()
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {file} must map profile names to settings")
    profiles: dict[str, dict[str, str]] = {}
    for name, body in doc.items():
        if not isinstance(body, dict):
            raise ConfigError(f"config file {file}: profile {name!r} must be a mapping")
        unknown = sorted(str(k) for k in body if k not in PROFILE_KEYS)
        if unknown:
            raise ConfigError(
                f"config file {file}: profile {name!r} has unknown setting(s) {', '.join(unknown)}"
            )
        profiles[str(name)] = {str(k): str(v) for k, v in body.items() if v is not None}
    return profiles


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def _credentials(*sources: Mapping[str, str | None]) -> tuple[str | None, str | None]:
    for source in sources:
        if source.get("access_key_id"):
            return source.get("access_key_id"), source.get("secret_access_key")
    return None, None


def resolve_settings(
    overrides: Overrides,
    env: Mapping[str, str],
    profiles: Mapping[str, Mapping[str, str]],
) -> Settings:
    """Combine flags, environment and config profiles by the precedence in the module docstring.

    Pure: the caller passes ``os.environ`` and :func:`load_config_file`'s result, so tests
    exercise every precedence rule without touching the real environment.
    """
    explicit = overrides.profile is not None
    profile_name = overrides.profile or env.get("BP_PROFILE") or DEFAULT_PROFILE
    if profile_name in profiles:
        profile: Mapping[str, str] = profiles[profile_name]
    elif explicit or "BP_PROFILE" in env:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {profile_name!r} in the config file (profiles: {known})")
    else:
        profile = {}
    environment: dict[str, str | None] = {
        "endpoint": env.get("BP_ENDPOINT"),
        "tenant": env.get("BP_TENANT"),
        "default_key": env.get("BP_DEFAULT_KEY"),
        "region": _first(
            env.get("BP_REGION"), env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")
        ),
        "access_key_id": env.get("AWS_ACCESS_KEY_ID"),
        "secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
    }
    # Order of the lower-precedence sources depends on whether the profile was named on the
    # command line (then it outranks the environment) or picked implicitly.
    first, second = (profile, environment) if explicit else (environment, profile)
    access_key_id, secret = _credentials(first, second)
    if access_key_id and not secret:
        raise ConfigError("an access key id is configured without its secret access key")
    return Settings(
        endpoint=_first(overrides.endpoint, first.get("endpoint"), second.get("endpoint")),
        access_key_id=access_key_id,
        secret_access_key=secret,
        tenant=_first(overrides.tenant, first.get("tenant"), second.get("tenant")),
        default_key=_first(first.get("default_key"), second.get("default_key")),
        region=_first(overrides.region, first.get("region"), second.get("region"))
        or DEFAULT_REGION,
        profile=profile_name if profile else None,
    )

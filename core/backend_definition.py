"""What an operator declares about a storage backend, validated field by field.

``parse_definition`` reads the JSON document of ``POST /admin/add-storage`` (and ``bulletproof
backend add``) into a ``BackendDefinition``; ``parse_changes`` reads a ``PATCH`` document into
``BackendChanges`` (only the fields that may change on a registered backend). Every refusal is
an ``InvalidInput`` naming the field and what is allowed, which the admin API renders as the
S3 XML error document (400 InvalidArgument).

Deliberately not here: whether the backend works (``actors/backend_probe.py``), tenant names
existing (the repository checks), and storing anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from core.errors import InvalidInput

__all__ = [
    "ADDRESSING_STYLES",
    "BACKEND_TYPES",
    "IMMUTABLE_FIELDS",
    "BackendChanges",
    "BackendDefinition",
    "Location",
    "ServiceLevel",
    "parse_changes",
    "parse_definition",
]

#: Declared vendors; ``local`` is a directory, every other one an S3-compatible bucket.
BACKEND_TYPES: Final = ("aws", "wasabi", "minio", "ceph", "gcs-interop", "local", "other")
#: ``s3`` was the only non-local type before the vendors were declared.
_TYPE_ALIASES: Final = {"s3": "other"}
ADDRESSING_STYLES: Final = ("path", "virtual", "auto")
#: Fields that name the bytes themselves: changing one would be another backend.
IMMUTABLE_FIELDS: Final = ("name", "endpoint", "bucket", "path", "create_bucket")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
#: Looser than AWS's rules (3-63 lowercase): S3-compatible stores accept more.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_JURISDICTION = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")
_MAX_TEXT = 1024
_MAX_TENANTS = 256


@dataclass(frozen=True)
class Location:
    region: str
    country: str
    jurisdiction: str


@dataclass(frozen=True)
class ServiceLevel:
    """Target availability in percent (e.g. 99.9) and latency in milliseconds; None: none."""

    availability: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class BackendDefinition:
    name: str
    backend_type: str
    location: Location
    provider: str
    endpoint: str | None = None
    bucket: str | None = None
    path: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    signing_region: str = "us-east-1"
    addressing_style: str = "path"
    create_bucket: bool = False
    sla: ServiceLevel = ServiceLevel()
    residency: bool = False
    supports_sse: bool = False
    capacity_bytes: int | None = None
    #: Tenant names this backend serves; None: every tenant.
    tenants: tuple[str, ...] | None = None
    #: A local backend's node (its Ray ``bp-node`` label); None: the adding replica's node.
    node: str | None = None
    #: Designated for audit archives (``--archive``): never chosen for data placement.
    archive: bool = False

    @property
    def kind(self) -> str:
        """The transport: a local directory or an S3-compatible bucket."""
        return "local" if self.backend_type == "local" else "s3"


@dataclass(frozen=True)
class BackendChanges:
    """A PATCH: each field None when not given. ``capacity_bytes``/``tenants``/``sla`` may be
    cleared: ``clear`` names the fields set to JSON null."""

    backend_type: str | None = None
    provider: str | None = None
    location: Location | None = None
    access_key: str | None = None
    secret_key: str | None = None
    signing_region: str | None = None
    addressing_style: str | None = None
    sla: ServiceLevel | None = None
    residency: bool | None = None
    supports_sse: bool | None = None
    capacity_bytes: int | None = None
    tenants: tuple[str, ...] | None = None
    clear: frozenset[str] = frozenset()

    @property
    def credentials(self) -> bool:
        return self.access_key is not None

    @property
    def reconnects(self) -> bool:
        """Whether the backend must be probed and reached anew (how it is reached changed)."""
        return (
            self.credentials
            or self.signing_region is not None
            or (self.addressing_style is not None)
        )


# -- single fields ----------------------------------------------------------------------------
def _text(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"field {name!r} is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise InvalidInput(f"field {name!r} must be a non-empty string")
    return value.strip()


def _matching(data: dict[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = _text(data, name, required=False)
    if value is not None and not pattern.match(value):
        raise InvalidInput(f"field {name!r} must be {what}, got {value!r}")
    return value


def _choice(data: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _text(data, name, required=False)
    if value is None:
        return None
    value = _TYPE_ALIASES.get(value, value) if name == "type" else value
    if value not in allowed:
        raise InvalidInput(f"field {name!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _flag(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidInput(f"field {name!r} must be true or false")
    return value


def _endpoint(data: dict[str, Any]) -> str | None:
    value = _text(data, "endpoint", required=False)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"field 'endpoint' must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("field 'endpoint' must not carry a query, fragment or credentials")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise InvalidInput(f"field 'endpoint' has an invalid port: {value!r}") from exc
    return value.rstrip("/")


def _location(data: dict[str, Any], *, required: bool) -> Location | None:
    given = [f for f in ("region", "country", "jurisdiction") if data.get(f) is not None]
    if not given and not required:
        return None
    if len(given) < 3:
        missing = [f for f in ("region", "country", "jurisdiction") if f not in given]
        raise InvalidInput(
            f"field {missing[0]!r} is required (region, country and jurisdiction go together)"
        )
    region = _matching(data, "region", _REGION, "a region name (letters, digits, - _ .)")
    country = (_text(data, "country") or "").upper()
    if not _COUNTRY.match(country):
        raise InvalidInput(f"field 'country' must be a two-letter country code, got {country!r}")
    jurisdiction = (_text(data, "jurisdiction") or "").upper()
    if not _JURISDICTION.match(jurisdiction):
        raise InvalidInput(
            f"field 'jurisdiction' must be a jurisdiction code (e.g. EU, US), got {jurisdiction!r}"
        )
    assert region is not None
    return Location(region=region, country=country, jurisdiction=jurisdiction)


def _capacity(data: dict[str, Any]) -> int | None:
    value = data.get("capacity_bytes")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput("field 'capacity_bytes' must be a positive integer")
    return value


def _sla(data: dict[str, Any]) -> ServiceLevel | None:
    value = data.get("sla")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"availability", "latency_ms"}:
        raise InvalidInput("field 'sla' must be an object with 'availability' and 'latency_ms'")
    availability, latency = value.get("availability"), value.get("latency_ms")
    for name, number, low, high in (
        ("availability", availability, 0.0, 100.0),
        ("latency_ms", latency, 0.0, 3_600_000.0),
    ):
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidInput(f"field 'sla.{name}' must be a number")
        if not math.isfinite(number) or not low < number <= high:
            raise InvalidInput(f"field 'sla.{name}' must be in ({low:g}, {high:g}]")
    return ServiceLevel(
        availability=None if availability is None else float(availability),
        latency_ms=None if latency is None else float(latency),
    )


def _flags(data: dict[str, Any]) -> tuple[bool | None, bool | None]:
    value = data.get("flags")
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"residency", "supports_sse"}:
        raise InvalidInput("field 'flags' must be an object with 'residency' and 'supports_sse'")
    return _flag(value, "residency"), _flag(value, "supports_sse")


def _tenants(data: dict[str, Any]) -> tuple[str, ...] | None:
    value = data.get("tenants")
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > _MAX_TENANTS:
        raise InvalidInput(
            f"field 'tenants' must be a non-empty list of at most {_MAX_TENANTS} tenant names"
            " (null: every tenant)"
        )
    names: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 64:
            raise InvalidInput("field 'tenants' must hold tenant names")
        names.add(item.strip())
    return tuple(sorted(names))


def _credentials(data: dict[str, Any], *, required: bool) -> tuple[str | None, str | None]:
    access, secret = data.get("access_key"), data.get("secret_key")
    if access is None and secret is None and not required:
        return None, None
    return _text(data, "access_key"), _text(data, "secret_key")


def _unknown(data: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}")


_DEFINITION_FIELDS = {
    "name", "type", "provider", "endpoint", "bucket", "path", "access_key", "secret_key",
    "signing_region", "addressing_style", "create_bucket", "region", "country", "jurisdiction",
    "sla", "flags", "capacity_bytes", "tenants", "node", "archive",
}  # fmt: skip


# -- documents --------------------------------------------------------------------------------
def parse_definition(data: dict[str, Any]) -> BackendDefinition:
    """The backend an add request declares (see the module docstring)."""
    _unknown(data, _DEFINITION_FIELDS)
    name = _text(data, "name")
    assert name is not None
    if not _NAME.match(name):
        raise InvalidInput(
            "field 'name' must be 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )
    backend_type = _choice(data, "type", BACKEND_TYPES) or "other"
    location = _location(data, required=True)
    assert location is not None
    residency, sse = _flags(data)
    common: dict[str, Any] = dict(
        name=name,
        backend_type=backend_type,
        location=location,
        provider=_text(data, "provider", required=False) or backend_type,
        sla=_sla(data) or ServiceLevel(),
        residency=bool(residency),
        supports_sse=bool(sse),
        capacity_bytes=_capacity(data),
        tenants=_tenants(data),
        archive=bool(_flag(data, "archive")),
    )
    if backend_type == "local":
        for field in ("endpoint", "bucket", "access_key", "secret_key", "signing_region"):
            if data.get(field) is not None:
                raise InvalidInput(f"field {field!r} does not apply to a local backend")
        path = _text(data, "path")
        assert path is not None
        if not path.startswith("/"):
            raise InvalidInput("field 'path' must be an absolute directory path")
        node = _text(data, "node", required=False)
        if node is not None and not _NAME.match(node):
            raise InvalidInput("field 'node' must be a node label value: letters, digits, '-', '_'")
        return BackendDefinition(**common, path=path, node=node)
    if data.get("node") is not None:
        raise InvalidInput(f"field 'node' applies only to type local, not {backend_type}")
    if data.get("path") is not None:
        raise InvalidInput(f"field 'path' applies only to type local, not {backend_type}")
    endpoint = _endpoint(data)
    if endpoint is None:
        raise InvalidInput("field 'endpoint' is required")
    bucket = _text(data, "bucket")
    assert bucket is not None
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidInput(f"field 'bucket' must be a valid S3 bucket name, got {bucket!r}")
    access, secret = _credentials(data, required=True)
    default_style = "virtual" if backend_type in ("aws", "gcs-interop") else "path"
    return BackendDefinition(
        **common,
        endpoint=endpoint,
        bucket=bucket,
        access_key=access,
        secret_key=secret,
        signing_region=_matching(data, "signing_region", _REGION, "a region name") or "us-east-1",
        addressing_style=_choice(data, "addressing_style", ADDRESSING_STYLES) or default_style,
        create_bucket=bool(_flag(data, "create_bucket")),
    )


def parse_changes(data: dict[str, Any], *, kind: str) -> BackendChanges:
    """The changes a PATCH asks for on a backend of transport ``kind``."""
    for field in IMMUTABLE_FIELDS:
        if field in data:
            raise InvalidInput(
                f"field {field!r} cannot change on a registered backend: add a new backend"
                " and drain this one"
            )
    _unknown(data, _DEFINITION_FIELDS)
    if not data:
        raise InvalidInput("nothing to change: the request document is empty")
    backend_type = _choice(data, "type", BACKEND_TYPES)
    if backend_type is not None and (backend_type == "local") != (kind == "local"):
        raise InvalidInput(f"field 'type' cannot turn a {kind} backend into a {backend_type} one")
    access, secret = _credentials(data, required=False)
    if kind == "local":
        for field in ("access_key", "secret_key", "signing_region", "addressing_style"):
            if data.get(field) is not None:
                raise InvalidInput(f"field {field!r} does not apply to a local backend")
    residency, sse = _flags(data)
    clear = frozenset(
        f for f in ("capacity_bytes", "tenants", "sla") if f in data and data[f] is None
    )
    return BackendChanges(
        backend_type=backend_type,
        provider=_text(data, "provider", required=False),
        location=_location(data, required=False),
        access_key=access,
        secret_key=secret,
        signing_region=_matching(data, "signing_region", _REGION, "a region name"),
        addressing_style=_choice(data, "addressing_style", ADDRESSING_STYLES),
        sla=_sla(data),
        residency=residency,
        supports_sse=sse,
        capacity_bytes=_capacity(data),
        tenants=_tenants(data),
        clear=clear,
    )

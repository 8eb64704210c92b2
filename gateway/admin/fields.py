"""The ``/admin`` request document and its fields, validated one by one.

The body is a JSON object of at most 64 KiB; a field of the wrong type, length or value is an
``InvalidArgument`` naming the field, a body that is not a JSON object an ``InvalidRequest``,
both rendered as the S3 XML error document (400). Nothing here looks anything up except the
redundancy classes of the policy in force.
"""

from __future__ import annotations

from typing import Any

from core.json_limits import InvalidJson, loads_document
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e

__all__ = [
    "MAX_BODY",
    "MAX_LIST",
    "names_list",
    "optional_class",
    "optional_text",
    "parse_json",
    "text",
]

#: Largest request document accepted, in bytes.
MAX_BODY = 64 * 1024
#: Most entries a list field may hold.
MAX_LIST = 256


def parse_json(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise s3e.InvalidRequest("request document too large")
    try:
        data = loads_document(body or b"{}")
    except InvalidJson as exc:
        raise s3e.InvalidRequest(str(exc)) from None
    if not isinstance(data, dict):
        raise s3e.InvalidRequest("request body must be a JSON object")
    return data


def text(data: dict[str, Any], name: str, *, default: str | None = None) -> str:
    """A required non-empty string of at most 1024 characters (``default`` when absent)."""
    value = data.get(name, default)
    if value is None:
        raise s3e.InvalidArgument(f"field {name!r} is required")
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise s3e.InvalidArgument(f"field {name!r} must be a non-empty string")
    return value


def optional_text(data: dict[str, Any], name: str) -> str | None:
    """Like ``text``, but None when the field is absent or null."""
    return None if data.get(name) is None else text(data, name)


def names_list(data: dict[str, Any], name: str, *, lower: bool = False) -> list[str]:
    """A JSON list of distinct non-empty strings (sorted), or InvalidArgument naming the field."""
    value = data[name]
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise s3e.InvalidArgument(f"field {name!r} must be a list of at most {MAX_LIST} strings")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 64:
            raise s3e.InvalidArgument(f"field {name!r} must hold non-empty strings of <= 64 chars")
        out.add(item.strip().lower() if lower else item.strip())
    return sorted(out)


def optional_class(ctx: GatewayContext, data: dict[str, Any], name: str) -> str | None:
    """A redundancy class of the policy in force, or None (JSON null)."""
    value = data[name]
    if value is None:
        return None
    if not isinstance(value, str) or value not in ctx.policy.classes:
        raise s3e.InvalidArgument(
            f"field {name!r}: unknown redundancy class {value!r} "
            f"(known: {', '.join(sorted(ctx.policy.classes))})"
        )
    return value

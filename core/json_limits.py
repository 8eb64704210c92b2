"""JSON request documents parsed with limits, before the parser can recurse or overflow.

``json.loads`` recurses once per nesting level, so ``[[[[...]]]]`` a few thousand levels deep
raises ``RecursionError`` (or worse, exhausts the C stack of a worker thread); an integer
literal over 4,300 digits raises a bare ``ValueError``. Neither is a ``JSONDecodeError``, so a
caller catching only that answered 500. ``loads_document`` scans the nesting depth first
(strings and escapes skipped, linear time, no recursion) and turns every failure into one
``InvalidJson`` whose message is safe to show. Every JSON API of the gateway (``/admin``, the
tenant JSON APIs, the S3 extensions that speak JSON) parses through it.
"""

from __future__ import annotations

import json

__all__ = ["MAX_JSON_DEPTH", "InvalidJson", "json_depth", "loads_document"]

#: No request document of ours nests deeper than a handful of levels.
MAX_JSON_DEPTH = 32

_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE, _BACKSLASH = 0x22, 0x5C


class InvalidJson(ValueError):
    """The request body is not a JSON document we accept; the message says why."""


def json_depth(body: bytes, *, stop_above: int) -> int:
    """The deepest nesting of arrays and objects in ``body`` (strings skipped), scanning no
    further once it exceeds ``stop_above``. Malformed JSON gives some depth; the parser then
    refuses it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    return deepest
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def loads_document(body: bytes | bytearray, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """``json.loads`` of a request body, or InvalidJson (too deep, not UTF-8, not JSON, an
    integer too long to convert, a string with NUL or a lone surrogate)."""
    data = bytes(body)
    if json_depth(data, stop_above=max_depth) > max_depth:
        raise InvalidJson(f"the JSON document nests deeper than {max_depth} levels")
    try:
        document = json.loads(data)
    except RecursionError:  # unreachable after the depth scan; kept as a second line
        raise InvalidJson(f"the JSON document nests deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise InvalidJson("the request body is not UTF-8 JSON") from None
    except ValueError as exc:  # JSONDecodeError, and int() past 4,300 digits
        detail = "a number is too long" if "digits" in str(exc) else "it is not valid JSON"
        raise InvalidJson(f"the request body is not accepted: {detail}") from None
    _check_strings(document)
    return document


def _check_strings(document: object) -> None:
    """Refuse NUL and lone surrogates (``"\\ud800"``) in any string, names included: JSON
    allows both, but neither can be stored in a PostgreSQL text column or encoded as UTF-8,
    so each would fail far from here. Iterative: the depth is already bounded."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and ("\x00" in item or not _is_utf8(item)):
            raise InvalidJson("a string in the JSON document holds NUL or a lone surrogate")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

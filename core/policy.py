"""Redundancy classes and the versioned YAML policy DSL that defines them.

Invariant kept: every ``RedundancyClass`` and ``PolicyDocument`` that exists is valid. Both
check themselves on construction, and ``load_policy`` checks a YAML document field by field
first, so a bad document is refused with ``InvalidInput`` naming the path of the first bad
field (``classes.Hot5.replication.write_quorum: ...``) and never half-loaded.

The document shape (see ``docs/policy.md``)::

    version: 1
    default_class: StandardClass
    classes:
      StandardClass: {replication: {copies: 3, write_quorum: 2}, min_regions: 2}
      RegionalClass: {replication: {copies: 2, write_quorum: 2}, same_country: true}
      ColdArchiveClass: {erasure: {k: 2, m: 4, write_quorum: 4}}
      Archive4p2: {erasure: {k: 4, m: 2, write_quorum: 5}}
      Hot5: {replication: {copies: 5, write_quorum: 3}, distinct_providers: true}

The built-in classes are always present; a document may redefine them and add its own.
``dump_policy`` writes every class explicitly, and ``load_policy(dump_policy(d)) == d``.

What this module does not do: choose backends (``core.placement``), store documents
(``schema/``) or decide which class a request gets (the gateway).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from core.errors import InvalidInput
from core.quorum import erasure_quorum, replication_quorum

__all__ = [
    "CLASS_SOURCES",
    "COLD_ARCHIVE",
    "KINDS",
    "MAX_CLASSES",
    "MAX_COPIES",
    "MAX_POLICY_BYTES",
    "MAX_SHARDS",
    "POLICY_VERSION",
    "REGIONAL",
    "STANDARD",
    "ClassChoice",
    "PolicyDiff",
    "PolicyDocument",
    "RedundancyClass",
    "builtin_policy",
    "choose_class",
    "diff_policies",
    "dump_policy",
    "load_policy",
]

STANDARD = "StandardClass"
REGIONAL = "RegionalClass"
COLD_ARCHIVE = "ColdArchiveClass"

KINDS = ("replication", "erasure")
POLICY_VERSION = 1
#: Largest YAML document accepted, in UTF-8 bytes.
MAX_POLICY_BYTES = 64 * 1024
#: Most classes in one document (built-ins included).
MAX_CLASSES = 256
#: Most replicas a replication class may ask for.
MAX_COPIES = 64
#: zfec's limit on k + m.
MAX_SHARDS = 256
#: Most YAML nodes and deepest nesting a document may have (the real shape needs depth 4).
_MAX_NODES = 20_000
_MAX_DEPTH = 8

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_class_fields(
    *,
    name: object,
    kind: object,
    copies: object,
    write_quorum: object,
    k: object,
    m: object,
    min_regions: object,
    same_country: object,
    distinct_providers: object,
    where: Callable[[str], str],
) -> None:
    """Raise ``InvalidInput`` for the first field that breaks a rule; ``where`` names fields.

    ``write_quorum == 0`` stands for "the default for this kind" and is accepted.
    """

    def bad(fieldname: str, message: str) -> InvalidInput:
        return InvalidInput(f"{where(fieldname)}: {message}")

    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise bad(
            "name",
            f"class names are 1-64 letters, digits, '_' or '-', starting with a "
            f"letter; got {name!r}",
        )
    if kind not in KINDS:
        raise bad("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    for fieldname, value in (
        ("copies", copies),
        ("write_quorum", write_quorum),
        ("k", k),
        ("m", m),
        ("min_regions", min_regions),
    ):
        if not _is_int(value):
            raise bad(fieldname, f"must be an integer, got {value!r}")
    for fieldname, value in (
        ("same_country", same_country),
        ("distinct_providers", distinct_providers),
    ):
        if not isinstance(value, bool):
            raise bad(fieldname, f"must be true or false, got {value!r}")
    assert isinstance(copies, int) and isinstance(write_quorum, int)
    assert isinstance(k, int) and isinstance(m, int) and isinstance(min_regions, int)
    if kind == "replication":
        if k or m:
            raise bad("k" if k else "m", "only erasure classes have k and m")
        if not 1 <= copies <= MAX_COPIES:
            raise bad("copies", f"must be between 1 and {MAX_COPIES}, got {copies}")
        if write_quorum != 0 and not 1 <= write_quorum <= copies:
            raise bad(
                "write_quorum", f"must be between 1 and copies ({copies}), got {write_quorum}"
            )
        width = copies
    else:
        if copies:
            raise bad("copies", "only replication classes have copies")
        if k < 1:
            raise bad("k", f"must be at least 1, got {k}")
        if m < 0:
            raise bad("m", f"must be at least 0, got {m}")
        if k + m > MAX_SHARDS:
            raise bad("m", f"k + m must be at most {MAX_SHARDS} (zfec), got {k} + {m} = {k + m}")
        if write_quorum != 0 and not k <= write_quorum <= k + m:
            raise bad(
                "write_quorum", f"must be between k ({k}) and k + m ({k + m}), got {write_quorum}"
            )
        width = k + m
    if not 1 <= min_regions <= width:
        raise bad(
            "min_regions",
            f"must be between 1 and the number of backends the class uses ({width}), "
            f"got {min_regions}",
        )


@dataclass(frozen=True)
class RedundancyClass:
    """How many pieces an object is stored as, how many must be acknowledged, and where.

    Always valid: construction raises ``InvalidInput`` otherwise. ``write_quorum=0`` means the
    default for the kind (``core.quorum``: majority for replication, ``k + ceil(m / 2)`` for
    erasure) and is replaced by
    that number, so a constructed class always has its real quorum.
    """

    name: str
    kind: str
    copies: int = 0
    write_quorum: int = 0
    k: int = 0
    m: int = 0
    min_regions: int = 1
    same_country: bool = False
    distinct_providers: bool = False

    def __post_init__(self) -> None:
        _check_class_fields(
            name=self.name,
            kind=self.kind,
            copies=self.copies,
            write_quorum=self.write_quorum,
            k=self.k,
            m=self.m,
            min_regions=self.min_regions,
            same_country=self.same_country,
            distinct_providers=self.distinct_providers,
            where=lambda f: f"redundancy class {self.name!r}: {f}",
        )
        if self.write_quorum == 0:
            default = (
                replication_quorum(self.copies)
                if self.kind == "replication"
                else erasure_quorum(self.k, self.m)
            )
            object.__setattr__(self, "write_quorum", default)

    @property
    def width(self) -> int:
        """Backends an object of this class occupies: ``copies``, or ``k + m`` shards."""
        return self.copies if self.kind == "replication" else self.k + self.m

    @property
    def read_quorum(self) -> int:
        """How many stored pieces a read needs: 1 replica, or any ``k`` shards."""
        return self.k if self.kind == "erasure" else 1

    @property
    def losses_survivable_at_ack(self) -> int:
        """How many more pieces an object can lose, right at acknowledgement, and still be
        read: only ``write_quorum`` pieces are known to be stored then, a read needs
        ``read_quorum`` of them."""
        return self.write_quorum - self.read_quorum

    def describe(self) -> str:
        """One line for humans, e.g. ``replication 3 copies, write quorum 2, >= 2 regions``."""
        if self.kind == "replication":
            parts = [f"replication {self.copies} copies, write quorum {self.write_quorum}"]
        else:
            parts = [
                f"erasure k={self.k} m={self.m} ({self.k + self.m} shards, any {self.k} "
                f"rebuild), write quorum {self.write_quorum}"
            ]
        if self.min_regions > 1:
            parts.append(f">= {self.min_regions} regions")
        if self.same_country:
            parts.append("same country")
        if self.distinct_providers:
            parts.append("distinct providers")
        parts.append("distinct backends")
        return ", ".join(parts)


@dataclass(frozen=True)
class PolicyDocument:
    """A versioned set of redundancy classes and the default one; read-only once built.

    Invariants: ``classes`` maps each class's own name to it, ``default_class`` is one of
    them, ``version`` is a supported DSL version.
    """

    version: int
    classes: Mapping[str, RedundancyClass] = field(default_factory=dict)
    default_class: str = STANDARD

    def __post_init__(self) -> None:
        if self.version != POLICY_VERSION or not _is_int(self.version):
            raise InvalidInput(
                f"version: unsupported policy version {self.version!r} "
                f"(supported: {POLICY_VERSION})"
            )
        classes = dict(self.classes)
        if len(classes) > MAX_CLASSES:
            raise InvalidInput(f"classes: at most {MAX_CLASSES} classes, got {len(classes)}")
        for key, rc in classes.items():
            if not isinstance(rc, RedundancyClass) or rc.name != key:
                raise InvalidInput(f"classes.{key}: must be a RedundancyClass named {key!r}")
        if self.default_class not in classes:
            raise InvalidInput(f"default_class: unknown redundancy class {self.default_class!r}")
        object.__setattr__(self, "classes", MappingProxyType(classes))

    def get(self, name: str) -> RedundancyClass:
        """The class called ``name``; ``InvalidInput`` if the document has none."""
        try:
            return self.classes[name]
        except (KeyError, TypeError):
            raise InvalidInput(f"unknown redundancy class {name}") from None

    @property
    def default(self) -> RedundancyClass:
        return self.classes[self.default_class]


def _builtin_classes() -> dict[str, RedundancyClass]:
    return {
        STANDARD: RedundancyClass(STANDARD, "replication", copies=3, write_quorum=2, min_regions=2),
        REGIONAL: RedundancyClass(
            REGIONAL, "replication", copies=2, write_quorum=2, same_country=True
        ),
        # The original design's "2-of-6 erasure coding": any 2 of 6 shards rebuild the object.
        COLD_ARCHIVE: RedundancyClass(COLD_ARCHIVE, "erasure", k=2, m=4, write_quorum=4),
    }


def builtin_policy() -> PolicyDocument:
    """The policy in force before any document is loaded: the three built-in classes."""
    return PolicyDocument(
        version=POLICY_VERSION, classes=_builtin_classes(), default_class=STANDARD
    )


# --- YAML -------------------------------------------------------------------------------


class _YamlRefused(Exception):
    """The YAML is well-formed but uses something the DSL refuses (aliases, duplicates...)."""


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """``SafeLoader`` that refuses aliases, merge keys and duplicate keys, and bounds size.

    Aliases are refused so a small document cannot stand for a huge one; duplicate keys are
    refused because PyYAML would silently keep the last one (two ``StandardClass:`` entries).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _YamlRefused(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _YamlRefused(f"more than {_MAX_NODES} YAML nodes")
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlRefused(f"line {mark.line + 1}: nested deeper than {_MAX_DEPTH}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _YamlRefused(
                    f"line {key_node.start_mark.line + 1}: merge keys (<<) are not allowed"
                )
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base constructor reports it
                continue
            if duplicate:
                raise _YamlRefused(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _YamlRefused as exc:
        raise InvalidInput(f"policy: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InvalidInput(f"policy: not valid YAML: {problem}{where}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"policy: not valid YAML: {exc}") from None


def _expect_mapping(value: object, path: str) -> dict[object, object]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{path}: must be a mapping, got {type(value).__name__}")
    return value


def _reject_unknown(node: dict[object, object], path: str, allowed: tuple[str, ...]) -> None:
    for key in node:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise InvalidInput(f"{where}: unknown field (allowed: {', '.join(allowed)})")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parse_class(name: str, node: object, path: str) -> RedundancyClass:
    body = _expect_mapping(node, path)
    _reject_unknown(
        body, path, ("replication", "erasure", "min_regions", "same_country", "distinct_providers")
    )
    kinds = [kind for kind in KINDS if kind in body]
    if len(kinds) != 1:
        raise InvalidInput(f"{path}: exactly one of 'replication' or 'erasure' is required")
    kind = kinds[0]
    kind_path = _join(path, kind)
    params = _expect_mapping(body[kind], kind_path)
    if kind == "replication":
        _reject_unknown(params, kind_path, ("copies", "write_quorum"))
        required: tuple[str, ...] = ("copies",)
    else:
        _reject_unknown(params, kind_path, ("k", "m", "write_quorum"))
        required = ("k", "m")
    for key in required:
        if key not in params:
            raise InvalidInput(f"{_join(kind_path, key)}: required")
    if params.get("write_quorum", 1) == 0 and _is_int(params.get("write_quorum")):
        raise InvalidInput(
            f"{_join(kind_path, 'write_quorum')}: must be at least 1, got 0 "
            f"(omit it for the default)"
        )

    def where(fieldname: str) -> str:
        if fieldname in ("copies", "k", "m", "write_quorum"):
            return _join(kind_path, fieldname)
        if fieldname in ("name", "kind"):
            return path
        return _join(path, fieldname)

    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "copies": params.get("copies", 0),
        "write_quorum": params.get("write_quorum", 0),
        "k": params.get("k", 0),
        "m": params.get("m", 0),
        "min_regions": body.get("min_regions", 1),
        "same_country": body.get("same_country", False),
        "distinct_providers": body.get("distinct_providers", False),
    }
    _check_class_fields(**fields, where=where)
    return RedundancyClass(**fields)


def load_policy(yaml_text: str) -> PolicyDocument:
    """Parse and validate a policy document; the built-in classes fill in what it omits.

    Raises ``InvalidInput`` naming the path of the first bad field. Refuses documents over
    ``MAX_POLICY_BYTES``, YAML aliases and merge keys, duplicate keys, unknown fields, and any
    tag beyond plain YAML (``yaml.safe_load`` rules).
    """
    if not isinstance(yaml_text, str):
        raise InvalidInput(f"policy: must be text, got {type(yaml_text).__name__}")
    size = len(yaml_text.encode("utf-8", errors="replace"))
    if size > MAX_POLICY_BYTES:
        raise InvalidInput(f"policy: document is {size} bytes, the limit is {MAX_POLICY_BYTES}")
    root = _expect_mapping(_parse_yaml(yaml_text), "policy")
    _reject_unknown(root, "", ("version", "default_class", "classes"))
    if "version" not in root:
        raise InvalidInput("version: required")
    version = root["version"]
    if not _is_int(version) or version != POLICY_VERSION:
        raise InvalidInput(
            f"version: unsupported policy version {version!r} (supported: {POLICY_VERSION})"
        )
    classes = _builtin_classes()
    raw_classes = _expect_mapping(root.get("classes", {}) or {}, "classes")
    if len(raw_classes) > MAX_CLASSES:
        raise InvalidInput(f"classes: at most {MAX_CLASSES} classes, got {len(raw_classes)}")
    for name, node in raw_classes.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"classes.{name}: class names are 1-64 letters, digits, '_' or "
                f"'-', starting with a letter"
            )
        classes[name] = _parse_class(name, node, f"classes.{name}")
    if len(classes) > MAX_CLASSES:
        raise InvalidInput(
            f"classes: at most {MAX_CLASSES} classes including the built-ins, got {len(classes)}"
        )
    default_class = root.get("default_class", STANDARD)
    if not isinstance(default_class, str):
        raise InvalidInput(f"default_class: must be a class name, got {default_class!r}")
    if default_class not in classes:
        raise InvalidInput(
            f"default_class: unknown redundancy class {default_class!r} "
            f"(known: {', '.join(sorted(classes))})"
        )
    return PolicyDocument(version=version, classes=classes, default_class=default_class)


def _class_to_yaml(rc: RedundancyClass) -> dict[str, object]:
    out: dict[str, object]
    if rc.kind == "replication":
        out = {"replication": {"copies": rc.copies, "write_quorum": rc.write_quorum}}
    else:
        out = {"erasure": {"k": rc.k, "m": rc.m, "write_quorum": rc.write_quorum}}
    if rc.min_regions != 1:
        out["min_regions"] = rc.min_regions
    if rc.same_country:
        out["same_country"] = True
    if rc.distinct_providers:
        out["distinct_providers"] = True
    return out


def dump_policy(doc: PolicyDocument) -> str:
    """The canonical YAML text of ``doc``: every class written out, write quorums explicit."""
    data = {
        "version": doc.version,
        "default_class": doc.default_class,
        "classes": {name: _class_to_yaml(rc) for name, rc in doc.classes.items()},
    }
    text: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return text


# --- which class an object gets, and what a new document changes ---------------------------

#: Where an object's class may come from, in the order they are consulted.
CLASS_SOURCES = ("request", "bucket default", "tenant default", "policy default")


@dataclass(frozen=True)
class ClassChoice:
    """The class an object is stored under and which of ``CLASS_SOURCES`` decided it."""

    redundancy_class: RedundancyClass
    source: str


def choose_class(
    policy: PolicyDocument,
    *,
    requested: str | None = None,
    bucket_default: str | None = None,
    tenant_default: str | None = None,
) -> ClassChoice:
    """The first of: the class the request names, the bucket's default, the tenant's default,
    the policy's default. A named class that the policy does not define is ``InvalidInput``
    naming where the name came from; it never falls through to the next source (a typo in a
    header must not silently store an object under a weaker class)."""
    for source, name in (
        ("request", requested),
        ("bucket default", bucket_default),
        ("tenant default", tenant_default),
    ):
        if name is None or name == "":
            continue
        if name not in policy.classes:
            raise InvalidInput(
                f"{source}: unknown redundancy class {name!r} "
                f"(known: {', '.join(sorted(policy.classes))})"
            )
        return ClassChoice(policy.classes[name], source)
    return ClassChoice(policy.default, "policy default")


@dataclass(frozen=True)
class PolicyDiff:
    """Classes a new document adds, removes or redefines, relative to the one in force."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    default_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.default_changed)


def diff_policies(old: PolicyDocument, new: PolicyDocument) -> PolicyDiff:
    """What applying ``new`` over ``old`` changes; names sorted."""
    return PolicyDiff(
        added=tuple(sorted(set(new.classes) - set(old.classes))),
        removed=tuple(sorted(set(old.classes) - set(new.classes))),
        changed=tuple(
            sorted(
                n for n in set(old.classes) & set(new.classes) if old.classes[n] != new.classes[n]
            )
        ),
        default_changed=old.default_class != new.default_class,
    )

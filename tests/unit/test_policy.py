"""Policy DSL: built-ins, the documented example, round trips, and precise refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.policy import (
    COLD_ARCHIVE,
    MAX_POLICY_BYTES,
    REGIONAL,
    STANDARD,
    PolicyDocument,
    RedundancyClass,
    builtin_policy,
    dump_policy,
    load_policy,
)

EXAMPLE = """\
version: 1
default_class: StandardClass
classes:
  StandardClass: {replication: {copies: 3, write_quorum: 2}, min_regions: 2}
  RegionalClass: {replication: {copies: 2, write_quorum: 2}, same_country: true}
  ColdArchiveClass: {erasure: {k: 4, m: 2, write_quorum: 5}}
  Hot5: {replication: {copies: 5, write_quorum: 3}, distinct_providers: true}
"""


def test_builtin_classes() -> None:
    p = builtin_policy()
    assert p.default_class == STANDARD and p.default == p.get(STANDARD)
    std, reg, cold = p.get(STANDARD), p.get(REGIONAL), p.get(COLD_ARCHIVE)
    assert (std.kind, std.copies, std.write_quorum, std.min_regions, std.width) == (
        "replication",
        3,
        2,
        2,
        3,
    )
    assert (reg.copies, reg.write_quorum, reg.same_country, reg.width) == (2, 2, True, 2)
    # The original design's 2-of-6: any 2 of 6 shards rebuild, acknowledged at 4 (docs/policy.md)
    assert (cold.kind, cold.k, cold.m, cold.write_quorum, cold.width) == ("erasure", 2, 4, 4, 6)
    with pytest.raises(InvalidInput, match="unknown redundancy class Nope"):
        p.get("Nope")


def test_documented_example_loads() -> None:
    p = load_policy(EXAMPLE)
    assert p.get("Hot5") == RedundancyClass(
        "Hot5", "replication", copies=5, write_quorum=3, distinct_providers=True
    )
    assert {STANDARD, REGIONAL, COLD_ARCHIVE} <= set(p.classes)
    assert load_policy(dump_policy(p)) == p


def test_builtins_fill_in_and_can_be_redefined() -> None:
    p = load_policy("version: 1\nclasses:\n  StandardClass: {replication: {copies: 4}}\n")
    assert p.get(STANDARD).copies == 4 and p.get(STANDARD).write_quorum == 3  # majority
    assert p.get(COLD_ARCHIVE) == builtin_policy().get(COLD_ARCHIVE)
    assert load_policy("version: 1").classes == builtin_policy().classes
    e = load_policy("version: 1\ndefault_class: Arch\nclasses:\n  Arch: {erasure: {k: 6, m: 3}}")
    assert e.default.write_quorum == 8  # k + ceil(m / 2)
    e = load_policy("version: 1\ndefault_class: Arch\nclasses:\n  Arch: {erasure: {k: 4, m: 2}}")
    assert e.default.write_quorum == 5  # k + 1 when m <= 2


def test_classes_are_read_only() -> None:
    p = builtin_policy()
    with pytest.raises(TypeError):
        p.classes["X"] = p.get(STANDARD)  # type: ignore[index]


@st.composite
def redundancy_classes(draw: st.DrawFn, name: str) -> RedundancyClass:
    if draw(st.booleans()):
        copies = draw(st.integers(1, 64))
        fields = {
            "kind": "replication",
            "copies": copies,
            "write_quorum": draw(st.integers(0, copies)),
        }
        width = copies
    else:
        k = draw(st.integers(1, 200))
        m = draw(st.integers(0, 256 - k))
        fields = {
            "kind": "erasure",
            "k": k,
            "m": m,
            "write_quorum": draw(st.one_of(st.just(0), st.integers(k, k + m))),
        }
        width = k + m
    return RedundancyClass(
        name=name,
        min_regions=draw(st.integers(1, width)),
        same_country=draw(st.booleans()),
        distinct_providers=draw(st.booleans()),
        **fields,
    )


@st.composite
def documents(draw: st.DrawFn) -> PolicyDocument:
    names = draw(
        st.lists(
            st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True), unique=True, max_size=5
        )
    )
    classes = dict(builtin_policy().classes)
    for name in names:
        classes[name] = draw(redundancy_classes(name))
    return PolicyDocument(
        version=1, classes=classes, default_class=draw(st.sampled_from(sorted(classes)))
    )


@settings(max_examples=80, deadline=None)
@given(documents())
def test_dump_load_roundtrip(doc: PolicyDocument) -> None:
    text = dump_policy(doc)
    assert load_policy(text) == doc
    assert dump_policy(load_policy(text)) == text


BAD = [
    ("", "policy: must be a mapping"),
    ("- 1\n- 2", "policy: must be a mapping"),
    ("classes: {}", "version: required"),
    ("version: 2", "version: unsupported policy version 2"),
    ("version: '1'", "version: unsupported policy version '1'"),
    ("version: true", "version: unsupported policy version True"),
    ("version: 1\nextra: 1", "extra: unknown field"),
    ("version: 1\ndefault_class: Nope", "default_class: unknown redundancy class 'Nope'"),
    ("version: 1\ndefault_class: [a]", "default_class: must be a class name"),
    ("version: 1\nclasses: [a]", "classes: must be a mapping"),
    ("version: 1\nclasses: {'1bad': {replication: {copies: 1}}}", "classes.1bad: class names"),
    ("version: 1\nclasses: {A: 3}", "classes.A: must be a mapping"),
    ("version: 1\nclasses: {A: {}}", "classes.A: exactly one of 'replication' or 'erasure'"),
    (
        "version: 1\nclasses: {A: {replication: {copies: 2}, erasure: {k: 1, m: 1}}}",
        "classes.A: exactly one of",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 2}, color: red}}",
        "classes.A.color: unknown field",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 2, k: 1}}}",
        "classes.A.replication.k: unknown field",
    ),
    (
        "version: 1\nclasses: {A: {replication: {write_quorum: 1}}}",
        "classes.A.replication.copies: required",
    ),
    ("version: 1\nclasses: {A: {replication: 3}}", "classes.A.replication: must be a mapping"),
    (
        "version: 1\nclasses: {A: {replication: {copies: '3'}}}",
        "classes.A.replication.copies: must be an integer",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3.0}}}",
        "classes.A.replication.copies: must be an integer",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: true}}}",
        "classes.A.replication.copies: must be an integer",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 0}}}",
        "classes.A.replication.copies: must be between 1 and 64",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 65}}}",
        "classes.A.replication.copies: must be between 1 and 64",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3, write_quorum: 4}}}",
        "classes.A.replication.write_quorum: must be between 1 and copies (3), got 4",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3, write_quorum: 0}}}",
        "classes.A.replication.write_quorum: must be at least 1",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3, write_quorum: -1}}}",
        "classes.A.replication.write_quorum: must be between 1 and copies",
    ),
    ("version: 1\nclasses: {A: {erasure: {k: 4}}}", "classes.A.erasure.m: required"),
    ("version: 1\nclasses: {A: {erasure: {m: 4}}}", "classes.A.erasure.k: required"),
    (
        "version: 1\nclasses: {A: {erasure: {k: 0, m: 2}}}",
        "classes.A.erasure.k: must be at least 1",
    ),
    (
        "version: 1\nclasses: {A: {erasure: {k: 2, m: -1}}}",
        "classes.A.erasure.m: must be at least 0",
    ),
    (
        "version: 1\nclasses: {A: {erasure: {k: 200, m: 57}}}",
        "classes.A.erasure.m: k + m must be at most 256",
    ),
    (
        "version: 1\nclasses: {A: {erasure: {k: 4, m: 2, write_quorum: 3}}}",
        "classes.A.erasure.write_quorum: must be between k (4) and k + m (6), got 3",
    ),
    (
        "version: 1\nclasses: {A: {erasure: {k: 4, m: 2, write_quorum: 7}}}",
        "classes.A.erasure.write_quorum: must be between k (4) and k + m (6), got 7",
    ),
    (
        "version: 1\nclasses: {A: {erasure: {k: 4, m: 2, copies: 6}}}",
        "classes.A.erasure.copies: unknown field",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3}, min_regions: 4}}",
        "classes.A.min_regions: must be between 1 and the number of backends the class uses (3)",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3}, min_regions: 0}}",
        "classes.A.min_regions: must be between 1",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3}, same_country: 'yes'}}",
        "classes.A.same_country: must be true or false",
    ),
    (
        "version: 1\nclasses: {A: {replication: {copies: 3}, distinct_providers: 1}}",
        "classes.A.distinct_providers: must be true or false",
    ),
    (
        "version: 1\nclasses: {StandardClass: {replication: {copies: 2}, min_regions: 3}}",
        "classes.StandardClass.min_regions",
    ),
    ("version: 1\nversion: 1", "duplicate key 'version'"),
    (
        "version: 1\nclasses:\n  A: {replication: {copies: 1}}\n  A: {replication: {copies: 2}}",
        "duplicate key 'A'",
    ),
    ("version: &v 1\ndefault_class: *v", "aliases"),
    ("version: 1\nclasses:\n  A:\n    <<: {replication: {copies: 1}}", "merge keys"),
    ("version: [1", "not valid YAML"),
    ("version: 1\n---\nversion: 1", "not valid YAML"),
    ("!!python/object/apply:os.system ['true']", "not valid YAML"),
    (
        "version: 1\nclasses: {A: {replication: {copies: 1, write_quorum: 1}, min_regions: "
        "[[[[[[[[1]]]]]]]]}}",
        "nested deeper than",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_malformed_documents_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_policy(text)
    assert message in str(info.value)


def test_size_limits() -> None:
    padding = "# " + "x" * MAX_POLICY_BYTES + "\n"
    with pytest.raises(InvalidInput, match="the limit is 65536"):
        load_policy(padding + "version: 1\n")
    many = "version: 1\nclasses:\n" + "".join(
        f"  C{i}: {{replication: {{copies: 1}}}}\n" for i in range(300)
    )
    with pytest.raises(InvalidInput, match="classes: at most 256"):
        load_policy(many)
    with pytest.raises(InvalidInput, match="must be text"):
        load_policy(b"version: 1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "mirror", "copies": 2}, "kind"),
        ({"kind": "replication", "copies": 2, "k": 1}, "only erasure classes have k and m"),
        ({"kind": "erasure", "k": 2, "m": 1, "copies": 3}, "only replication classes have copies"),
        ({"kind": "replication", "copies": 2, "min_regions": 3}, "min_regions"),
    ],
)
def test_redundancy_class_checks_itself(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RedundancyClass("X", **kwargs)  # type: ignore[arg-type]


def test_document_checks_itself() -> None:
    classes = dict(builtin_policy().classes)
    with pytest.raises(InvalidInput, match="default_class"):
        PolicyDocument(version=1, classes=classes, default_class="Nope")
    with pytest.raises(InvalidInput, match="version"):
        PolicyDocument(version=2, classes=classes)
    with pytest.raises(InvalidInput, match="classes.Other"):
        PolicyDocument(version=1, classes={**classes, "Other": classes[STANDARD]})

from __future__ import annotations

import json

import pytest

from cod.errors import SpecError
from cod.jobspec import DEFAULT_EPOCH_NS, Input, JobSpec, canonical_json, load_json, parse_seed

MODULE = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_defaults_are_explicit_in_canonical_bytes() -> None:
    spec = JobSpec(module=MODULE)
    data = json.loads(spec.canonical_bytes())
    assert data["clock"] == {"epoch_ns": DEFAULT_EPOCH_NS, "tick_ns": 1_000_000}
    assert data["entry_point"] == "_start"
    assert "seed" not in data
    assert spec.canonical_bytes() == canonical_json(data)
    assert JobSpec.from_dict(data) == spec  # a minimal document and a full one are the same job
    assert JobSpec.from_dict({"module": MODULE}).cid == spec.cid


def test_canonical_bytes_by_hand() -> None:
    spec = JobSpec(module=MODULE, args=("a",), env=(("B", "2"), ("A", "1")))
    raw = spec.canonical_bytes()
    assert raw.startswith(b'{"args":["a"],"clock":{"epoch_ns":946684800000000000,"tick_ns":1000000}')
    assert b'"env":{"A":"1","B":"2"}' in raw
    assert b" " not in raw
    assert str(spec.cid).startswith("baga")  # CIDv1, json codec


def test_seed_changes_cid_and_derived_seed_depends_on_spec() -> None:
    a = JobSpec(module=MODULE)
    b = JobSpec(module=MODULE, args=("other",))
    assert a.effective_seed != b.effective_seed
    seeded = a.with_seed(parse_seed("x"))
    assert seeded.cid != a.cid
    assert seeded.effective_seed == parse_seed("x")
    assert parse_seed("00" * 32) == bytes(32)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"module": MODULE, "colour": "red"}, "colour"),
        ({"module": MODULE, "limits": {"fuel": 1, "cpu": 2}}, "limits.cpu"),
        ({"module": MODULE, "limits": {"fuel": -1}}, "limits.fuel"),
        ({"module": MODULE, "limits": {"fuel": True}}, "limits.fuel"),
        ({"module": MODULE, "clock": {"tick_ns": 0}}, "clock.tick_ns"),
        ({"module": "Qm-not-a-cid"}, "module"),
        ({}, "module"),
        ({"module": MODULE, "args": []}, "args"),
        ({"module": MODULE, "args": [1]}, "args[0]"),
        ({"module": MODULE, "env": {"A=B": "x"}}, "env.A=B"),
        ({"module": MODULE, "seed": "abc"}, "seed"),
        ({"module": MODULE, "inputs": [{"cid": DIR, "path": "inputs"}]}, "inputs[0].path"),
        ({"module": MODULE, "inputs": [{"cid": DIR, "path": "/a/../b"}]}, "inputs[0].path"),
        ({"module": MODULE, "inputs": [{"cid": DIR, "path": "/outputs/in"}]}, "outputs"),
        ({"module": MODULE, "inputs": [{"cid": DIR, "path": "/x"}, {"cid": DIR, "path": "/x"}]}, "inputs[1].path"),
        ({"module": MODULE, "engine": "jvm"}, "engine"),
        ({"module": MODULE, "spec_version": 2}, "spec_version"),
    ],
)
def test_bad_fields_are_named(doc: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(doc)
    assert info.value.field == field
    assert field in str(info.value)


def test_json_documents_reject_floats_and_duplicates() -> None:
    with pytest.raises(SpecError, match="integer"):
        JobSpec.from_json('{"module": "%s", "limits": {"fuel": 1.5}}' % MODULE)
    with pytest.raises(SpecError, match="twice"):
        JobSpec.from_json('{"module": "%s", "module": "%s"}' % (MODULE, MODULE))
    with pytest.raises(SpecError, match="JSON"):
        JobSpec.from_json("{nope")


def test_round_trip_through_json() -> None:
    spec = JobSpec(module=MODULE, inputs=(Input(DIR, "/data"),), seed=bytes(range(32)))
    assert JobSpec.from_json(spec.canonical_bytes()) == spec


def test_canonical_json_string_escapes_by_hand() -> None:
    # SPEC 2.1: short escapes for \b \t \n \f \r, \u00xx (lower-case) for other controls, raw UTF-8 otherwise
    text = "\x01\x1f\b\t\n\f\r\"\\\x7f é\u2028"
    expected = b'"\\u0001\\u001f\\b\\t\\n\\f\\r\\"\\\\\x7f \xc3\xa9\xe2\x80\xa8"'
    assert canonical_json(text) == expected
    assert canonical_json({"b": 1, "a": [True, None, -5]}) == b'{"a":[true,null,-5],"b":1}'


# -- Stage 3: strings, nesting, duplicates and the wasm32 bounds --------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ('{"module": "%s", "args": ["a", "\\ud800"]}' % MODULE, "args[1]"),
        ('{"module": "%s", "entry_point": "x\\udfff"}' % MODULE, "entry_point"),
        ('{"module": "%s", "env": {"K": "\\udc80"}}' % MODULE, "env.K"),
        ('{"module": "%s", "env": {"\\ud800": "v"}}' % MODULE, "env.\\ud800"),
        ('{"module": "%s", "outputs": "/o\\ud83d"}' % MODULE, "outputs"),
        ('{"module": "\\ud800"}', "module"),
        ('{"module": "%s", "inputs": [{"local": "/d\\ud800", "path": "/in"}]}' % MODULE, "inputs[0].local"),
    ],
)
def test_lone_surrogates_are_spec_errors_naming_the_field(doc: str, field: str) -> None:
    # a lone surrogate is a valid JSON escape but not Unicode text: UTF-8 cannot encode it
    # (RFC 3629 section 3), so the canonical bytes would not exist
    with pytest.raises(SpecError) as info:
        JobSpec.from_json(doc)
    assert info.value.field == field
    assert "surrogate" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself is printable


def test_a_valid_surrogate_pair_is_text() -> None:
    spec = JobSpec.from_json('{"module": "%s", "args": ["\\ud83d\\ude00"]}' % MODULE)
    assert spec.args == ("\U0001F600",)
    assert b"\xf0\x9f\x98\x80" in spec.canonical_bytes()  # U+1F600 in UTF-8, by hand


@pytest.mark.parametrize("depth", [9, 1000, 100_000])
def test_deep_nesting_is_a_spec_error_not_a_recursion_error(depth: int) -> None:
    doc = '{"module": "%s", "args": %s%s}' % (MODULE, "[" * (depth - 1), "]" * (depth - 1))
    with pytest.raises(SpecError, match="nested deeper than 8"):
        JobSpec.from_json(doc)
    with pytest.raises(SpecError, match="nested deeper"):
        load_json(("[" * depth).encode())  # unterminated too


def test_nesting_rule_counts_structure_not_brackets_in_strings() -> None:
    eight = "[" * 7 + "]" * 7  # 8 levels with the document object
    assert load_json('{"a": %s}' % eight) == {"a": [[[[[[[]]]]]]]}
    assert load_json('{"a": "%s", "b": "\\"[[["}' % ("[" * 50)) == {"a": "[" * 50, "b": '"[[['}
    with pytest.raises(SpecError, match="nested"):
        load_json('{"a": "x", "b": %s}' % ("[" * 8 + "]" * 8))


@pytest.mark.parametrize(
    "doc",
    [
        '{"module": "%s", "limits": {"fuel": 1, "fuel": 2}}' % MODULE,
        '{"module": "%s", "clock": {"tick_ns": 1, "tick_ns": 1}}' % MODULE,
        '{"module": "%s", "inputs": [{"cid": "%s", "cid": "%s"}]}' % (MODULE, DIR, DIR),
        '{"module": "%s", "env": {"A": "1", "A": "1"}}' % MODULE,
    ],
)
def test_duplicate_keys_are_refused_at_every_level(doc: str) -> None:
    with pytest.raises(SpecError, match="twice"):
        JobSpec.from_json(doc)
    with pytest.raises(SpecError, match="twice"):
        load_json('{"spec": %s}' % doc)  # the node's request body goes through the same parser


def test_limits_are_bounded_by_wasm32() -> None:
    assert JobSpec.from_dict({"module": MODULE, "limits": {"memory_bytes": 1 << 32}}).limits.memory_bytes == 65536 * 65536
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"module": MODULE, "limits": {"memory_bytes": (1 << 32) + 1}})
    assert info.value.field == "limits.memory_bytes"
    assert JobSpec.from_dict({"module": MODULE, "limits": {"table_elements": 2**32 - 1}}).limits.table_elements == 2**32 - 1
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"module": MODULE, "limits": {"table_elements": 2**32}})
    assert info.value.field == "limits.table_elements"
    with pytest.raises(SpecError):
        JobSpec.from_dict({"module": MODULE, "limits": {"table_elements": 0}})


def test_a_spec_holds_at_most_max_inputs_inputs() -> None:
    """1024 inputs (SPEC 2) parse; 1025 are a SpecError naming ``inputs`` that says the limit."""
    def doc(n: int) -> dict[str, object]:
        return {"module": MODULE, "inputs": [{"cid": MODULE, "path": f"/in/{k}"} for k in range(n)]}

    assert len(JobSpec.from_dict(doc(1024)).inputs) == 1024
    with pytest.raises(SpecError, match="1025 inputs; at most 1024") as info:
        JobSpec.from_dict(doc(1025))
    assert info.value.field == "inputs"
    built = JobSpec(module=MODULE, inputs=tuple(Input(cid=MODULE, path=f"/in/{k}") for k in range(1025)))
    with pytest.raises(SpecError, match="at most 1024"):  # a spec built in code is held to it too
        built.validate()


def test_table_elements_is_the_only_new_canonical_field_and_fuel_the_only_new_default() -> None:
    # Stage 2's canonical bytes for JobSpec(module=MODULE), written out by hand; Stage 3 adds
    # exactly "table_elements":1048576 (2^20) to limits and nothing else
    stage2 = (
        '{"args":["main.wasm"],"clock":{"epoch_ns":946684800000000000,"tick_ns":1000000},"engine":"wasm",'
        '"entry_point":"_start","env":{},"inputs":[],"limits":{"fuel":50000000000,"memory_bytes":268435456,'
        '"output_bytes":1073741824,"stderr_bytes":16777216,"stdout_bytes":16777216,"timeout_ms":600000},'
        '"module":"%s","outputs":"/outputs","spec_version":1}' % MODULE
    )
    stage3 = stage2.replace('"stdout_bytes":16777216,', '"stdout_bytes":16777216,"table_elements":1048576,')
    # Stage 10 raises the default fuel to 10^12 and changes nothing else
    stage10 = stage3.replace('"fuel":50000000000,', '"fuel":1000000000000,')
    assert JobSpec(module=MODULE).canonical_bytes() == stage10.encode()


def test_from_dict_refuses_python_values_json_cannot_hold() -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"module": MODULE, "env": {1: "x", "a": "y"}})
    assert info.value.field == "env.1"
    with pytest.raises(SpecError):
        JobSpec.from_dict({"module": MODULE, 7: 1})


def test_documents_must_be_utf8() -> None:
    with pytest.raises(SpecError, match="UTF-8"):
        JobSpec.from_json(b'{"module": "\xff"}')

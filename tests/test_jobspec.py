from __future__ import annotations

import json

import pytest

from cod.errors import SpecError
from cod.jobspec import DEFAULT_EPOCH_NS, Input, JobSpec, canonical_json, parse_seed

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

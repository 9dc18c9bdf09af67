"""`cod fraud verify` and `cod fraud show` (SPEC 11.5) in process: a signed lie over the wordcount
vector's job is proven (exit 0), a true claim refuted (28), missing content undecided (29)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cod.cli import run_cli
from cod.content.store import ContentStore
from cod.fraud import FraudProof

from ..fraud.kit import HONEST, LIE, SPEC, key, proof_obj, signed
from ..helpers import VECTORS


def _write(tmp_path: Path, name: str, obj: dict[str, object]) -> str:
    path = tmp_path / name
    path.write_bytes(FraudProof.parse(obj).canonical_bytes())
    return str(path)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COD_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_verify_proven_refuted_and_undecided(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lie = _write(home, "lie.json", proof_obj(signed(key(3), LIE)))
    assert run_cli(["fraud", "verify", lie]) == 29  # the store is empty: undecided, naming the module
    assert SPEC.module in capsys.readouterr().err
    store = ContentStore()
    store.add(VECTORS / "wordcount.wasm")
    store.add(VECTORS / "data" / "wordcount")
    assert run_cli(["fraud", "verify", lie]) == 0
    out = capsys.readouterr().out
    assert out.startswith("proven:") and key(3).node_id in out and HONEST in out
    assert run_cli(["fraud", "verify", lie, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verdict"]["status"] == "proven" and shown["verdict"]["result_cid"] == HONEST
    assert shown["proof_id"] == FraudProof.from_bytes(Path(lie).read_bytes()).proof_id
    accusation = _write(home, "false.json", proof_obj(signed(key(4), HONEST), referee_result=LIE))
    assert run_cli(["fraud", "verify", accusation]) == 28
    assert "refuted" in capsys.readouterr().err
    assert run_cli(["fraud", "verify", lie, "--referee-fuel", "1000"]) == 29
    assert "fuel bound" in capsys.readouterr().err


def test_show(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lie = _write(home, "lie.json", proof_obj(signed(key(3), LIE)))
    assert run_cli(["fraud", "show", lie, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["liar"], shown["claimed_result"], shown["referee"]["result_cid"]) == (key(3).node_id, LIE, HONEST)
    assert run_cli(["fraud", "show", lie]) == 0
    assert key(3).node_id in capsys.readouterr().out


def test_list_shows_held_proofs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["fraud", "list", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    proof = FraudProof.parse(proof_obj(signed(key(3), LIE)))
    held = home / "home" / "fraud"
    held.mkdir(parents=True)
    (held / f"{proof.proof_id}.json").write_bytes(proof.canonical_bytes())
    (held / "junk.json").write_bytes(b"{")
    assert run_cli(["fraud", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r.get("proof_id") for r in rows] == [proof.proof_id, None] and "not strict JSON" in rows[1]["error"]

"""Conformance with the official WASI test suite (SPEC 4.7).

Runs the prebuilt wasm32-wasip1 tests of WebAssembly/wasi-testsuite (AssemblyScript, C,
Rust) through cod's executor, each as upstream runners do: its ``root`` preopened at ``/``,
writable (here: ``outputs`` = ``/`` with ``output_base`` = the root directory's tree, or
empty when the test names no root); argv = the test's name then its ``args``; its ``env``.
Exit code, stdout and stderr must be what the test's ``.json`` says (default 0, "", "").

The suite is not part of this repository (no file of it may be committed). Point the test at
a checkout of its ``prod/testsuite-base`` branch:

    git clone -b prod/testsuite-base https://github.com/WebAssembly/wasi-testsuite
    COD_WASI_TESTSUITE=$PWD/wasi-testsuite/tests make test

Tests whose expectation contradicts SPEC.md are listed in CONTRADICTS (the same table as SPEC
4.7): each MUST fail and every other test MUST pass, so a listed test that starts passing
fails this test too, and the list stays honest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cod import Engine, JobSpec, module_cid, run
from cod.content.unixfs import Importer

ENV_VAR = "COD_WASI_TESTSUITE"
SUITES = ("assemblyscript", "c", "rust")
TARGET = "wasm32-wasip1"
ROOT = "/"

CONTRADICTS: dict[str, str] = {
    "c/sock_shutdown-invalid_fd": "expects fd 3 closed: the output mount is always preopened, at fd 3 here (4.5)",
}
"""``suite/name`` -> why SPEC.md decides otherwise (kept equal to the table in SPEC 4.7)."""


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    wasm: Path
    config: dict[str, object]

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.name}"


def _suite_dir() -> Path:
    """The directory named by COD_WASI_TESTSUITE, or a skip saying how to get the suite."""
    where = os.environ.get(ENV_VAR)
    if not where or not Path(where).is_dir():
        state = f"{ENV_VAR}={where!r} is not a directory" if where else f"{ENV_VAR} is not set"
        pytest.skip(f"{state}: clone https://github.com/WebAssembly/wasi-testsuite (branch "
                    f"prod/testsuite-base) and set {ENV_VAR} to its tests/ directory")
    return Path(where)


def _cases(tests: Path) -> list[Case]:
    cases = []
    for suite in SUITES:
        directory = tests / suite / "testsuite" / TARGET
        for wasm in sorted(directory.glob("*.wasm")):
            spec_file = wasm.with_suffix(".json")
            config = json.loads(spec_file.read_text()) if spec_file.exists() else {}
            cases.append(Case(suite, wasm.stem, wasm, config))
    return cases


def _outcome(case: Case, engine: Engine, results: Path) -> str | None:
    """Run one test; None when it behaves as its .json says, else what differed."""
    wasm = case.wasm.read_bytes()
    args = [str(a) for a in case.config.get("args", [])]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in case.config.get("env", {}).items()}  # type: ignore[attr-defined]
    sources: dict[str, str] = {}
    base = None
    root = case.config.get("root")
    if root is not None:
        base_dir = case.wasm.parent / str(root)
        base = str(Importer().tree(base_dir, mount=ROOT).cid)
        sources[ROOT] = str(base_dir)
    spec = JobSpec(module=module_cid(wasm), args=(case.wasm.name, *args), env=tuple(sorted(env.items())),
                   outputs=ROOT, output_base=base)
    try:
        result = run(spec, wasm, sources, results, engine)
    except Exception as exc:  # a refusal is a failure of the test, reported with the others
        return f"{type(exc).__name__}: {exc}"
    # As upstream's runner: the exit code always (default 0), a stream only when the .json gives it.
    want = (int(case.config.get("exit_code", 0)),  # type: ignore[call-overload]
            _stream(case.config, "stdout"), _stream(case.config, "stderr"))
    got = (result.exit_code, (results / "stdout").read_bytes(), (results / "stderr").read_bytes())
    if got[0] == want[0] and want[1] in (None, got[1]) and want[2] in (None, got[2]):
        return None
    return f"exit {got[0]} (want {want[0]}), stdout {got[1][:200]!r}, stderr {got[2][:300]!r}"


def _stream(config: dict[str, object], name: str) -> bytes | None:
    return None if name not in config else str(config[name]).encode()


def test_wasi_testsuite(engine: Engine, tmp_path: Path) -> None:
    cases = _cases(_suite_dir())
    assert cases, "no tests found: COD_WASI_TESTSUITE must name the suite's tests/ directory"
    failures = {c.key: why for c in cases if (why := _outcome(c, engine, tmp_path / c.suite / c.name)) is not None}
    for suite in SUITES:
        mine = [c for c in cases if c.suite == suite]
        passed = sum(c.key not in failures for c in mine)
        listed = sum(c.key in CONTRADICTS for c in mine)
        print(f"wasi-testsuite {suite}: {passed} passed, {listed} contradict SPEC, of {len(mine)}")
    print(f"wasi-testsuite: {len(cases) - len(failures)} passed, {len(failures)} failed, "
          f"{len(CONTRADICTS)} contradict SPEC, of {len(cases)}")
    unexpected = {k: v for k, v in failures.items() if k not in CONTRADICTS}
    now_passing = sorted(k for k in CONTRADICTS if k not in failures and k in {c.key for c in cases})
    assert not unexpected, "tests that SPEC allows failed:\n" + "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    assert not now_passing, f"listed as contradicting SPEC but passing (remove from CONTRADICTS and SPEC 4.7): {now_passing}"

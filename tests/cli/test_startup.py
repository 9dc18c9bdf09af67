"""Fast start: a command imports only what it needs. Checked by the modules a real `cod`
process has loaded when it exits (sys.modules), never by timing (BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cod.wasm.engine import wasmtime_version

from ..helpers import ROOT, VECTORS

# Runs `cod ARGS` and writes the names of the modules loaded by then, as JSON, to the file argv[1].
PROBE = r"""
import json, sys
from cod.cli import run_cli
code = run_cli(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""

SERVER_SIDE = ("aiohttp.web", "cod.node.server", "cod.node.app", "verifier.devstack", "sqlite_utils")


def loaded(tmp: Path, *args: str, **env: str) -> tuple[int, set[str]]:
    out = tmp / "modules.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith("COD_")}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], cwd=tmp, timeout=120,
                          env=dict(base, COD_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"),
                                   PYTHONPATH=str(ROOT), **env),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.returncode, set(json.loads(out.read_text())) if out.exists() else set()


def test_probe_sees_the_modules(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "--help")
    assert code == 0 and "click" in modules and "cod.cli" in modules


def test_help_loads_no_command_module_engine_or_network(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "--help")
    assert code == 0
    assert not {m for m in modules if m.startswith(("cod.cli.", "verifier", "aiohttp", "wasmtime", "asyncio"))
                and m not in ("cod.cli.__init__",)}


def test_a_local_run_loads_neither_the_network_nor_the_node_server(tmp_path: Path) -> None:
    code, modules = loaded(tmp_path, "run", str(VECTORS / "hello.wasm"))
    assert code == 0
    assert "wasmtime" in modules and "cod.wasm.executor" in modules
    assert not modules & {"aiohttp", "asyncio", *SERVER_SIDE}


def test_a_verified_run_on_configured_nodes_never_loads_the_node_server(tmp_path: Path) -> None:
    # no node answers here: the run fails (not enough nodes, exit 16) after importing everything it uses
    code, modules = loaded(tmp_path, "run", "--verify", "1", str(VECTORS / "hello.wasm"),
                           COD_NODES="http://127.0.0.1:9")
    assert code != 0
    assert "aiohttp" in modules and "verifier.verify" in modules
    assert not modules & set(SERVER_SIDE)
    # wasmtime is loaded: the module is checked here before any node is asked (SPEC 11 step 0)


def test_the_cheap_wasmtime_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    assert wasmtime_version() == version("wasmtime")


def test_verify_is_the_function_whichever_import_comes_first() -> None:
    script = ("import verifier.verify, verifier.reputation\nfrom verifier.verify import check_quorum\n"
              "from verifier import Records, Verification, verify\nimport inspect\n"
              "assert inspect.iscoroutinefunction(verify), verify\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "ok", out.stderr

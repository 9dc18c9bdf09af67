"""The executor never crashes: defined outcomes for host faults, staging always removed,
result modes fixed whatever the umask (SPEC 6, 7.1)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from cod import Engine, Input, JobSpec, Limits, cid_of_tree, module_cid, run
from cod.content.unixfs import Importer
from cod.errors import Indeterminate, ModuleError
from cod.wasm import executor
from cod.wasm.executor import DIR_MODE, FILE_MODE, remove_tree

from ..helpers import ROOT, VECTORS, load_vector

HELLO = (VECTORS / "hello.wasm").read_bytes()
DEPTH = 1200  # shutil.rmtree on Python 3.11 raised RecursionError near 990 levels


def _deep_tree(root: Path, depth: int, name: str) -> None:
    """``depth`` nested directories called ``name`` under root, each holding a file; made with
    paths relative to an open directory, as the total path is far over PATH_MAX."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as out:
                out.write(b"x")
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


def test_remove_tree_handles_trees_deeper_than_recursion_and_path_max(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    _deep_tree(root, DEPTH, "d" * 200)  # 1200 x 201 bytes: a path of 241 KB, PATH_MAX is 4096
    remove_tree(root)
    assert not root.exists()


def test_remove_tree_never_follows_symlinks_and_opens_closed_modes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"precious")
    root = tmp_path / "staging"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_bytes(b"x")
    (root / "a" / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "keep")
    os.chmod(root / "a" / "b", 0)  # as a job's umask of 0777 leaves it
    os.chmod(root / "a", 0)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep").read_bytes() == b"precious"
    remove_tree(root)  # absent: nothing to do, no error


def _spec() -> JobSpec:
    return JobSpec(module=module_cid(HELLO))


def test_failure_while_hashing_is_indeterminate_and_leaves_nothing(engine: Engine, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    class DiskFull(Importer):
        def tree(self, path: Any) -> Any:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(executor, "Importer", DiskFull)
    with pytest.raises(Indeterminate, match="host-fault.*No space left"):
        run(_spec(), HELLO, {}, tmp_path / "results", engine)
    assert list(tmp_path.iterdir()) == []


def test_python_failure_while_running_is_indeterminate(engine: Engine, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, store: Any, module: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(wasmtime.Linker, "instantiate", broken)
    with pytest.raises(Indeterminate, match="host-fault.*RecursionError"):
        run(_spec(), HELLO, {}, tmp_path / "results", engine)
    assert list(tmp_path.iterdir()) == []


def test_instantiation_error_is_a_module_error(engine: Engine, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # with the pre-check off, wasmtime's own limiter refuses the table at instantiation
    monkeypatch.setattr(executor, "_check_tables", lambda wasm, spec: None)
    wasm = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1) (table 20 funcref) (func (export "_start")))'))
    with pytest.raises(ModuleError, match="cannot be instantiated"):
        run(JobSpec(module=module_cid(wasm), limits=Limits(table_elements=10)), wasm, {}, tmp_path / "r", engine)
    assert list(tmp_path.iterdir()) == []


UMASK_RUN = textwrap.dedent("""
    import json, os, stat, sys
    from pathlib import Path
    from cod import Engine, Input, JobSpec, cid_of_tree, module_cid, run
    vectors, out, mask = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3], 8)
    os.umask(mask)
    wasm = (vectors / "wordcount.wasm").read_bytes()
    data = vectors / "data" / "wordcount"
    spec = JobSpec(module=module_cid(wasm), args=("wordcount.wasm",), inputs=(Input(str(cid_of_tree(data)), "/inputs"),))
    result = run(spec, wasm, {"/inputs": str(data)}, out, Engine(None))
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in sorted(out.rglob("*"))}
    modes["."] = oct(stat.S_IMODE(out.stat().st_mode))
    print(json.dumps({"cid": result.result_cid, "modes": modes}))
""")


def _run_under_umask(tmp: Path, mask: int) -> dict[str, Any]:
    import json

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", UMASK_RUN, str(VECTORS), str(tmp / f"r{mask:o}"), f"{mask:o}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def test_results_have_fixed_modes_whatever_the_umask(tmp_path: Path) -> None:
    strict, usual = _run_under_umask(tmp_path, 0o777), _run_under_umask(tmp_path, 0o022)
    expected_cid = load_vector("wordcount")["expect"]["result_cid"]  # checked by js-ipfs-unixfs
    assert strict["cid"] == usual["cid"] == expected_cid
    assert strict["modes"] == usual["modes"] == {
        ".": oct(DIR_MODE), "exitCode": oct(FILE_MODE), "outputs": oct(DIR_MODE),
        "outputs/count.txt": oct(FILE_MODE), "stderr": oct(FILE_MODE), "stdout": oct(FILE_MODE),
    }
    assert (DIR_MODE, FILE_MODE) == (0o755, 0o644)


def test_fix_modes_walks_without_recursion(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _deep_tree(root, 300, "d")
    executor.fix_modes(root)
    seen = {stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}
    assert seen == {DIR_MODE, FILE_MODE}
    _ = (Input, cid_of_tree)  # re-exported names the subprocess uses

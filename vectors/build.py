"""Rebuild vectors/*.wasm from vectors/src/*.c with the pinned zig (pip package ziglang).

Run through `make vectors`. The flags are fixed and zig's output is reproducible, so a
rebuild gives byte-identical modules; `--check` rebuilds into a temporary directory and
fails if any module differs from the committed one.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = ["-target", "wasm32-wasi", "-O2", "-s", "-fno-stack-protector"]


def build(out_dir: Path) -> list[Path]:
    built = []
    for source in sorted((HERE / "src").glob("*.c")):
        target = out_dir / (source.stem + ".wasm")
        cmd = [sys.executable, "-m", "ziglang", "cc", *FLAGS, "-o", str(target), str(source.relative_to(HERE))]
        subprocess.run(cmd, check=True, cwd=HERE)
        built.append(target)
    return built


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            differ = [p.name for p in build(Path(tmp)) if not filecmp.cmp(p, HERE / p.name, shallow=False)]
        if differ:
            print("rebuilt modules differ from the committed ones:", ", ".join(differ))
            return 1
        print("all vectors rebuild byte-identically")
        return 0
    for path in build(HERE):
        print(path.relative_to(HERE.parent), path.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""examples/: the commands each example's README shows, run as written.

The Go word count (examples/wordcount-go/) runs on three nodes of an embedded network, its
input named by the CID `cod add` printed; its result must be the one the README shows, the
one the wordcount-go vector pins (derived without cod in tests/test_vectors.py), and so the C
word count's. One cold `--verify 3` of a Go module: each embedded node compiles it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT, cod_env, load_vector

GO_EXAMPLE = ROOT / "examples" / "wordcount-go"


def _commands(readme: str) -> list[tuple[list[str], list[str]]]:
    """Each ``$ cod ...`` line of an indented block with the lines shown after it (to the next)."""
    shown: list[tuple[list[str], list[str]]] = []
    for line in readme.splitlines():
        if line.startswith("    $ "):
            shown.append((shlex.split(line[6:]), []))
        elif shown and line.startswith("    "):
            shown[-1][1].append(line[4:])
        elif shown and line.strip():
            break
    return shown


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_go_wordcount_example_runs_as_written(tmp_path: Path) -> None:
    commands = _commands((GO_EXAMPLE / "README.md").read_text())
    assert [argv[:2] for argv, _ in commands] == [["cod", "add"], ["cod", "run"]]
    (tmp_path / "vectors").symlink_to(ROOT / "vectors")  # the README's paths are the repository's
    env = cod_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"))
    outputs = []
    for argv, shown in commands:
        done = subprocess.run([sys.executable, "-m", "cod", *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=800)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        report = (done.stdout + done.stderr).splitlines()
        for want in shown:
            if want != "...":
                assert any(re.sub(r"\s+", " ", want.strip()) == re.sub(r"\s+", " ", line.strip()) for line in report), \
                    (argv, want, report)
        outputs.append(report)
    added = outputs[0][0].split()[1]
    assert f"{added}:/inputs" in commands[1][0]  # the run names the input by the CID cod add printed
    result = next(line.split()[-1] for line in outputs[1] if line.startswith("Result CID:"))
    assert result == load_vector("wordcount-go")["expect"]["result_cid"] == load_vector("wordcount")["expect"][
        "result_cid"]


def test_go_example_builds_as_make_vectors_does() -> None:
    """The README's build line has the flags vectors/build.py builds the committed module with."""
    readme = (GO_EXAMPLE / "README.md").read_text()
    build = next(line for line in readme.splitlines() if " go build " in line)
    for flag in ("GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "-trimpath", "-buildvcs=false",
                 "-o ../../../wordcount-go.wasm"):
        assert flag in build
    assert (GO_EXAMPLE / "src" / "main.go").resolve() == ROOT / "vectors" / "src" / "go" / "wordcount" / "main.go"


def test_readme_shows_the_go_example_first() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.splitlines()[2].split()[:3] == ["make", "demo", "#"]  # it still opens with make demo, make test
    assert readme.splitlines()[3].split()[:3] == ["make", "test", "#"]
    examples = readme.split("\n## Examples\n", 1)[1].split("\n## ", 1)[0]
    items = [line for line in examples.splitlines() if line.startswith("- ")]
    assert "examples/wordcount-go/" in items[0]
    for argv, _ in _commands((GO_EXAMPLE / "README.md").read_text()):  # the same commands as the example's
        assert re.search(rf"^\s+{re.escape(shlex.join(argv))}(\s|$)", examples, re.M), argv

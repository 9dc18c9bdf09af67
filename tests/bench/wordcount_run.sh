#!/bin/sh
# One word count of vectors/data/wordcount with the code of checkout TREE, as a user runs it:
#     tests/bench/wordcount_run.sh TREE local     # cod run vectors/wordcount.wasm -i vectors/data/wordcount
#     tests/bench/wordcount_run.sh TREE verify    # the same with --verify 3 (an embedded devstack of 3 nodes)
# cod's own directories are fresh each time (no node configured, so --verify starts its devstack); the exit code
# is cod's. Time it from outside, one tree against another, alternating (BENCHMARKS.md, Stage 9).
set -e
TREE=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cod-wordcount-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
VERIFY=
[ "$2" = verify ] && VERIFY="--verify 3"
env -u COD_NODES COD_HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/config" PYTHONPATH="$TREE" \
    "$PY" -m cod run $VERIFY "$TREE/vectors/wordcount.wasm" -i "$TREE/vectors/data/wordcount" --output-dir "$WORK/r"

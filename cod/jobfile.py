"""A job file: ``cod run -f job.json``, the command line of ``cod run`` written down.

    {
      "module": "wordcount.wasm",            # a path (relative to the file); docker: the image
      "args": ["a", "b"],                    # ARGS after MODULE (argv[0] is main.wasm, SPEC 2)
      "inputs": ["data/wordcount:/inputs"],  # SRC[:DST], as -i
      "env": {"LANG": "C"},
      "seed": "any text or 64 hex digits",
      "entry_point": "_start",
      "outputs": "/outputs",
      "output_base": "base-dir",
      "engine": "wasm",                      # or "docker"
      "limits": {"fuel": 1000000000000, "memory": "256MiB", "timeout": "600s",
                 "max_stdout": "16MiB", "max_stderr": "16MiB", "max_output": "1GiB"},
      "verify": 3, "quorum": 2, "nodes": ["http://127.0.0.1:1234"]
    }

Every key is optional but ``module``; unknown keys are refused (a typo must not silently
run a different job). ``cod run --dry-run --json`` prints ``{"job_cid", "spec", "job"}``
with ``job`` in this form, and ``-f`` takes that whole object too, so a dry run can be
saved, read, and run. Options given on the command line win over the file.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, SpecError

MAX_JOB_FILE_BYTES = 1 << 20
"""A job file names files; it never holds data, so a megabyte is plenty."""
LIMIT_KEYS = ("fuel", "memory", "timeout", "max_stdout", "max_stderr", "max_output")
KEYS = ("module", "args", "inputs", "env", "seed", "entry_point", "outputs", "output_base", "engine", "limits",
        "verify", "quorum", "nodes")
HINT = f"a job file is a JSON object with the keys {', '.join(KEYS)} (README: cod run -f)"


@dataclass
class JobFile:
    module: str
    args: list[str] | None = None
    inputs: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # K=V, as -e
    seed: str | None = None
    entry_point: str | None = None
    outputs: str | None = None
    output_base: str | None = None
    engine: str | None = None
    limits: dict[str, int | str] = field(default_factory=dict)
    verify: int | None = None
    quorum: int | None = None
    nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module}
        for key in KEYS[1:]:
            value = getattr(self, key)
            if key == "env":
                value = dict(item.split("=", 1) for item in value)
            if value not in (None, [], {}):
                out[key] = value
        return out


def read_job_file(path: str) -> JobFile:
    """Parse the job file at ``path`` ("-": stdin); InputError if unreadable, SpecError naming
    the key if malformed. Relative paths in it are taken from the file's directory."""
    import sys

    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_JOB_FILE_BYTES + 1)
            base = Path.cwd()
        else:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would wait for a writer for ever
                raise InputError(f"cannot read job file {path!r}: it is not a regular file", "name a JSON file")
            with open(path, "rb") as handle:
                raw = handle.read(MAX_JOB_FILE_BYTES + 1)
            base = Path(path).resolve().parent
    except OSError as exc:
        raise InputError(f"cannot read job file {path!r}: {exc.strerror or exc}", "check the path") from None
    if len(raw) > MAX_JOB_FILE_BYTES:
        raise SpecError("job file", f"{path!r} is over {MAX_JOB_FILE_BYTES} bytes", HINT)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError("job file", f"{path!r} is not UTF-8 JSON: {exc}", HINT) from None
    if isinstance(data, dict) and "job" in data and "spec" in data:  # a saved `cod run --dry-run --json`
        data = data["job"]
    if not isinstance(data, dict):
        raise SpecError("job file", f"{path!r} holds a {type(data).__name__}, not an object", HINT)
    return parse_job(data, base)


def parse_job(data: dict[str, Any], base: Path) -> JobFile:
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise SpecError("job file", f"unknown key(s) {', '.join(map(repr, unknown))}", HINT)
    engine = _text(data, "engine")
    if engine not in (None, "wasm", "docker"):
        raise SpecError("job file.engine", f"{engine!r} is neither \"wasm\" nor \"docker\"", HINT)
    module = _text(data, "module")
    if module is None:
        raise SpecError("job file.module", "is missing", "name the module file (or the image, for docker)")
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise SpecError("job file.limits", "must be an object", HINT)
    for key, value in limits.items():
        if key not in LIMIT_KEYS:
            raise SpecError(f"job file.limits.{key}", "is not a limit", f"limits are {', '.join(LIMIT_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SpecError(f"job file.limits.{key}", "must be a number or a string such as \"256MiB\"", HINT)
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise SpecError("job file.env", "must be an object of strings", HINT)
    return JobFile(
        module=_path(module, base) if engine != "docker" else module,
        args=_strings(data, "args"),
        inputs=[_mount(item, base) for item in _strings(data, "inputs") or []],
        env=[f"{k}={v}" for k, v in sorted(env.items())],
        seed=_text(data, "seed"), entry_point=_text(data, "entry_point"), outputs=_text(data, "outputs"),
        output_base=_path(b, base) if (b := _text(data, "output_base")) else None,
        engine=engine, limits=dict(limits),
        verify=_count(data, "verify"), quorum=_count(data, "quorum"),
        nodes=_strings(data, "nodes") or [],
    )


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"job file.{key}", "must be a string", HINT)
    return value


def _strings(data: dict[str, Any], key: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"job file.{key}", "must be a list of strings", HINT)
    return list(value)


def _count(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SpecError(f"job file.{key}", "must be a positive integer", HINT)
    return value


def _path(text: str, base: Path) -> str:
    return text if os.path.isabs(text) else str(base / text)


def _mount(item: str, base: Path) -> str:
    """An input ``SRC[:DST]`` with SRC taken from the job file's directory."""
    src, sep, dst = item.partition(":")
    return _path(src, base) + sep + dst

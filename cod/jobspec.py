"""The job spec: what to run, on what, under which limits; its canonical bytes and CID.

Canonical bytes are the spec's JSON object with every field present (defaults filled in,
``seed`` and ``output_base`` left out when not set), keys sorted by code point, no
insignificant white space, UTF-8, integers only. The job CID is CIDv1(json codec 0x0200, sha2-256 of those bytes).

Every way in (``from_json``, :func:`load_json` for documents that wrap a spec, and
``from_dict``) refuses the same things with a SpecError naming the field: duplicate keys,
floats, nesting deeper than ``MAX_JSON_DEPTH``, and strings that are not Unicode text
encodable as UTF-8 (lone surrogates such as JSON ``"\\ud800"``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .content.cid import CID, JSON
from .errors import CIDError, SpecError
from .limits import MAX_INPUTS

SPEC_VERSION = 1
ENGINE_WASM = "wasm"
ENGINE_DOCKER = "docker"

DEFAULT_EPOCH_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
DEFAULT_TICK_NS = 1_000_000  # 1 ms
DEFAULT_ENTRY_POINT = "_start"
DEFAULT_INPUT_PATH = "/inputs"
DEFAULT_OUTPUT_PATH = "/outputs"
ROOT_PATH = "/"  # the one mount path that may be the root: ``outputs`` (then no input mounts)
SEED_BYTES = 32
SEED_DERIVATION_PREFIX = b"cod/seed/v1\x00"
MAX_INT = 2**63 - 1
MAX_MEMORY_BYTES = 1 << 32  # wasm32: 65536 pages of 64 KiB
MAX_TABLE_ELEMENTS = (1 << 32) - 1  # wasm32: a table's size is a u32
DEFAULT_TABLE_ELEMENTS = 1 << 20
DEFAULT_FUEL = 10**12
"""About a minute of compute (a Go job hashing 50 MB five times burns 78 G fuel in ~5 s): real jobs
finish under the defaults; a node's max_fuel (10^13 by default) bounds what a spec may ask."""
MAX_JSON_DEPTH = 8
"""Deepest nesting of arrays and objects in a spec document (a spec needs 3: the document,
``inputs``, one input; a request body wrapping it 4). Checked before parsing, so the depth
a document may have never depends on the host's recursion limit."""
MAX_LIMITS = {"memory_bytes": MAX_MEMORY_BYTES, "table_elements": MAX_TABLE_ELEMENTS}


@dataclass(frozen=True)
class Limits:
    """Deterministic limits (fuel, memory, output caps) and the wall-clock safety net."""

    fuel: int = DEFAULT_FUEL
    memory_bytes: int = 256 * 1024 * 1024
    stdout_bytes: int = 16 * 1024 * 1024
    stderr_bytes: int = 16 * 1024 * 1024
    output_bytes: int = 1024 * 1024 * 1024
    timeout_ms: int = 600_000
    table_elements: int = DEFAULT_TABLE_ELEMENTS


@dataclass(frozen=True)
class Input:
    """Content mounted read-only at ``path``: a UnixFS CID, or a path local to the node.

    A ``local`` input names a directory on the node itself (compute goes to the data); a
    node mounts it only under its allow-listed roots. The job CID then names the path,
    not the bytes, so nodes holding different data disagree rather than verify.
    """

    cid: str | None = None
    path: str = DEFAULT_INPUT_PATH
    local: str | None = None

    def to_dict(self) -> dict[str, str]:
        if self.local is not None:
            return {"local": self.local, "path": self.path}
        return {"cid": self.cid or "", "path": self.path}


@dataclass(frozen=True)
class JobSpec:
    module: str = ""
    args: tuple[str, ...] = ("main.wasm",)
    env: tuple[tuple[str, str], ...] = ()
    inputs: tuple[Input, ...] = ()
    outputs: str = DEFAULT_OUTPUT_PATH
    output_base: str | None = None  # a UnixFS directory CID the writable mount starts as
    entry_point: str = DEFAULT_ENTRY_POINT
    engine: str = ENGINE_WASM
    seed: bytes | None = None
    epoch_ns: int = DEFAULT_EPOCH_NS
    tick_ns: int = DEFAULT_TICK_NS
    limits: Limits = field(default_factory=Limits)
    image: str = ""  # docker jobs only: the image to run (never verifiable)

    # -- encoding -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spec_version": SPEC_VERSION,
            "engine": self.engine,
            "module": self.module,
            "entry_point": self.entry_point,
            "args": list(self.args),
            "env": dict(self.env),
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": self.outputs,
            "clock": {"epoch_ns": self.epoch_ns, "tick_ns": self.tick_ns},
            "limits": {
                "fuel": self.limits.fuel,
                "memory_bytes": self.limits.memory_bytes,
                "stdout_bytes": self.limits.stdout_bytes,
                "stderr_bytes": self.limits.stderr_bytes,
                "output_bytes": self.limits.output_bytes,
                "timeout_ms": self.limits.timeout_ms,
                "table_elements": self.limits.table_elements,
            },
        }
        if self.seed is not None:
            out["seed"] = self.seed.hex()
        if self.output_base is not None:  # absent when unset, so earlier job CIDs stand
            out["output_base"] = self.output_base
        if self.engine == ENGINE_DOCKER:
            out["image"] = self.image
            del out["module"]
        return out

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def cid(self) -> CID:
        return CID.of(JSON, self.canonical_bytes())

    @property
    def effective_seed(self) -> bytes:
        """The seed, or when none is set, SHA-256 of a prefix and the canonical bytes."""
        if self.seed is not None:
            return self.seed
        return hashlib.sha256(SEED_DERIVATION_PREFIX + self.canonical_bytes()).digest()

    def with_seed(self, seed: bytes | None) -> "JobSpec":
        return replace(self, seed=seed)

    # -- decoding -----------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str | bytes) -> "JobSpec":
        """Parse a spec document (see :func:`load_json`); raises SpecError."""
        return cls.from_dict(load_json(text))

    @classmethod
    def from_dict(cls, data: Any) -> "JobSpec":
        _expect(data, dict, "(document)")
        known = {
            "spec_version", "engine", "module", "entry_point", "args", "env", "inputs",
            "outputs", "clock", "limits", "seed", "image", "output_base",
        }
        _no_unknown(data, known, "")
        version = data.get("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError("spec_version", f"{version!r} is not supported; cod speaks {SPEC_VERSION}")
        if "module" not in data and data.get("engine", ENGINE_WASM) == ENGINE_WASM:
            raise SpecError("module", "missing", "give the module's CID")
        clock = data.get("clock", {})
        _expect(clock, dict, "clock")
        _no_unknown(clock, {"epoch_ns", "tick_ns"}, "clock.")
        limits = data.get("limits", {})
        _expect(limits, dict, "limits")
        names = list(Limits.__dataclass_fields__)
        _no_unknown(limits, set(names), "limits.")
        defaults = Limits()
        seed = data.get("seed")
        if seed is not None:
            seed = _seed(seed)
        inputs = data.get("inputs", [])
        _expect(inputs, list, "inputs")
        _count_inputs(len(inputs))  # before any is read
        parsed_inputs = []
        for n, item in enumerate(inputs):
            _expect(item, dict, f"inputs[{n}]")
            _no_unknown(item, {"cid", "path", "local"}, f"inputs[{n}].")
            if ("cid" in item) == ("local" in item):
                raise SpecError(f"inputs[{n}]", "needs exactly one of 'cid' and 'local'")
            parsed_inputs.append(
                Input(cid=item.get("cid"), path=item.get("path", DEFAULT_INPUT_PATH), local=item.get("local"))
            )
        env = data.get("env", {})
        _expect(env, dict, "env")
        for key in env:
            _text(key, f"env.{_shown(str(key))}")  # before sorting: names must be strings
        args = data.get("args", ["main.wasm"])
        _expect(args, list, "args")
        spec = cls(
            module=data.get("module", ""),
            image=data.get("image", ""),
            args=tuple(args),
            env=tuple(sorted(env.items())),
            inputs=tuple(parsed_inputs),
            outputs=data.get("outputs", DEFAULT_OUTPUT_PATH),
            output_base=data.get("output_base"),
            entry_point=data.get("entry_point", DEFAULT_ENTRY_POINT),
            engine=data.get("engine", ENGINE_WASM),
            seed=seed,
            epoch_ns=clock.get("epoch_ns", DEFAULT_EPOCH_NS),
            tick_ns=clock.get("tick_ns", DEFAULT_TICK_NS),
            limits=Limits(**{k: limits.get(k, getattr(defaults, k)) for k in names}),
        )
        spec.validate()
        return spec

    def validate(self) -> "JobSpec":
        """Check every field; raises SpecError naming the first bad one."""
        if self.engine not in (ENGINE_WASM, ENGINE_DOCKER):
            raise SpecError("engine", f"{self.engine!r} is not one of 'wasm', 'docker'")
        if self.engine == ENGINE_WASM:
            _cid_field(self.module, "module")
            if self.image:
                raise SpecError("image", "only docker jobs name an image")
        else:
            _text(self.image, "image")
            if not self.image or self.module:
                raise SpecError("image", "a docker job names an image and no module")
        _text(self.entry_point, "entry_point")
        if not self.entry_point:
            raise SpecError("entry_point", "empty")
        if not self.args:
            raise SpecError("args", "empty; args[0] is the program name")
        for n, arg in enumerate(self.args):
            _text(arg, f"args[{n}]")
        for key, value in self.env:
            _text(key, f"env.{_shown(str(key))}")
            _text(value, f"env.{_shown(key)}")
            if not key or "=" in key:
                raise SpecError(f"env.{key}", "a variable name must be non-empty and hold no '='")
        for name in ("epoch_ns", "tick_ns"):
            _int(getattr(self, name), f"clock.{name}", minimum=0 if name == "epoch_ns" else 1)
        for name in Limits.__dataclass_fields__:
            _int(getattr(self.limits, name), f"limits.{name}", minimum=1, maximum=MAX_LIMITS.get(name, MAX_INT))
        if self.seed is not None and len(self.seed) != SEED_BYTES:
            raise SpecError("seed", f"must be {SEED_BYTES} bytes (64 hex digits)")
        _count_inputs(len(self.inputs))
        mounts: list[tuple[str, str]] = []
        for n, item in enumerate(self.inputs):
            if (item.cid is None) == (item.local is None):
                raise SpecError(f"inputs[{n}]", "needs exactly one of 'cid' and 'local'")
            if item.cid is not None:
                _cid_field(item.cid, f"inputs[{n}].cid")
            else:
                _mount_path(item.local, f"inputs[{n}].local")
            mounts.append((_mount_path(item.path, f"inputs[{n}].path"), f"inputs[{n}].path"))
        mounts.append((_mount_path(self.outputs, "outputs", root_allowed=self.engine == ENGINE_WASM), "outputs"))
        if self.output_base is not None:
            if self.engine != ENGINE_WASM:
                raise SpecError("output_base", "only wasm jobs start from an output base")
            _cid_field(self.output_base, "output_base")
        for i, (a, fa) in enumerate(mounts):
            for b, fb in mounts[i + 1 :]:
                if _nested(a, b):
                    raise SpecError(fb, f"{b!r} overlaps {a!r} ({fa}); mounts must not nest")
        return self


def _count_inputs(count: int) -> None:
    if count > MAX_INPUTS:
        raise SpecError("inputs", f"{count} inputs; at most {MAX_INPUTS} (cod.limits.MAX_INPUTS, SPEC 2)",
                        "mount a directory that holds them as one input, or split the job")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# One token at a time: a whole string (possessive, so no backtracking), a bracket, or a
# quote that opens a string never closed (json refuses the document there: stop counting).
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]|"', re.DOTALL)


def load_json(text: str | bytes) -> Any:
    """Parse a JSON document the way every spec must be read: strictly.

    Refuses, with a SpecError: bytes that are not UTF-8, nesting deeper than
    MAX_JSON_DEPTH (counted before parsing), a key that appears twice in one object, any
    number that is not an integer (NaN and Infinity too), and anything else that is not JSON. Strings are checked
    later, field by field (lone surrogates are refused there, naming the field).
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError("(document)", f"not UTF-8 text (byte {exc.start})") from exc
    _check_depth(text)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float,
                          parse_constant=_no_float)
    except SpecError:
        raise
    except RecursionError as exc:  # unreachable after _check_depth; kept so no traceback escapes
        raise SpecError("(document)", "nested too deeply") from exc
    except ValueError as exc:
        raise SpecError("(document)", f"not valid JSON: {exc}") from exc


def _check_depth(text: str) -> None:
    """Refuse documents nested deeper than MAX_JSON_DEPTH, without recursing.

    Strings are skipped whole (a bracket inside a string is not structure); scanning stops
    at a string that never closes, where json.loads stops too. Linear in the text.
    """
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            return
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SpecError("(document)", f"nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects",
                                "a job spec is at most 3 levels deep")
        elif token in ("]", "}"):
            depth -= 1


def _shown(name: str) -> str:
    """A key as it may be printed: characters UTF-8 cannot carry become backslash escapes."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SpecError(_shown(key), "appears twice", "give each field once")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise SpecError("(document)", f"number {text} is not an integer; cod specs hold integers only")


def _no_unknown(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise SpecError(prefix + _shown(str(key)), "a field name must be a string")
    for key in sorted(data):
        if key not in known:
            raise SpecError(prefix + _shown(key), "unknown field", f"known fields: {', '.join(sorted(known))}")


def _expect(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise SpecError(name, f"must be a JSON {'object' if kind is dict else 'array'}")


def _text(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise SpecError(name, "must be a string")
    if "\x00" in value:
        raise SpecError(name, "holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(name, f"is not Unicode text: a lone surrogate U+{ord(value[exc.start]):04X} "
                        f"at character {exc.start}", "strings must be valid Unicode (encodable as UTF-8)") from exc


def _int(value: Any, name: str, minimum: int, maximum: int = MAX_INT) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, not {_shown(repr(value))[:80]}")
    if not minimum <= value <= maximum:
        raise SpecError(name, f"{value} is out of range [{minimum}, {maximum}]")


def _cid_field(value: Any, name: str) -> None:
    """A CID in its canonical CIDv1 text (SPEC 2): one CID, one spelling, one job CID."""
    _text(value, name)
    try:
        canonical = str(CID.parse(value))
    except CIDError as exc:
        raise SpecError(name, exc.message) from exc
    if canonical != value:
        raise SpecError(name, f"{value} is not in canonical CIDv1 text", f"write it as {canonical}")


def _seed(value: Any) -> bytes:
    if not isinstance(value, str):
        raise SpecError("seed", "must be a string of 64 hex digits")
    try:
        seed = bytes.fromhex(value)
    except ValueError as exc:
        raise SpecError("seed", "must be hex digits") from exc
    if len(seed) != SEED_BYTES:
        raise SpecError("seed", f"must be {SEED_BYTES} bytes (64 hex digits)")
    return seed


def _nested(a: str, b: str) -> bool:
    """Whether mount paths ``a`` and ``b`` are equal or one holds the other (``/`` holds all)."""
    return a == b or a == ROOT_PATH or b == ROOT_PATH or a.startswith(b + "/") or b.startswith(a + "/")


def _mount_path(value: Any, name: str, root_allowed: bool = False) -> str:
    """Check a mount path: absolute and normalized; ``/`` itself only where ``root_allowed``."""
    _text(value, name)
    if root_allowed and value == ROOT_PATH:
        return ROOT_PATH
    if not value.startswith("/") or value == "/":
        raise SpecError(name, f"{value!r} must be an absolute path below '/'")
    if posixpath.normpath(value) != value or "//" in value:
        raise SpecError(name, f"{value!r} is not normalized (no '.', '..', '//' or trailing '/')")
    return str(value)


def parse_seed(text: str) -> bytes:
    """A user's --seed: 64 hex digits, or any other text hashed with SHA-256."""
    try:
        seed = bytes.fromhex(text)
        if len(seed) == SEED_BYTES:
            return seed
    except ValueError:
        pass
    return hashlib.sha256(text.encode()).digest()

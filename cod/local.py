"""Preparing jobs: a module file (or a docker image), host directories and options become a
validated spec with the bytes and directories it names; and running one locally.

Every input directory is hashed into its UnixFS CID, so the job CID names the data as well
as the code. ``cod run`` runs the result here; ``cod run --verify N`` sends it to N nodes.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .content.car import write_car
from .content.cid import CID
from .content.unixfs import Importer, module_cid
from .errors import CIDError, InputError, MissingModules, ModuleError, SpecError
from .jobspec import DEFAULT_INPUT_PATH, DEFAULT_OUTPUT_PATH, ENGINE_WASM, MAX_INT, Input, JobSpec, Limits, parse_seed
from .wasm import binary, linking

if TYPE_CHECKING:  # the engine (wasmtime) is loaded when a job runs here, not to prepare one
    from .wasm.engine import Engine
    from .wasm.executor import RunResult

# ASCII digits only (int() also takes other scripts' digits); at most _MAX_DIGITS of them, so
# no text reaches int()'s 4300-digit limit and every overflow is reported as out of range
_SIZE = re.compile(r"^[ ]*([0-9]+)[ ]*([kmgt]?i?b?)[ ]*$", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
          "ti": 1024**4, "tib": 1024**4}
_DURATION = re.compile(r"^[ ]*([0-9]+)[ ]*(ms|s|m|h)?[ ]*$", re.ASCII)
_DURATION_SCALE = {None: 1000, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_MAX_DIGITS = 30
_RANGE_HINT = f"a limit is at least 1 and at most {MAX_INT}"
IPFS_SCHEME = "ipfs://"
DEFAULT_ARGV0 = "main.wasm"  # argv[0] of every module, named by path or by CID (SPEC 2, `args`)


@dataclass(frozen=True)
class PreparedJob:
    """A spec with the local bytes and directories it names. ``modules`` holds the bytes of
    the modules ``wasm`` imports by CID, directly or not (SPEC 5.4), by CIDv1 text;
    ``missing_modules`` the CIDs of those this requester lacks (a job for nodes that hold
    them). An empty ``wasm`` is a module run by CID that only nodes hold."""

    spec: JobSpec
    wasm: bytes
    sources: dict[str, str] = field(default_factory=dict)
    modules: dict[str, bytes] = field(default_factory=dict)
    missing_modules: tuple[str, ...] = ()


def parse_size(text: str, name: str) -> int:
    """``123``, ``64KiB``, ``256M``, ``1GiB``: a byte count in [1, 2**63-1].

    Raises SpecError naming ``name`` for anything else (other units, fractions, overflow).
    """
    match = _SIZE.match(text)
    if not match or match.group(2).lower() not in _UNITS:
        raise SpecError(name, f"{text!r} is not a size", "write bytes, e.g. 268435456, 256MiB or 1GB")
    return _in_range(match.group(1), _UNITS[match.group(2).lower()], text, name)


def parse_duration_ms(text: str, name: str) -> int:
    """``30`` (seconds), ``500ms``, ``30s``, ``5m``, ``1h``: milliseconds in [1, 2**63-1].

    Raises SpecError naming ``name`` for anything else.
    """
    match = _DURATION.match(text)
    if not match:
        raise SpecError(name, f"{text!r} is not a duration", "write e.g. 30s, 500ms or 5m")
    return _in_range(match.group(1), _DURATION_SCALE[match.group(2)], text, name)


def _in_range(digits: str, scale: int, text: str, name: str) -> int:
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise SpecError(name, f"{text[:24]!r}... is out of range", _RANGE_HINT)
    value = int(digits) * scale
    if not 1 <= value <= MAX_INT:
        raise SpecError(name, f"{text!r} is out of range ({value})", _RANGE_HINT)
    return value


def parse_mount(text: str) -> tuple[str, str]:
    """``SRC[:DST]``: a host path or a CID (``ipfs://CID`` too) and where the job sees it
    (default /inputs, for a local file /inputs/NAME; the CID's kind decides later).

    SRC is a host path (any bytes) or a CID, returned as given (``ipfs://`` kept); DST goes
    into the spec, so it must be UTF-8 and absolute (SpecError; the spec checks the rest).
    An empty SRC is an InputError.
    """
    scheme = IPFS_SCHEME if text.startswith(IPFS_SCHEME) else ""
    src, sep, dst = text[len(scheme):].partition(":")
    src = scheme + src if src else ""
    if not src:
        raise InputError(f"-i {text!r}: no source directory", "write -i SRC or -i SRC:/path")
    if not sep:
        return src, DEFAULT_INPUT_PATH
    if not _utf8(dst):
        raise SpecError("inputs.path", f"-i {text!r}: the mount path is not UTF-8 text",
                        "job specs are UTF-8 JSON; name the mount path in UTF-8")
    if not dst.startswith("/"):
        raise SpecError("inputs.path", f"-i {text!r}: the mount path {dst!r} is not absolute",
                        "write -i SRC:/path, e.g. -i data:/inputs")
    return src, dst


def parse_env(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` for the job's environment; raises SpecError when there is no ``=``, the key
    is empty, or either side is not UTF-8 text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SpecError(f"env.{key}" if key else "env", f"-e {text!r} is not KEY=VALUE",
                        "write -e NAME=VALUE (the name non-empty)")
    if not _utf8(text):
        raise SpecError(f"env.{key}", f"-e {text!r} is not UTF-8 text",
                        "job specs are UTF-8 JSON; pass the variable in UTF-8")
    return key, value


def _utf8(text: str) -> bool:
    """False for text made of non-UTF-8 bytes (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prepare(
    module_path: str | os.PathLike[str],
    args: list[str],
    *,
    inputs: Sequence[str] = (),
    env: Sequence[str] = (),
    seed: str | None = None,
    entry_point: str | None = None,
    limits: Limits | None = None,
    argv0: str | None = None,
    outputs: str | None = None,
    output_base: str | None = None,
    resolve: Callable[[str], Path | None] | None = None,
    remote: bool = False,
) -> PreparedJob:
    """Read the module, hash each input (and the output base) and build the spec.

    ``outputs`` is the writable mount's path (default /outputs); ``output_base`` a host
    directory the writable mount starts as a copy of; ``resolve`` finds content named by
    CID (``cod.content.store.ContentStore.get``): inputs, a module run by CID and the modules it
    imports by CID (SPEC 5.4). ``remote`` prepares a job for nodes: content by CID this
    requester lacks is left to the nodes that hold it (a module run by CID then has no
    bytes here); otherwise a module or an imported module not found is an error. Raises
    SpecError, InputError, ModuleError (MissingModules).
    """
    path = Path(module_path)
    try:
        named = input_cid(os.fspath(module_path))
    except InputError as exc:  # its message speaks of -i: this is the module
        raise InputError(f"module {os.fspath(module_path)!r} is not a CID: {exc.message.split(': ', 1)[-1]}",
                         "run a module file, or cod run ipfs://CID with a CIDv1 or a CIDv0") from exc
    if named is not None:  # `cod run CID`: the module from the local content store
        found = resolve(named) if resolve is not None else None
        if found is not None and found.is_file():
            path = found
        elif not remote:
            raise InputError(f"module {named} is not in the local content store",
                             "add it first (cod add FILE), or run the file itself")
    if named is not None and path == Path(module_path):  # a module only nodes hold (a private module)
        wasm = b""
    else:
        try:
            wasm = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read module {str(path)!r}: {exc.strerror}") from exc
        if not wasm:  # b"" below means "a module only nodes hold": an empty file is no module
            binary.check_binary(wasm)
        if named is not None and module_cid(wasm) != named:  # the store's bytes changed under their name
            raise InputError(f"module {named} in the local content store no longer hashes to its CID",
                             "remove it from the store and add the module again (cod add FILE)")
    missing: list[str] = []
    modules = dependencies(wasm, _module_bytes(resolve), missing=missing if remote else None) if wasm else {}
    mounts, sources = _hash_inputs(inputs, resolve)
    variables = dict(parse_env(e) for e in env)
    out_path = outputs or DEFAULT_OUTPUT_PATH
    base = None
    if output_base is not None:
        base, sources[out_path] = _hash_base(output_base, out_path)
    spec = JobSpec(
        outputs=out_path,
        output_base=base,
        module=module_cid(wasm) if wasm else str(named),
        args=(argv0 or DEFAULT_ARGV0, *args),  # never the file's name: one module, one job CID
        env=tuple(sorted(variables.items())),
        inputs=tuple(sorted(mounts, key=lambda m: m.path.encode())),
        seed=parse_seed(seed) if seed is not None else None,
        limits=limits or Limits(),
    )
    if entry_point:
        spec = replace(spec, entry_point=entry_point)
    spec.validate()
    return PreparedJob(spec, wasm, sources, modules, tuple(missing))


def dependencies(wasm: bytes, resolve: Callable[[str], bytes | None] | None, missing: list[str] | None = None
                 ) -> dict[str, bytes]:
    """The bytes of every module ``wasm`` imports by CID, directly or not, by CIDv1 text.

    Bytes that are no core module, or whose import section cannot be read, have none here:
    running them reports what is wrong. Raises ModuleError (MissingModules) otherwise; given
    a ``missing`` list, modules that cannot be resolved are added to it instead (the nodes
    that hold them resolve them) and the rest are returned.
    """
    try:
        binary.imports(wasm)
    except ModuleError:
        return {}
    try:
        return linking.closure(wasm, resolve).modules
    except MissingModules as exc:
        if missing is None:
            raise
        missing.extend(exc.missing)
        return exc.found


def _module_bytes(resolve: Callable[[str], Path | None] | None) -> Callable[[str], bytes | None] | None:
    """``resolve`` (content by CID as a path) giving a module's bytes: a regular file it finds
    (an unreadable one counts as missing). The bytes are checked against the CID by
    linking.closure before they are used."""
    if resolve is None:
        return None
    find = resolve

    def read(cid: str) -> bytes | None:
        found = find(cid)
        if found is None or not found.is_file():
            return None
        try:
            return found.read_bytes()
        except OSError:
            return None

    return read


def check_prepared(job: PreparedJob, engine: Engine) -> None:
    """Check a wasm job's module here as a local run would before it runs (ModuleError, exit 4,
    in the same words): for a job bound for nodes, before any node is asked. A module only
    nodes hold (no bytes here) is theirs to check; so are imports by CID this requester lacks."""
    if job.spec.engine != ENGINE_WASM or not job.wasm:
        return
    from .wasm.executor import check_module

    check_module(job.spec, job.wasm, engine, job.modules, link=not job.missing_modules)


def run_prepared(
    job: PreparedJob, output_dir: str | os.PathLike[str] | None, engine: Engine, car: str | None = None
) -> RunResult:
    """Run a prepared job; write a CARv1 of the results too when ``car`` names a file."""
    destination = Path(output_dir) if output_dir is not None else Path("cod-results") / str(job.spec.cid)
    from .wasm.executor import run

    result = run(job.spec, job.wasm, job.sources, destination, engine, modules=job.modules)
    if car is not None:
        root = write_car(result.results_dir, car)
        assert str(root) == result.result_cid
    return result


def prepare_docker(image: str, cmd: list[str], *, inputs: Sequence[str] = (), env: Sequence[str] = (),
                   limits: Limits | None = None, resolve: Callable[[str], Path | None] | None = None) -> PreparedJob:
    """A docker job: IMAGE and its command; inputs hashed as for WASM jobs. Never verifiable."""
    from .jobspec import ENGINE_DOCKER

    mounts, sources = _hash_inputs(inputs, resolve)
    spec = JobSpec(engine=ENGINE_DOCKER, image=image, args=(image, *cmd),
                   env=tuple(sorted(dict(parse_env(e) for e in env).items())),
                   inputs=tuple(sorted(mounts, key=lambda m: m.path.encode())), limits=limits or Limits())
    spec.validate()
    return PreparedJob(spec, b"", sources)


def _hash_base(src: str, mount: str) -> tuple[str, str]:
    """Hash ``--output-base SRC`` as an input (the same ingest rules, SPEC 3.1; its symlinks are
    UnixFS symlinks, copied as links into the output mount): (its CID, the directory to copy).
    Raises InputError."""
    real = _real_dir(src, "output base", "--output-base")
    return str(Importer().tree(real, mount=mount).cid), real


def _real_dir(src: str, what: str, option: str) -> str:
    """SRC resolved once, here (the LINK rule of SPEC 3.1); InputError unless a directory."""
    real = os.path.realpath(src)
    if not os.path.isdir(real):
        state = "is not a directory" if os.path.exists(real) else "does not exist"
        name = f"{src!r} (a link to {real!r})" if os.path.islink(src) else repr(src)
        raise InputError(f"{what} {name} {state}", f"give a directory: {option} DIR")
    return real


def input_cid(src: str) -> str | None:
    """The CID ``-i SRC`` names (canonical CIDv1 text), or None when SRC is a host path.

    ``ipfs://CID`` is always a CID (InputError if it is not one); a bare SRC is a CID when it
    parses as one and no host path of that name exists (a path that does wins, so a file
    named like a CID is still a file; write ``ipfs://`` to mean the CID).
    """
    if src.startswith(IPFS_SCHEME):
        text = src[len(IPFS_SCHEME):].rstrip("/")
        try:
            return str(CID.parse(text))
        except CIDError as exc:
            raise InputError(f"-i {src!r}: {exc.message}", "write -i ipfs://CID[:DST] with a CIDv1 or a CIDv0") \
                from exc
    if os.path.lexists(src):
        return None
    try:
        return str(CID.parse(src))
    except CIDError:
        return None


def _hash_inputs(inputs: Sequence[str], resolve: Callable[[str], Path | None] | None = None
                 ) -> tuple[list[Input], dict[str, str]]:
    """Hash each ``-i SRC[:DST]`` into an Input and map DST to the file or directory to mount.

    A host SRC is resolved here, once, on the requester (SPEC section 3, the LINK rule): a
    symlink names its target, whose bytes are hashed and whose real path is mounted, so the
    CID always names what the job sees. A local file is mounted as a file (default DST
    /inputs/NAME). A CID SRC is looked up with ``resolve`` (the local content store); one it
    does not find has no source here (nodes that hold it can still run the job). Raises
    InputError.
    """
    mounts: list[Input] = []
    sources: dict[str, str] = {}
    for text in inputs:
        src, dst = parse_mount(text)
        named = input_cid(src)
        if named is not None:
            mounts.append(Input(cid=named, path=dst))
            found = resolve(named) if resolve is not None else None
            if found is not None:
                held = Importer().tree(found, mount=dst if found.is_dir() else None).cid
                if str(held) != named:  # the store's bytes changed under their name: never mount them as it
                    raise InputError(f"-i {text!r}: {named} in the local content store no longer hashes to its "
                                     f"CID (it hashes to {held})", "remove it from the store and add it again")
                sources[dst] = str(found)
            continue
        real = os.path.realpath(src)
        if os.path.isfile(real):
            if ":" not in text:
                dst = posixpath.join(DEFAULT_INPUT_PATH, os.path.basename(real))
                if not _utf8(dst):
                    raise SpecError("inputs.path", f"-i {text!r}: the file name is not UTF-8 text",
                                    "name the mount path in UTF-8: -i FILE:/path/name")
            mounts.append(Input(cid=str(Importer().tree(real).cid), path=dst))
            sources[dst] = real
            continue
        if not os.path.isdir(real):
            state = "is not a directory or a regular file" if os.path.exists(real) else "does not exist"
            name = f"{src!r} (a link to {real!r})" if os.path.islink(src) else repr(src)
            raise InputError(f"input {name} {state}", "mount a directory, a file or a CID: -i SRC[:/path]")
        mounts.append(Input(cid=str(Importer().tree(real, mount=dst).cid), path=dst))
        sources[dst] = real
    return mounts, sources

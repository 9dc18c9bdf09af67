"""Downloading agreed results: from the first agreeing node that delivers them, checked
against the agreed result CID before they are put in place.

A node that signed the agreed CID may still send anything: junk, an endless or dripping
stream, a CAR of another root, a tampered or incomplete one. So a download is bounded in
bytes (the declared Content-Length, and ``results_car_bound`` of the job's caps and of its
output base, ``BaseSize``, at most MAX_RESULTS_CAR_BYTES) and in time (``timeout_s`` in all, STALL_TIMEOUT_S without a byte);
whatever fails is recorded against that node and the next agreeing node is asked.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cod.content.cid import CID
from cod.content.export import export, read_complete_car, unpack_car
from cod.errors import CIDError, CodError, NodeError, NotFound
from cod.jobspec import Limits
from cod.resultsdir import check_destination, check_layout, install
from cod.wasm.vfs import MAX_OUTPUT_ENTRIES

from . import schema
from .client import CAR_TYPE, read_capped

SMALL_RESULTS = 8 << 20  # results CARs up to this size are checked in memory
MAX_RESULTS_CAR_BYTES = 16 << 30
"""Largest results CAR a requester downloads, whatever the job's caps allow."""
CHUNK_BYTES = 1 << 20  # the UnixFS chunk size (section 7.2)
CAR_HEADER_MAX = 64  # varint + {"roots": [one CIDv1 sha2-256], "version": 1}: 58 bytes
SMALL_FILES_MAX = 128  # exitCode (at most 10 digits) and trap (a trap name and "\n")
PER_CHUNK_OVERHEAD = 128  # a chunk's CAR framing (<= 40) + its link in the file node (<= 54) + blocksize (<= 4)
PER_ENTRY_OVERHEAD = 1024  # an entry's framing (<= 40), its link (name <= 255, <= 310 in all), its first
# chunk (<= 128), a HAMT shard per entry at worst (<= 150): 628, rounded up
RESULTS_TOP_ENTRIES = 6  # the root, stdout, stderr, exitCode, trap, outputs
DOWNLOAD_TIMEOUT_S = 600.0
STALL_TIMEOUT_S = 30.0
RATE_GRACE_S = 2.0
MIN_RATE_BYTES_S = 64 << 10  # 512 kbit/s: below any link a node serves results on


@dataclass(frozen=True)
class BaseSize:
    """What a job's output base (SPEC 2.4) puts in its results beyond what the caps count:
    the bytes of its regular files and its entries (files and directories below its root).
    A base file's size is outside ``output_bytes`` and a base entry outside the creations cap,
    so the download bound adds both (SPEC 11 step 5)."""

    bytes: int
    entries: int

    @classmethod
    def of_tree(cls, root: str | os.PathLike[str]) -> "BaseSize":
        """Measure the base directory this requester uploads, without following links: a
        symlink's bytes are its target's (SPEC 4.5), wherever os.walk lists it."""
        size = entries = 0
        for parent, dirs, files in os.walk(root):
            entries += len(dirs) + len(files)
            for name in dirs + files:
                info = os.lstat(os.path.join(parent, name))
                if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
                    size += info.st_size
        return cls(size, entries)

    def to_json(self) -> dict[str, int]:
        return {"bytes": self.bytes, "entries": self.entries}

    @classmethod
    def from_json(cls, value: Any) -> "BaseSize | None":
        """A recorded measure (``runs.extra["output_base"]``); None unless two counts >= 0."""
        if not isinstance(value, dict):
            return None
        size, entries = value.get("bytes"), value.get("entries")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, entries)):
            return None
        return cls(int(size), int(entries))  # type: ignore[arg-type]


def results_car_bound(limits: Limits | None, base: BaseSize | None = None) -> int:
    """Most bytes an honest results CAR of a job with these caps (and this output base) can
    have (SPEC 11.5).

    Without caps (docker jobs: the engine does not enforce them) it is MAX_RESULTS_CAR_BYTES.
    A job with an output base this requester cannot measure is bounded by that cap alone:
    give ``limits`` None for it (``bound_of``).
    """
    if limits is None:
        return MAX_RESULTS_CAR_BYTES
    base = base or BaseSize(0, 0)
    data = limits.stdout_bytes + limits.stderr_bytes + limits.output_bytes + base.bytes
    chunks = -(-data // CHUNK_BYTES)
    entries = MAX_OUTPUT_ENTRIES + RESULTS_TOP_ENTRIES + base.entries
    bound = CAR_HEADER_MAX + data + SMALL_FILES_MAX + PER_CHUNK_OVERHEAD * chunks + PER_ENTRY_OVERHEAD * entries
    return min(bound, MAX_RESULTS_CAR_BYTES)


@dataclass
class Download:
    """Where the checked results went, and what each node that failed to deliver did wrong."""

    path: Path | None
    failures: dict[str, str] = field(default_factory=dict)


class DownloadFailed(NodeError):
    def __init__(self, failures: dict[str, str]) -> None:
        reasons = "; ".join(f"{url}: {why}" for url, why in failures.items()) or "no agreeing node to ask"
        super().__init__(f"no node that agreed could deliver the results: {reasons}")
        self.failures = failures


OnBytes = Callable[[int, "int | None"], None]
"""Told the bytes received (or sent) so far and the total when known: for progress bars only."""


async def _receive(session: aiohttp.ClientSession, url: str, job_cid: str, dest: Path, in_memory: int,
                   bound: int, timeout_s: float, on_bytes: OnBytes | None = None) -> bytes | None:
    """The results CAR of one node: in memory when its declared length is at most ``in_memory``,
    else streamed to ``dest`` (None returned). NodeError past ``bound`` bytes or the timeouts."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=min(timeout_s, STALL_TIMEOUT_S))
    try:
        async with session.get(f"{url}/v1/jobs/{job_cid}/results.car", timeout=timeout) as resp:
            if resp.status != 200:
                data = await read_capped(resp, schema.MAX_JSON_BYTES, url, "an error")
                error = schema.error_body(url, schema.parse_json(url, "results", data) if data else None)
                raise NodeError(f"HTTP {resp.status} {error['message'] or error['error']}".rstrip())
            if resp.content_type != CAR_TYPE:
                raise NodeError(f"sent {schema.clean(resp.content_type, 60)!r}, not a CAR")
            declared = resp.content_length
            if declared is not None and declared > bound:
                raise NodeError(f"declared {declared} bytes, over the {bound} this job's results can have")
            pace = _Pace(asyncio.get_running_loop().time())
            if declared is not None and declared <= in_memory:
                parts: list[bytes] = []
                while chunk := await pace.next(resp, declared):
                    parts.append(chunk)
                    if on_bytes is not None:
                        on_bytes(pace.size, declared)
                return b"".join(parts)
            with open(dest, "wb") as out:
                while chunk := await pace.next(resp, bound):
                    out.write(chunk)
                    if on_bytes is not None:
                        on_bytes(pace.size, declared)
            return None
    except asyncio.TimeoutError:
        raise NodeError(f"did not finish sending the results within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise NodeError(f"failed to send the results: {type(exc).__name__} {schema.clean(str(exc), 200)}") from None


class _Pace:
    """Bytes received from one node, against the byte bound and a minimum rate.

    After RATE_GRACE_S, a node must have sent MIN_RATE_BYTES_S per second since: one that
    drips its CAR would otherwise hold the whole download budget, which every agreeing node
    shares, and no honest node could be asked in time.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.size = 0

    async def next(self, resp: aiohttp.ClientResponse, bound: int) -> bytes:
        """The next chunk of the body (b"" at its end); NodeError past ``bound`` bytes or when
        the node falls below the minimum rate (waiting no longer than the rate allows)."""
        loop = asyncio.get_running_loop()
        due = self.started + RATE_GRACE_S + self.size / MIN_RATE_BYTES_S  # when the rate would fail
        try:
            chunk = await asyncio.wait_for(resp.content.readany(), max(0.0, due - loop.time()))
        except asyncio.TimeoutError:
            elapsed = loop.time() - self.started
            raise NodeError(f"sent {self.size} bytes in {elapsed:.1f} s, slower than {MIN_RATE_BYTES_S} "
                            "bytes/s") from None
        self.size += len(chunk)
        if self.size > bound:
            raise NodeError(f"sent more than the {bound} bytes this job's results can have")
        return chunk


def _check(small: bytes | None, tmp_car: Path, root: CID, staging: Path | None, scratch: Path) -> None:
    """Check a received CAR against ``root`` (and unpack it to ``staging`` when given).

    Raises CIDError (or InputError) for anything that is not exactly the content of ``root``.
    """
    tree = staging or scratch / "checked"
    try:
        if small is not None:  # in memory: blocks checked, DAG complete, then written out
            blocks = read_complete_car(io.BytesIO(small), root)
            export(blocks.__getitem__, root, tree)
        else:
            with open(tmp_car, "rb") as source:
                unpack_car(source, root, tree, scratch / "unpack")
    except (ValueError, IndexError, KeyError) as exc:  # the CAR parser meets malformed bytes
        raise CIDError(f"malformed CAR: {type(exc).__name__} {exc}") from None
    check_layout(tree)  # links where the executor writes files: refused, whatever the signers agreed


def _replace_with(source: Path, dest: Path) -> None:
    """Put a copy of ``source`` at ``dest`` by an atomic rename: a symlink at ``dest`` (put there
    after the CLI checked it) is replaced, never written through; mode 0600, as write_car gives."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".car-")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out, 1 << 20)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


async def download_agreed(session: aiohttp.ClientSession, urls: list[str], job_cid: str, agreed: str,
                          output_dir: Path | None, car: Path | None, scratch: Path, *,
                          limits: Limits | None = None, base: BaseSize | None = None,
                          timeout_s: float = DOWNLOAD_TIMEOUT_S, on_bytes: OnBytes | None = None) -> Download:
    """Fetch the results CAR from the first of ``urls`` that delivers one hashing to ``agreed``.

    With neither ``output_dir`` nor ``car``, the results are only checked (in ``scratch``).
    ``timeout_s`` bounds the whole download, all nodes together. Raises DownloadFailed (with
    each node's failure) when none delivers.
    """
    failures: dict[str, str] = {}
    root = CID.parse(agreed)
    bound = results_car_bound(limits, base)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s  # one budget for every node tried, not one each
    for url in urls:
        remaining = end - loop.time()
        if remaining <= 0:
            failures[url] = f"not tried: the {timeout_s:g} s for downloading the results had run out"
            continue
        tmp_car = scratch / "results.car"
        staging = scratch / "results"
        for leftover in (staging, scratch / "checked"):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            small = await _receive(session, url.rstrip("/"), job_cid, tmp_car, 0 if car is not None else SMALL_RESULTS,
                                   bound, remaining, on_bytes)
            await asyncio.to_thread(_check, small, tmp_car, root, staging if output_dir is not None else None, scratch)
        except CodError as exc:
            failures[url] = schema.clean(exc.message)
            continue
        if car is not None:
            _replace_with(tmp_car, car)
            return Download(car, failures)
        if output_dir is None:
            return Download(None, failures)  # checked; the caller keeps nothing
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        local = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=".cod-staging-"))
        local.rmdir()
        shutil.move(str(staging), local)
        install(local, output_dir)
        return Download(output_dir, failures)
    raise DownloadFailed(failures)


def _signers(row: dict[str, Any]) -> list[str]:
    agreed = row["result_cid"]
    return [a["node_id"] for a in row["answers"] if a.get("result_cid") == agreed and a.get("node_id")]


def recorded_urls(row: dict[str, Any], known: dict[str, str]) -> list[str]:
    """Where the records say the nodes that signed the agreed result are: each signer's URL in
    the node table ``known`` (its latest), then the URL its answer came from."""
    agreed = row["result_cid"]
    return list(dict.fromkeys([known[n] for n in _signers(row) if n in known] +
                              [a["url"] for a in row["answers"] if a.get("result_cid") == agreed and a.get("url")]))


async def moved_signers(session: aiohttp.ClientSession, row: dict[str, Any], configured: list[str],
                        tried: list[str]) -> list[str]:
    """The configured URLs (not in ``tried``) whose ``/v1/info`` names a signer's node ID: a node
    that moved, or a devstack restarted on other ports with the same keys. Any URL will do:
    whatever it sends is checked against the agreed result CID."""
    from .client import NodeClient

    signers = set(_signers(row))
    others = [u for u in dict.fromkeys(configured) if u not in tried]
    infos = await asyncio.gather(*(NodeClient(session, u).info() for u in others), return_exceptions=True)
    return [u for u, info in zip(others, infos) if isinstance(info, schema.NodeInfo) and info.node_id in signers]


async def fetch_results(row: dict[str, Any], output_dir: Path | None, car: Path | None, *,
                        known: dict[str, str] | None = None, configured: list[str] | None = None,
                        local_copy: Path | None = None, base: BaseSize | None = None) -> Path:
    """The results of a job in the requester's records (cod get): from a node that signed the
    agreed result (signer_urls), else from ``local_copy`` (the copy a run left here) once it
    hashes to the agreed CID. ``base`` is the measure of its output base a run recorded
    (``recorded_base``). Raises DownloadFailed when neither delivers."""
    agreed = row["result_cid"]
    if not agreed:
        raise NotFound(f"job {row['job_cid']} has no agreed result ({row['outcome']})")
    if output_dir is not None:
        check_destination(output_dir)
    limits = _limits_of(row.get("spec"))
    if isinstance(row.get("spec"), dict) and row["spec"].get("output_base") and base is None:
        limits = None  # a base of unknown size: only the absolute cap bounds its results
    scratch = Path(tempfile.mkdtemp(prefix="cod-get-"))
    failures: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession() as session:
            first = recorded_urls(row, known or {})
            for attempt in range(2):
                # the recorded URLs first; only when none delivers are the configured ones asked who they are
                urls = first if attempt == 0 else await moved_signers(session, row, configured or [], first)
                if not urls:
                    continue
                try:
                    done = await download_agreed(session, urls, row["job_cid"], agreed, output_dir, car, scratch,
                                                 limits=limits, base=base)
                except DownloadFailed as exc:
                    failures.update(exc.failures)
                    continue
                assert done.path is not None
                return done.path
        if local_copy is not None and await asyncio.to_thread(_local_copy, local_copy, agreed, output_dir, car,
                                                                scratch):
            return car if car is not None else output_dir or local_copy
        raise DownloadFailed(failures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _local_copy(source: Path, agreed: str, output_dir: Path | None, car: Path | None, scratch: Path) -> bool:
    """Install ``source`` (a results directory on this machine) at ``output_dir`` or as ``car``
    if it still hashes to ``agreed``; False when it is gone or changed."""
    from cod.content.car import write_car
    from cod.content.unixfs import cid_of_tree

    try:
        if not source.is_dir() or str(cid_of_tree(source)) != agreed:
            return False
        check_layout(source)
    except CodError:
        return False
    if car is not None:
        return str(write_car(source, car)) == agreed
    if output_dir is None or output_dir.resolve() == source.resolve():
        return True
    staging = scratch / "local"
    shutil.copytree(source, staging, symlinks=True)
    if str(cid_of_tree(staging)) != agreed:  # changed while it was copied
        return False
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    local = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=".cod-staging-"))
    local.rmdir()
    shutil.move(str(staging), local)
    install(local, output_dir)
    return True


def _limits_of(spec: Any) -> Limits | None:
    """The caps of a recorded wasm spec (None for docker jobs or a spec without them)."""
    if not isinstance(spec, dict) or spec.get("engine", "wasm") != "wasm" or not isinstance(spec.get("limits"), dict):
        return None
    try:
        return Limits(**spec["limits"])
    except TypeError:
        return None


def recorded_base(runs: list[dict[str, Any]]) -> BaseSize | None:
    """The measure of a job's output base its runs recorded (every run of a job has the same
    base: it is in the job CID), the latest first; None when none did."""
    for run in reversed(runs):
        found = BaseSize.from_json((run.get("extra") or {}).get("output_base"))
        if found is not None:
            return found
    return None

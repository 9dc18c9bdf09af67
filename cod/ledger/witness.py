"""A C2SP tlog-witness: cosigns a log's checkpoint only when it is consistent with the last one
it cosigned for that log, so a log cannot show two views (a fork) to parties that ask for
cosignatures.

    POST /add-checkpoint            body: ``old <N>\\n`` proof lines ``\\n`` signed checkpoint note
                                    200 cosignature line(s) | 400 | 403 | 404 | 409 size | 413 | 422
    GET  /<sha256(origin) hex>/checkpoint   the latest cosigned checkpoint (log + witness signatures)

The witness knows logs by their vkeys (the origin is the key name). Its state is one row per log
in SQLite (``witness.sqlite``): the latest cosigned size, root and note. The compare of the old
size with that row and its update happen in one ``BEGIN IMMEDIATE`` transaction under a per-log
lock, so two concurrent requests can never both advance (or roll back) a log. Its key is
``witness.key`` (the 32-byte seed, mode 0600) in its data directory.

Cosignature timestamps come from the witness host's clock; they never reach a job result.
``add_checkpoint`` is the client a log uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from ..dirlock import DirLock
from ..errors import CodError, LedgerRefused, LocalPathError, UsageError
from ..identity import Identity, node_id_of
from ..web.server import listen
from .checkpoint import Checkpoint, parse_size
from .merkle import EMPTY_ROOT, HASH_SIZE, ProofError, check_tree
from .note import (MAX_NOTE_BYTES, CosignatureSigner, CosignatureVerifier, NoteError, Verifier, open_note,
                   parse_signature_line, split_note)

KEY_FILE = "witness.key"
DB_FILE = "witness.sqlite"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = MAX_NOTE_BYTES + 4096  # the note plus "old N" and 63 proof lines
MAX_RESPONSE_BYTES = 65536
CLIENT_TIMEOUT_S = 30.0
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
DEFAULT_NAME_PREFIX = "cod-witness/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS logs_never_shrink BEFORE UPDATE ON logs
WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root <> OLD.root)
BEGIN SELECT RAISE(ABORT, 'a witness never rolls a log back nor changes a cosigned root'); END;
CREATE TRIGGER IF NOT EXISTS logs_never_forget BEFORE DELETE ON logs
BEGIN SELECT RAISE(ABORT, 'a witness never forgets a log'); END;
"""


class WitnessSizeConflict(LedgerRefused):
    """409: the old size is not the size the witness last cosigned; ``.size`` is that size."""

    def __init__(self, size: int, origin: str) -> None:
        super().__init__(f"the witness last cosigned size {size} of {origin}, not the old size sent",
                         f"send old {size} and a consistency proof from size {size}",
                         status=409, error="Conflict")
        self.size = size


def _refuse(status: int, error: str, message: str, hint: str) -> LedgerRefused:
    return LedgerRefused(message, hint, status=status, error=error)


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request."""

    old: int
    proof: list[bytes]
    note: bytes


def format_request(old: int, proof: Sequence[bytes], note: str | bytes) -> bytes:
    """The add-checkpoint body: ``old N``, one base64 line per proof hash, a blank line, the note."""
    raw = note.encode() if isinstance(note, str) else note
    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n").encode() + raw


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body strictly; LedgerRefused 400 names the first problem."""
    def bad(message: str) -> LedgerRefused:
        return _refuse(400, "BadRequest", message, "see C2SP tlog-witness: old N, proof lines, a blank line, "
                                                   "the checkpoint note")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise bad("the request has no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise bad("the old size and proof lines are ASCII") from None
    if not lines[0].startswith("old "):
        raise bad("the first line is 'old <size>'")
    try:
        old = parse_size(lines[0][len("old "):], "old size")
    except NoteError as exc:
        raise bad(str(exc)) from None
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise bad(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:]):
        try:
            h = base64.b64decode(line, validate=True)
        except ValueError:
            raise bad(f"proof line {i + 1} is not base64") from None
        if len(h) != HASH_SIZE or base64.b64encode(h).decode() != line:
            raise bad(f"proof line {i + 1} is not the base64 of a {HASH_SIZE}-byte hash")
        proof.append(h)
    return AddCheckpoint(old, proof, note)


def origin_hash(origin: str) -> str:
    """The monitoring path element of a log: lowercase hex SHA-256 of its origin."""
    return hashlib.sha256(origin.encode()).hexdigest()


def load_or_create_key(data_dir: Path) -> Identity:
    """The witness key in ``data_dir/witness.key``, made (0600) on first use; KeyFileError if unsafe."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LocalPathError(f"cannot create the witness data directory {str(data_dir)!r}: {exc.strerror}",
                             "choose a writable --data-dir") from None
    path = data_dir / KEY_FILE
    if path.exists() or path.is_symlink():
        return Identity.from_key_file(path)
    return Identity.create_key_file(path)


class Witness:
    """The witness's state and rules (no HTTP): which logs it knows, what it last cosigned."""

    def __init__(self, data_dir: Path, logs: Sequence[str], name: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not logs:
            raise UsageError("a witness needs at least one log to witness", "pass --log VKEY (repeatable)")
        self.logs: dict[str, list[Verifier]] = {}
        for vkey in logs:
            try:
                v = Verifier.from_vkey(vkey)
            except NoteError as exc:
                raise UsageError(f"--log {vkey!r}: {exc}", "a log's vkey is <origin>+<key ID>+<key>, "
                                 "as `cod ledger info` prints it") from None
            keys = self.logs.setdefault(v.name, [])
            if v not in keys:
                keys.append(v)
        identity = load_or_create_key(data_dir)
        try:
            self.signer = CosignatureSigner(name or DEFAULT_NAME_PREFIX + node_id_of(identity.public_key),
                                            identity.signing_key)
        except NoteError as exc:
            raise UsageError(f"--name: {exc}", "a witness name is like witness.example.org/w1") from None
        self.name = self.signer.name
        self.vkey = self.signer.vkey
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        try:
            self._db = sqlite3.connect(data_dir / DB_FILE, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LocalPathError(f"the witness database in {str(data_dir)!r} is unusable: {exc}",
                                 "check the --data-dir (another program's file?)") from None

    def close(self) -> None:
        self._db.close()

    def latest(self, origin: str) -> tuple[int, bytes, str] | None:
        """(size, root, note) of the latest checkpoint cosigned for ``origin``, or None."""
        row = self._db.execute("SELECT size, root, note FROM logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def latest_by_hash(self, digest: str) -> str | None:
        """The latest cosigned note of the log whose origin hashes to ``digest``."""
        for origin in sorted(self.logs):
            if origin_hash(origin) == digest:
                found = self.latest(origin)
                return None if found is None else found[2]
        return None

    def _verify(self, request: AddCheckpoint) -> tuple[Checkpoint, str]:
        """Checks that need no state: syntax (400), a known origin (404), the log's signature (403)."""
        try:
            text, _ = split_note(request.note)
            checkpoint = Checkpoint.parse(text.encode())
        except NoteError as exc:
            raise _refuse(400, "BadRequest", f"the checkpoint is malformed: {exc}",
                          "send a C2SP checkpoint signed as a note") from None
        keys = self.logs.get(checkpoint.origin)
        if keys is None:
            raise _refuse(404, "UnknownLog", f"this witness does not witness the log {checkpoint.origin!r}",
                          "ask its operator to add the log's vkey with --log")
        try:
            open_note(request.note, keys)
        except NoteError as exc:
            raise _refuse(403, "BadSignature", f"the checkpoint of {checkpoint.origin} is not signed by "
                          f"its key: {exc}", "sign the checkpoint with the log key the witness knows") from None
        if request.old > checkpoint.size:
            raise _refuse(400, "BadRequest", f"the old size {request.old} is over the checkpoint size "
                          f"{checkpoint.size}", "the old size is the size the witness last cosigned")
        return checkpoint, text

    async def add(self, request: AddCheckpoint) -> list[str]:
        """Cosign the checkpoint of ``request`` if it extends the last one cosigned for its log.

        Returns the cosignature line(s). Raises LedgerRefused: 400 malformed, 403 not signed by
        the log, 404 unknown log, 409 (WitnessSizeConflict) old size is stale, 422 the proof does
        not verify or the same size has another root (a fork).
        """
        checkpoint, text = self._verify(request)
        lock = self._locks.setdefault(checkpoint.origin, asyncio.Lock())
        async with lock:
            return self._advance(request, checkpoint, text.encode())

    def _advance(self, request: AddCheckpoint, checkpoint: Checkpoint, body: bytes) -> list[str]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the compare and the update in one write transaction
        try:
            row = db.execute("SELECT size, root FROM logs WHERE origin = ?", (checkpoint.origin,)).fetchone()
            known_size, known_root = (0, EMPTY_ROOT) if row is None else (int(row[0]), bytes(row[1]))
            if request.old != known_size:
                raise WitnessSizeConflict(known_size, checkpoint.origin)
            self._check_consistency(request, checkpoint, known_root)
            timestamp = int(self._clock())
            line = self.signer.cosign(body, timestamp)  # the text exactly as the log signed it
            note = request.note.decode() + line + "\n"
            db.execute("INSERT INTO logs (origin, size, root, note, cosigned_at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
                       "note = excluded.note, cosigned_at = excluded.cosigned_at",
                       (checkpoint.origin, checkpoint.size, checkpoint.root, note, timestamp))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [line]

    def _check_consistency(self, request: AddCheckpoint, checkpoint: Checkpoint, known_root: bytes) -> None:
        def unprocessable(message: str) -> LedgerRefused:
            return _refuse(422, "Inconsistent", message, "a log only ever appends: send a consistency proof "
                           f"from size {request.old} to size {checkpoint.size}")
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            raise unprocessable("a checkpoint of size 0 has the root of the empty tree")
        if request.old == 0:
            if request.proof:
                raise unprocessable("from old size 0 the consistency proof is empty")
            return
        if request.old == checkpoint.size:
            if checkpoint.root != known_root:
                raise unprocessable(f"the witness cosigned another root for size {checkpoint.size} of "
                                    f"{checkpoint.origin}: the log has forked")
            if request.proof:
                raise unprocessable("between equal sizes the consistency proof is empty")
            return
        try:
            check_tree(request.proof, checkpoint.size, checkpoint.root, request.old, known_root)
        except ProofError as exc:
            raise unprocessable(f"the consistency proof from size {request.old} does not verify: {exc}") from None


# --- HTTP -------------------------------------------------------------------------------------

def _error_response(exc: LedgerRefused) -> web.Response:
    if isinstance(exc, WitnessSizeConflict):
        # exactly this media type, no charset parameter (C2SP tlog-witness)
        return web.Response(status=409, body=f"{exc.size}\n".encode(), headers={"Content-Type": SIZE_CONTENT_TYPE})
    body = {"error": exc.error, "message": exc.message, "hint": exc.hint or ""}
    return web.json_response(body, status=exc.status)


def witness_app(witness: Witness) -> web.Application:
    """The aiohttp application of a witness."""
    async def add_checkpoint(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error_response(_refuse(413, "TooLarge", f"the request is over {MAX_REQUEST_BYTES} bytes",
                                           "a checkpoint note is small; send one"))
        try:
            lines = await witness.add(parse_request(body))
        except LedgerRefused as exc:
            return _error_response(exc)
        return web.Response(text="".join(line + "\n" for line in lines), content_type="text/plain",
                            charset="utf-8")

    async def checkpoint(request: web.Request) -> web.Response:
        note = witness.latest_by_hash(request.match_info["origin_hash"])
        if note is None:
            return _error_response(_refuse(404, "NotFound", "this witness has cosigned no checkpoint of that log",
                                           "the path is /<lowercase hex SHA-256 of the origin>/checkpoint"))
        return web.Response(text=note, content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"name": witness.name, "vkey": witness.vkey, "logs": sorted(
            v.vkey for keys in witness.logs.values() for v in keys)})

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/add-checkpoint", add_checkpoint)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", checkpoint)
    app.router.add_get("/", info)
    return app


@dataclass
class RunningWitness:
    witness: Witness
    runner: web.AppRunner
    url: str
    lock: DirLock | None = None  # the data dir's: one witness process per data dir (one key, one port)

    async def stop(self) -> None:
        await self.runner.cleanup()
        self.witness.close()
        if self.lock is not None:
            self.lock.release()


async def start_witness(data_dir: Path, logs: Sequence[str], host: str = "127.0.0.1", port: int = 0,
                        name: str | None = None) -> RunningWitness:
    """Start a witness on ``host:port`` (0: any free port); CodError when it cannot."""
    witness = Witness(data_dir, logs, name)  # makes the data dir (and the key) if missing
    try:
        lock = DirLock.take(data_dir, "witness data directory", "--data-dir")
    except LocalPathError:
        witness.close()
        raise
    try:
        served = await listen(witness_app(witness), host, port)
    except OSError as exc:
        witness.close()
        lock.release()
        raise CodError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       "pick another --port (0: any free port) or --host") from None
    except CodError:  # a COD_HTTP_* limit that is not a number
        witness.close()
        lock.release()
        raise
    return RunningWitness(witness, served.runner, served.url, lock)


# --- client -------------------------------------------------------------------------------------

async def add_checkpoint(session: aiohttp.ClientSession, url: str, old_size: int, proof: Sequence[bytes],
                         note: str | bytes, *, witness: CosignatureVerifier | None = None) -> list[str]:
    """Ask the witness at ``url`` to cosign ``note``; return its cosignature lines (no newlines).

    With ``witness``, only that witness's lines are kept and each must verify over the
    checkpoint. Raises LedgerRefused with the HTTP status (0: unreachable); a 409 is a
    WitnessSizeConflict carrying the size the witness knows.
    """
    body = format_request(old_size, proof, note)
    target = url.rstrip("/") + "/add-checkpoint"
    try:
        async with session.post(target, data=body, timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
                                headers={"Content-Type": "text/plain; charset=utf-8"}) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
            content_type = response.headers.get("Content-Type", "")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise LedgerRefused(f"witness {url} could not be reached: {exc or type(exc).__name__}",
                            "check the witness URL and that it runs", status=0, error="Unreachable") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise LedgerRefused(f"witness {url} answered over {MAX_RESPONSE_BYTES} bytes", None, status=502,
                            error="BadWitnessAnswer")
    text = raw.decode("utf-8", "replace")
    if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE):
        try:
            size = parse_size(text[:-1] if text.endswith("\n") else "", "size")
        except NoteError:
            raise LedgerRefused(f"witness {url} answered 409 without a size", None, status=409,
                                error="Conflict") from None
        raise WitnessSizeConflict(size, url)
    if status != 200:
        message, error = text.strip()[:300], f"HTTP{status}"
        try:
            answer = json.loads(raw)
            if isinstance(answer, dict):
                message, error = str(answer.get("message", message)), str(answer.get("error", error))
        except ValueError:
            pass
        raise LedgerRefused(f"witness {url} refused the checkpoint ({status}): {message}",
                            "see the witness's message", status=status, error=error)
    lines = text.split("\n")
    if not text.endswith("\n") or lines[-1] != "" or len(lines) < 2:
        raise LedgerRefused(f"witness {url} answered no signature lines", None, status=502, error="BadWitnessAnswer")
    out: list[str] = []
    for line in lines[:-1]:
        try:
            sig = parse_signature_line(line)
        except NoteError as exc:
            raise LedgerRefused(f"witness {url} answered a malformed line: {exc}", None, status=502,
                                error="BadWitnessAnswer") from None
        if witness is not None:
            if (sig.name, sig.key_id) != (witness.name, witness.key_id):
                continue
            body_text = split_note(note.encode() if isinstance(note, str) else note)[0].encode()
            if witness.timestamp_of(body_text, sig.signature) is None:
                raise LedgerRefused(f"witness {url}'s cosignature does not verify", None, status=502,
                                    error="BadWitnessAnswer")
        out.append(line)
    if not out:
        raise LedgerRefused(f"witness {url} answered no cosignature by {witness.name if witness else 'it'}",
                            "check the witness vkey", status=502, error="BadWitnessAnswer")
    return out

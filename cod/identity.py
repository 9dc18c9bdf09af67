"""Node identity: an Ed25519 key pair and its self-certifying node ID.

The node ID is a libp2p peer ID: the identity multihash (code 0x00) of the protobuf
``PublicKey { Type: Ed25519 (1), Data: 32-byte key }`` (bytes ``08 01 12 20`` + key),
written in base58btc (``12D3KooW...``). Anyone can recover the public key from the ID,
so a statement signed by a node can be checked against its ID alone.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
import tempfile
from pathlib import Path

import multihash
import nacl.exceptions
import nacl.signing

from .errors import BadSignature, CodError, KeyFileError

KEY_FILE = "node.key"
KEY_FILE_BYTES = 32
_PROTO_PREFIX = b"\x08\x01\x12\x20"
IDENTITY = 0x00


def node_id_of(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return str(multihash.to_b58_string(multihash.encode(_PROTO_PREFIX + public_key, IDENTITY)))


def public_key_of(node_id: str) -> bytes:
    """The Ed25519 public key inside a node ID; raises BadSignature when it holds none."""
    try:
        decoded = multihash.decode(multihash.from_b58_string(node_id))
    except Exception as exc:  # py-multihash raises several types for bad input
        raise BadSignature(f"{node_id!r} is not a node ID") from exc
    digest = bytes(decoded.digest)
    if decoded.code != IDENTITY or len(digest) != 36 or not digest.startswith(_PROTO_PREFIX):
        raise BadSignature(f"{node_id!r} is not an Ed25519 node ID")
    return digest[4:]


PUBLIC_KEY_SIZE, SIGNATURE_SIZE = 32, 64


def signature_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """cod's one Ed25519 rule (SPEC 1), for every signature any part of cod checks: node statements,
    ledger entries, notes, checkpoints and cosignatures.

    Valid iff the key and signature have their sizes, S < L, A and R are canonical encodings of
    points that are not of small order, and [S]B = R + [k]A holds without the cofactor (libsodium's
    crypto_sign_verify_detached, through PyNaCl). Checked against C2SP CCTV's 914 edge cases
    (vectors/ed25519/), whose flags give the expected answer independently.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True


def verify(node_id: str, message: bytes, signature: bytes) -> None:
    """Check ``signature`` over ``message`` against the key in ``node_id``."""
    if not signature_valid(public_key_of(node_id), message, signature):
        raise BadSignature(f"signature does not verify against node {node_id}")


def _write_new_key(path: Path) -> None:
    """A new key at ``path``, all or nothing: written to a temporary file beside it (mode 0600),
    synced, then linked into place (never over a key another process made meanwhile), the
    directory synced. A failure (a full disk) leaves no key file and no temporary file."""
    seed = nacl.signing.SigningKey.generate().encode()
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(seed)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another start made one first: that one is the key
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):  # a file system without hard links
                raise
            if not os.path.lexists(path):
                os.rename(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        Path(temporary).unlink(missing_ok=True)


class Identity:
    """A node's key pair, kept in ``data_dir/node.key`` (the 32-byte seed, mode 0600)."""

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self.public_key = bytes(key.verify_key)
        self.node_id = node_id_of(self.public_key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "Identity":
        path = data_dir / KEY_FILE
        data_dir.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(path):
            _write_new_key(path)
        if path.stat().st_mode & 0o077:
            raise CodError(f"node key {path} is readable by others", f"chmod 600 {path}")
        seed = path.read_bytes()
        if len(seed) < KEY_FILE_BYTES:  # cod before Stage 9 wrote the key in place: a full disk left it so
            raise KeyFileError(f"node key {path} holds {len(seed)} bytes, not {KEY_FILE_BYTES}: an earlier start "
                               "was cut short while writing it (a full disk?), so it never signed anything",
                               f"rm {path} and start again: the node makes a new key (a new node ID)")
        if len(seed) != KEY_FILE_BYTES:
            raise KeyFileError(f"node key {path} holds {len(seed)} bytes, not {KEY_FILE_BYTES}: it is not a cod "
                               "node key", f"restore node.key from a backup, or rm {path} to start as a new node "
                               "(a new node ID)")
        return cls(nacl.signing.SigningKey(seed))

    @classmethod
    def from_key_file(cls, path: Path) -> "Identity":
        """The key in a key file (the 32-byte seed, mode 0600: what `cod keygen` writes).

        Raises KeyFileError when the file is missing, unreadable, not 32 bytes, or readable by
        group or others (a key others can read signs for them too).
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {str(path)!r}: {exc.strerror}",
                               "make one with: cod keygen FILE") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not _stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {str(path)!r} is not a regular file", "make one with: cod keygen FILE")
            if info.st_mode & 0o077:
                raise KeyFileError(f"key file {str(path)!r} is readable by others", f"chmod 600 {path}")
            try:
                seed = handle.read(KEY_FILE_BYTES + 1)
            except OSError as exc:
                raise KeyFileError(f"cannot read key file {str(path)!r}: {exc.strerror}",
                                   "make one with: cod keygen FILE") from None
        if len(seed) != KEY_FILE_BYTES:
            raise KeyFileError(f"key file {str(path)!r} is damaged: it holds {len(seed)} bytes, a key has "
                               f"{KEY_FILE_BYTES}", "make one with: cod keygen FILE")
        return cls(nacl.signing.SigningKey(seed))

    @classmethod
    def create_key_file(cls, path: Path) -> "Identity":
        """Make a new key and write it to ``path`` (mode 0600); refuses to overwrite (KeyFileError)."""
        seed = nacl.signing.SigningKey.generate().encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{str(path)!r} exists already; cod never overwrites a key",
                               "choose another file name, or remove the old key if you are sure") from None
        except OSError as exc:
            raise KeyFileError(f"cannot create key file {str(path)!r}: {exc.strerror}",
                               "choose a writable directory") from None
        with os.fdopen(fd, "wb") as out:
            out.write(seed)
        return cls(nacl.signing.SigningKey(seed))

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        return self._key

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

"""A results directory on the host: its fixed modes, where a run stages it, how it is put in
place and removed. No wasm here: the requester uses these without loading the engine.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import CIDError, CodError, LocalPathError

FILE_MODE = 0o644  # every file of a results directory, whatever the umask
DIR_MODE = 0o755  # every directory of it, the results directory included
RESULT_ENTRIES = frozenset({"stdout", "stderr", "exitCode", "outputs", "trap"})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs the open


def staging_prefix(destination: Path) -> str:
    """The name prefix of the staging directories of runs into ``destination`` (beside it), so
    whoever owns the destination can find what a killed run left (its first 64 characters keep
    the name under every host's name limit)."""
    return f".cod-staging-{destination.name[:64]}-"


def fix_modes(root: Path) -> None:
    """Give ``root`` and every directory under it DIR_MODE and every file FILE_MODE.

    The umask of whoever ran the job must not show in its results. Iterative; never follows
    symlinks (results may hold them; their modes are not part of a result).
    """
    os.chmod(root, DIR_MODE)
    stack = [os.fsencode(root)]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.path, DIR_MODE)
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    os.chmod(entry.path, FILE_MODE)


def remove_tree(root: Path) -> None:
    """Delete ``root`` and everything under it, if it exists; best effort, never raises.

    Iterative, with one directory open at a time and paths relative to it, so neither the
    depth of the tree (shutil.rmtree recurses) nor PATH_MAX nor the fd limit can stop it.
    Never follows symlinks.
    """
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return
    stack: list[tuple[str, list[str]]] = [("", _clear(fd))]
    try:
        while stack:
            name, pending = stack[-1]
            if pending:
                child = pending.pop()
                try:
                    os.chmod(child, 0o700, dir_fd=fd)  # a job's umask may have left it unreadable
                except OSError:
                    pass
                try:
                    inner = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                os.close(fd)
                fd = inner
                stack.append((child, _clear(fd)))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        os.rmdir(root)
    except OSError:
        pass


def _clear(fd: int) -> list[str]:
    """Unlink every non-directory in the open directory ``fd``; the names of its subdirectories."""
    subdirectories = []
    try:
        os.fchmod(fd, 0o700)
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
                else:
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        pass
    except OSError:
        pass
    return subdirectories


def open_entry(results_dir: str | os.PathLike[str], name: str) -> BinaryIO | None:
    """Open ``name`` (stdout, stderr, exitCode, trap) of a results directory for reading, or
    None when it is absent. Never follows a link: a results directory a node writes holds these
    as regular files, so a symlink in their place (a result hostile signers agreed on; UnixFS
    results may hold symlinks) is refused with LocalPathError, and so is a symlinked results
    directory or anything other than a regular file. The requester must never print a file of
    its own that a result points at.
    """
    try:
        dir_fd = os.open(results_dir, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        what = "is a symlink" if os.path.islink(results_dir) else f"cannot be opened: {exc.strerror}"
        raise LocalPathError(f"results directory {os.fsdecode(results_dir)} {what}",
                             "cod reads a results directory itself, never through a link; "
                             "cod get fetches it anew") from None
    try:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if os.path.islink(os.path.join(results_dir, name)):
                raise _refused(results_dir, name, "a symlink") from None
            raise LocalPathError(f"cannot read {name} of results {os.fsdecode(results_dir)}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refused(results_dir, name, "not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_layout(results_dir: str | os.PathLike[str]) -> None:
    """Raise CIDError unless the executor's entries of ``results_dir`` (SPEC 7.1) are what an
    executor writes: stdout, stderr, exitCode and trap regular files, outputs a real directory.
    A result agreed by hostile signers may hold links there (UnixFS results may hold symlinks,
    SPEC 4.5); the requester refuses it rather than leave ``outputs -> ~`` or ``stdout ->
    /etc/shadow`` where a user or a script follows them. Nothing is followed here."""
    for name in sorted(RESULT_ENTRIES):
        try:
            mode = os.lstat(os.path.join(results_dir, name)).st_mode
        except FileNotFoundError:
            continue
        wanted = stat.S_ISDIR(mode) if name == "outputs" else stat.S_ISREG(mode)
        if not wanted:
            what = "a symlink" if stat.S_ISLNK(mode) else "not a directory" if name == "outputs" else "not a file"
            raise CIDError(f"the result's {name} is {what}; a cod node writes it as a "
                           f"{'directory' if name == 'outputs' else 'regular file'} (SPEC 7.1), so the nodes that "
                           "signed it are hostile")


def _refused(results_dir: str | os.PathLike[str], name: str, what: str) -> LocalPathError:
    return LocalPathError(
        f"{name} of results {os.fsdecode(results_dir)} is {what}; cod nodes write it as a regular file, so the "
        f"nodes that signed this result are hostile", "cod never follows it; do not trust this result")


def check_destination(destination: Path) -> None:
    """Raise CodError unless ``destination`` is absent, empty or an earlier cod result (and
    not a symlink: results go where they are asked to, never where a link points)."""
    if destination.is_symlink():
        raise LocalPathError(f"output directory {destination} is a symlink", "give the directory itself, or a new path")
    if not destination.exists():
        return
    if not destination.is_dir():
        raise CodError(f"output directory {destination} exists and is not a directory", "choose another path")
    try:
        entries = set(os.listdir(destination))
    except OSError as exc:
        raise CodError(f"cannot read output directory {destination}: {exc.strerror}", "choose another path") from exc
    if entries and not ("exitCode" in entries and entries <= RESULT_ENTRIES):
        raise CodError(
            f"output directory {destination} holds files that are not a cod result",
            "choose an empty or new directory; cod never overwrites other files",
        )


def install(staging: Path, destination: Path) -> None:
    """Move the finished results into place; an earlier result there goes only after."""
    if destination.exists() and not any(destination.iterdir()):
        destination.rmdir()
    if not destination.exists():
        os.rename(staging, destination)
        return
    old = Path(tempfile.mkdtemp(dir=destination.parent, prefix=".cod-old-"))
    os.rename(destination, old / "result")
    os.rename(staging, destination)
    remove_tree(old)


__all__ = ["DIR_MODE", "FILE_MODE", "RESULT_ENTRIES", "check_destination", "check_layout", "fix_modes", "install",
           "open_entry", "remove_tree", "staging_prefix"]

"""The log key a client trusts for a ledger: pinned, known, or trusted on first use (SPEC.md 12.7).

A client that signs or believes what a ledger answers checks it against the log's key (its C2SP
vkey, 12.2), never against a key the same answer carries. The key is, in this order: the one
pinned (``--vkey``, else "ledger_vkey" in the config file / COD_LEDGER_VKEY); else the one saved
for the ledger's URL in ``known_ledgers`` beside the config file (one ``URL VKEY`` line per
ledger, as SSH's known_hosts); else the key the ledger's /v1/info names, which is then saved
there (trust on first use). Whichever it is, a ledger whose /v1/info names another key is
refused (AuditFailed) with what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import AuditFailed, UsageError
from ..text import printable
from .note import NoteError, Verifier

KNOWN_FILE = "known_ledgers"
"""The file, in the config directory, of the keys trusted on first use: ``URL VKEY`` lines."""

MAX_KNOWN_BYTES = 1 << 20


@dataclass(frozen=True)
class Trusted:
    """The key a ledger is checked against and why it is trusted."""

    vkey: str
    how: str
    """"pinned by --vkey", "pinned in the config file", "saved in PATH" or "trusted on first use, saved in PATH"."""


def canonical_url(url: str) -> str:
    """``url`` as known_ledgers keys it: no trailing ``/``, the scheme and host in lower case (RFC 3986 6.2.2.1)."""
    url = url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def checked_vkey(vkey: str, where: str) -> str:
    """``vkey`` if it is an Ed25519 note vkey (12.2); UsageError naming ``where`` otherwise."""
    try:
        return Verifier.from_vkey(vkey).vkey
    except NoteError as exc:
        raise UsageError(f"{where} is not a ledger's verifier key: {printable(str(exc), 300)}",
                         "cod ledger info prints the ledger's vkey") from None


def read_known(path: Path) -> dict[str, str]:
    """The saved key of each ledger URL (the first line for a URL counts; bad lines are skipped; text after
    the key from a ``#`` on is a comment)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_KNOWN_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    known: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").removeprefix("\ufeff").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2:
            known.setdefault(canonical_url(parts[0]), parts[1])
    return known


def save_known(path: Path, url: str, vkey: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        ends_open = False  # a last line left with no newline (as an editor may) keeps its own line
        if handle.seek(0, 2) > 0:
            handle.seek(-1, 2)
            ends_open = handle.read(1) != b"\n"
        handle.write(f"{chr(10) if ends_open else ''}{url} {vkey}\n".encode())


def trusted(url: str, answered: str, pinned: str | None, pinned_how: str, path: Path) -> Trusted:
    """The key to check the ledger at ``url`` against, given the vkey its /v1/info ``answered``;
    ``path`` is the known_ledgers file (KNOWN_FILE in the config directory) that saves keys.

    AuditFailed when the ledger names another key than the one pinned or saved for it.
    """
    url = canonical_url(url)
    if pinned is not None:
        if answered != pinned:
            raise AuditFailed([f"the ledger at {url} names the log key {answered}, not the key {pinned} "
                               f"{pinned_how}"],
                              "check that --ledger names the ledger you mean, and its key with its operator; "
                              "nothing was signed")
        return Trusted(pinned, pinned_how)
    saved = read_known(path).get(url)
    if saved is not None:
        if answered != saved:
            raise AuditFailed([f"the ledger at {url} names the log key {answered}, but the key saved for it in "
                               f"{path} is {saved}: someone may be between you and the ledger, or the ledger's "
                               "key changed"],
                              f"if its operator confirms the new key, remove the line of {url} from {path} "
                              "(or pin the key with --vkey); nothing was signed")
        return Trusted(saved, f"saved in {path}")
    checked = checked_vkey(answered, f"the key the ledger at {url} names ({answered[:200]!r})")
    try:
        save_known(path, url, checked)
    except OSError as exc:  # as SSH: go on with the key, say it is not remembered
        return Trusted(checked, f"trusted on first use, NOT saved: cannot write {path}: {exc.strerror or exc}")
    return Trusted(checked, f"trusted on first use, saved in {path}")


__all__ = ["KNOWN_FILE", "Trusted", "canonical_url", "checked_vkey", "read_known", "trusted"]

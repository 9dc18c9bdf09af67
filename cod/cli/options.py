"""Checks of command-line values, done where they are parsed, before anything starts.

Counts and other numbers are ranges in ASCII digits (AsciiInt, AsciiFloat: a usage error,
exit 2); job spec values (limits, args, env, seed, entry point) are SpecErrors naming the spec
field (exit 3); node URLs from ``--node`` are usage errors, from COD_NODES or the config file
ConfigErrors (exit 21); destinations that cannot be written are LocalPathErrors (exit 22).
Text bound for a job spec must be UTF-8: Python hands non-UTF-8 argv and environment bytes
over as lone surrogates, which no spec can hold, so they are refused here with the field they
were meant for.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import click

from ..errors import LocalPathError, SpecError, UsageError
from ..jobspec import MAX_INT
from ..local import parse_duration_ms, parse_size
from ..urls import node_url_problem, not_utf8


def spec_text(value: str, field: str) -> str:
    """``value`` if it can go into a job spec as ``field``; raises SpecError for non-UTF-8 bytes."""
    if not_utf8(value):
        raise SpecError(field, f"{value!r} is not UTF-8 text",
                        "job specs are UTF-8 JSON; pass the text in UTF-8 (check your locale or the bytes)")
    return value


def check_spec_int(value: int, field: str) -> int:
    """``value`` if a job spec limit may hold it ([1, 2**63-1]); raises SpecError."""
    if not 1 <= value <= MAX_INT:
        raise SpecError(field, f"{value} is out of range [1, {MAX_INT}]",
                        "limits are positive and fit a signed 64-bit integer")
    return value


class SpecInt(click.ParamType[int]):
    """A positive integer bound for a job spec limit, in ASCII decimal digits."""

    name = "integer"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_spec_int(value, self.field)
        text = str(value).strip()
        digits = text.lstrip("-")
        # ASCII only: int() also takes other scripts' digits and refuses more than 4300 of them
        if not digits or not (digits.isascii() and digits.isdigit()):
            raise SpecError(self.field, f"{value!r} is not an integer", "write decimal digits, e.g. 50000000000")
        if len(digits.lstrip("0")) > len(str(MAX_INT)):
            raise SpecError(self.field, f"{text[:24]}... is out of range [1, {MAX_INT}]",
                            "limits are positive and fit a signed 64-bit integer")
        return check_spec_int(int(text), self.field)


class SpecSize(click.ParamType[int]):
    """A byte count (``256MiB``) bound for a job spec limit."""

    name = "size"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_spec_int(value, self.field)
        return parse_size(str(value), self.field)


class SpecDuration(click.ParamType[int]):
    """A duration (``30s``, ``500ms``) in milliseconds, bound for a job spec limit."""

    name = "duration"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_spec_int(value, self.field)
        return parse_duration_ms(str(value), self.field)


class SpecText(click.ParamType[str]):
    """Text bound for a job spec field: UTF-8, and not empty."""

    name = "text"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = spec_text(str(value), self.field)
        if not text:
            raise SpecError(self.field, "is empty", "give a value, or leave the option out")
        return text


# -- numbers (every integer and float option) ----------------------------------------------------
MAX_DIGITS = 40
"""Most significant digits of an integer option (every bound cod has is far below; int() takes 4300)."""
_ASCII_INT = re.compile(r"[ ]*[+-]?0*([0-9]+)[ ]*")
_ASCII_FLOAT = re.compile(r"[ ]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ ]*")
"""ASCII only: int() and float() also take other scripts' digits ('١', fullwidth '１'), underscores
('1_000') and other spaces, and float() takes 'nan' and 'inf', which pass every range check."""


def _example(param: click.Parameter | None, fallback: float) -> str:
    default = getattr(param, "default", None)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and math.isfinite(default):
        return str(default)
    return str(fallback)


class AsciiInt(click.IntRange):
    """An integer in ASCII decimal digits, in [min, max] when given (click.IntRange's bounds)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, str):
            fallback = max(self.min if self.min is not None else 1, 1)
            hint = f"give e.g. {_example(param, min(fallback, self.max) if self.max is not None else fallback)}"
            match = _ASCII_INT.fullmatch(value)
            if match is None:
                self.fail(f"{value[:40]!r} is not a number in ASCII digits: {hint}", param, ctx)
            if len(match.group(1)) > MAX_DIGITS:
                self.fail(f"{value.strip()[:20]}... has more than {MAX_DIGITS} digits: {hint}", param, ctx)
        return int(super().convert(value, param, ctx))


class AsciiFloat(click.FloatRange):
    """A finite decimal number in ASCII digits (no nan, no inf), in [min, max] when given."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        hint = f"give e.g. {_example(param, self.min if self.min is not None else 1.5)}"
        if isinstance(value, str) and not _ASCII_FLOAT.fullmatch(value):
            self.fail(f"{value[:40]!r} is not a number in ASCII digits: {hint}", param, ctx)
        number = float(super().convert(value, param, ctx))
        if not math.isfinite(number):
            self.fail(f"{str(value)[:40]!r} is not a finite number: {hint}", param, ctx)
        return number


class JobRef(click.ParamType[str]):
    """A job CID or a prefix of one: ASCII letters and digits (CIDs are base32 or base58)."""

    name = "job"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not (text.isascii() and text.isalnum()):
            self.fail(f"{text!r} is not a job CID or a prefix of one (letters and digits)", param, ctx)
        return text


class NodeURL(click.ParamType[str]):
    """A ``--node`` (or ``--ledger``) URL, checked before anything starts."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = node_url_problem(str(value))
        if problem:
            self.fail(f"{value!r} {problem}", param, ctx)
        return str(value)


def node_urls(explicit: tuple[str, ...]) -> list[str]:
    """The node URLs a verified run uses: ``--node``, else COD_NODES, else the config file.

    Every URL is checked; raises ConfigError naming the source of a bad one. An empty list
    means no nodes are configured (the run starts an embedded devstack).
    """
    if explicit:
        return list(explicit)
    from ..config import load

    return load().nodes


def writable_parent(path: str, what: str, create: bool) -> None:
    """Refuse (LocalPathError) a destination whose directory cannot take it.

    With ``create`` the missing directories are made by the writer, so the nearest existing
    ancestor must be a writable directory; without, the parent itself must be one.
    """
    target = Path(os.path.abspath(path))
    parent = target.parent
    if create:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.exists():
        raise LocalPathError(f"{what} {path!r}: directory {str(parent)!r} does not exist",
                             "create it first, or choose another path")
    if not parent.is_dir():
        raise LocalPathError(f"{what} {path!r}: {str(parent)!r} is not a directory", "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LocalPathError(f"{what} {path!r}: directory {str(parent)!r} is not writable",
                             "choose a directory you can write")


def writable_dir(path: str, what: str) -> None:
    """Refuse (LocalPathError) a directory cod must create or write into: it, or its nearest
    existing ancestor, must be a writable directory."""
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LocalPathError(f"{what} {path!r}: {str(existing)!r} is not a directory", "choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LocalPathError(f"{what} {path!r}: directory {str(existing)!r} is not writable",
                             "choose a directory you can write")


# -- DataCap sizes (cod moderation approve --datacap) ------------------------------------------------
DATACAP_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
                 "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50}
MAX_DATACAP = 1 << 60
DATACAP_FORMS = "a whole number of bytes, or a number with a unit: B, KB MB GB TB PB (10^3), KiB MiB GiB TiB PiB (2^10)"
_DATACAP = re.compile(r"\s*(\d{1,20})(?:\.(\d{1,20}))?\s*([A-Za-z]{0,3})\s*", re.ASCII)
"""ASCII only: without re.ASCII, \\d takes other scripts' digits ('١٢TiB') and \\s other spaces."""


def parse_datacap(text: str) -> int:
    """Bytes of a DataCap size ("1TiB", "512 GiB", "1.5TB", "1000000"); UsageError if malformed,
    not whole bytes, zero, or over 2^60 bytes."""
    match = _DATACAP.fullmatch(text)
    unit = match.group(3).lower() if match else ""
    if match is None or unit not in DATACAP_UNITS:
        raise UsageError(f"DataCap {text!r} is not a size", f"give {DATACAP_FORMS}")
    whole, frac = match.group(1), match.group(2) or ""
    scaled = (int(whole) * 10 ** len(frac) + int(frac or "0")) * DATACAP_UNITS[unit]
    value, rest = divmod(scaled, 10 ** len(frac))
    value = int(value)
    if rest:
        raise UsageError(f"DataCap {text!r} is not a whole number of bytes", f"give {DATACAP_FORMS}")
    if not 0 < value <= MAX_DATACAP:
        raise UsageError(f"DataCap {text!r} is {value} bytes; it must be between 1 byte and 2^60 bytes (1 EiB)",
                         f"give {DATACAP_FORMS}")
    return value


class _DatacapType(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_datacap(str(value))
        except UsageError as exc:
            self.fail(f"{exc.message} ({exc.hint})", param, ctx)


datacap_size = _DatacapType()

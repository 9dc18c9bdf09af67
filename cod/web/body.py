"""Strict parsing of JSON request bodies: what SPEC.md section 1 says a spec document is.

One parser for every JSON document cod reads (:func:`cod.jobspec.load_json`: invalid UTF-8,
duplicate keys, floats and nesting past its depth are refused before a handler sees them);
:func:`check_strings` refuses a body in which any string holds a lone surrogate, wherever it
is; the job spec names the field first, so it is a last check after the spec is read.
"""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from ..jobspec import load_json


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body; raises SpecError naming what is wrong."""
    return load_json(raw)


def check_strings(value: Any) -> None:
    """Refuse lone surrogates in any key or string: they have no UTF-8 form and no canonical bytes."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise SpecError("(request)", "a string holds a lone surrogate (e.g. \\ud800)",
                                "send valid Unicode: surrogates only in pairs") from None

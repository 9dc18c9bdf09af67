"""Strict parsing of JSON request bodies: what SPEC.md section 1 says a spec document is.

Invalid UTF-8, lone surrogates (``"\\ud800"``), duplicate keys, floats and nesting deeper
than MAX_JSON_DEPTH are refused with SpecError before a parser could recurse or a handler
see them.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import SpecError
from ..jobspec import _no_duplicates, _no_float

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in a request body (a spec nests 4 deep)."""


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body; raises SpecError naming what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("(request)", f"the body is not valid UTF-8 (byte {exc.start})") from None
    _check_depth(text)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float)
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError("(request)", f"not valid JSON: {exc}") from None
    _check_strings(value)
    return value


def _check_depth(text: str) -> None:
    """Refuse nesting past MAX_JSON_DEPTH by scanning brackets outside strings (no recursion)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SpecError("(request)", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _check_strings(value: Any) -> None:
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

"""Node and ledger URLs: the one check of a base URL, shared by --node, COD_NODES and the config."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URL_BYTES = 2048
"""Longest node URL accepted (browsers and proxies agree on at least this)."""

URL_SCHEMES = ("http", "https")


def not_utf8(text: str) -> bool:
    """True when ``text`` came from bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def node_url_problem(url: str) -> str | None:
    """Why ``url`` is not a node's base URL (http or https, a host, a port in 1-65535), or None."""
    if not_utf8(url):
        return "is not UTF-8 text"
    if len(url.encode()) > MAX_URL_BYTES:
        return f"is longer than {MAX_URL_BYTES} bytes"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "holds white space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is malformed ({exc})"
    if parts.scheme not in URL_SCHEMES:
        return "does not start with http:// or https://"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "names port 0"
    if parts.username is not None or parts.query or parts.fragment:
        return "holds a user name, a query or a fragment; a node URL is http://HOST:PORT[/PATH]"
    return None


__all__ = ["MAX_URL_BYTES", "URL_SCHEMES", "node_url_problem", "not_utf8"]

"""Serving stored files: each as exactly its own bytes, as a download a browser never renders.

A result file or blob holds whatever a job or an uploader wrote, HTML and SVG included; served
with the type its name suggests, a browser would run its scripts on the server's origin. So
every stored file is ``application/octet-stream`` (or the type the route names, e.g. a CAR),
never sniffed (``X-Content-Type-Options: nosniff``) and an attachment. aiohttp's FileResponse
would also answer a request for ``x`` that accepts gzip with a sibling ``x.gz``: here the file
named is the file sent.
"""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

from aiohttp import web

OCTET_STREAM = "application/octet-stream"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
"""Headers of every stored file a server sends."""


class _ExactFileResponse(web.FileResponse):
    """A FileResponse that never substitutes a pre-compressed sibling (``x.gz``, ``x.br``)."""

    def _get_file_path_stat_encoding(self, accept_encoding: str) -> tuple[pathlib.Path | None, os.stat_result,
                                                                          str | None]:
        return super()._get_file_path_stat_encoding("")


def stored_file(path: Path, content_type: str = OCTET_STREAM) -> web.FileResponse:
    """``path`` as a download of type ``content_type``: not sniffed, not rendered, not substituted."""
    return _ExactFileResponse(path, headers={"Content-Type": content_type, "Content-Disposition": "attachment",
                                             **NOSNIFF})


__all__ = ["NOSNIFF", "OCTET_STREAM", "stored_file"]

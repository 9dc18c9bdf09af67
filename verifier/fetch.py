"""Downloading agreed results: from the first agreeing node that delivers them, checked
against the agreed result CID before they are put in place."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from cod.cid import CID
from cod.errors import CodError, NodeError, NotFound
from cod.export import export, read_complete_car, unpack_car
from cod.wasm.executor import check_destination, install

from .client import NodeClient

SMALL_RESULTS = 8 << 20  # results CARs up to this size are checked in memory


async def download_agreed(session: aiohttp.ClientSession, urls: list[str], job_cid: str, agreed: str,
                          output_dir: Path | None, car: Path | None, scratch: Path) -> Path:
    """Fetch the results CAR from the first of ``urls`` that delivers one hashing to ``agreed``.

    With neither ``output_dir`` nor ``car``, the results are only checked (in ``scratch``).
    """
    errors = []
    root = CID.parse(agreed)
    for url in urls:
        tmp_car = scratch / "results.car"
        staging = scratch / "results"
        shutil.rmtree(staging, ignore_errors=True)
        client = NodeClient(session, url)
        try:
            small = await client.results(job_cid, tmp_car, 0 if car is not None else SMALL_RESULTS)
            if small is not None:  # in memory: blocks checked, DAG complete, then written out if wanted
                blocks = read_complete_car(io.BytesIO(small), root)
                if output_dir is None:
                    return scratch
                export(blocks.__getitem__, root, staging)
            else:
                with open(tmp_car, "rb") as source:
                    unpack_car(source, root, staging, scratch / "unpack")
        except CodError as exc:
            errors.append(str(exc))
            continue
        if car is not None:
            shutil.copyfile(tmp_car, car)
            return car
        if output_dir is None:
            return staging  # checked; the caller keeps nothing
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        local = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=".cod-staging-"))
        local.rmdir()
        shutil.move(str(staging), local)
        install(local, output_dir)
        return output_dir
    raise NodeError(f"no node that agreed could deliver the results: {'; '.join(errors) or 'none reachable'}")


async def fetch_results(row: dict[str, Any], output_dir: Path | None, car: Path | None) -> Path:
    """The results of a job in the requester's records (cod get)."""
    agreed = row["result_cid"]
    if not agreed:
        raise NotFound(f"job {row['job_cid']} has no agreed result ({row['outcome']})")
    if output_dir is not None:
        check_destination(output_dir)
    urls = [a["url"] for a in row["answers"] if a.get("result_cid") == agreed]
    scratch = Path(tempfile.mkdtemp(prefix="cod-get-"))
    try:
        async with aiohttp.ClientSession() as session:
            return await download_agreed(session, urls, row["job_cid"], agreed, output_dir, car, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

"""The download bound: an honest results CAR never exceeds it (measured), and it is what SPEC 11.5 says."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from cod.content.car import write_car
from cod.jobspec import Limits
from verifier.fetch import (CAR_HEADER_MAX, MAX_RESULTS_CAR_BYTES, PER_CHUNK_OVERHEAD, PER_ENTRY_OVERHEAD, BaseSize,
                            results_car_bound)


def test_the_bound_by_hand() -> None:
    # 1 MiB each of stdout, stderr, outputs: 3 MiB of data in 3 chunks; 100000 entries + 6 top-level ones:
    # 64 (header) + 3145728 + 128 (exitCode, trap) + 3 * 128 + 100006 * 1024
    assert results_car_bound(Limits(stdout_bytes=1 << 20, stderr_bytes=1 << 20, output_bytes=1 << 20)) == 105552448
    assert results_car_bound(Limits(output_bytes=1 << 50)) == MAX_RESULTS_CAR_BYTES == 16 << 30
    assert results_car_bound(None) == MAX_RESULTS_CAR_BYTES  # docker: the engine does not enforce the caps


def test_the_bound_with_an_output_base_by_hand() -> None:
    # the same caps and a 5 MiB base of 3 entries (SPEC 11 step 5, 2.4: the caps count neither):
    # 64 + (3145728 + 5242880) + 128 + 8 chunks * 128 + (100006 + 3) * 1024
    caps = Limits(stdout_bytes=1 << 20, stderr_bytes=1 << 20, output_bytes=1 << 20)
    assert results_car_bound(caps, BaseSize(5 << 20, 3)) == 110799040
    assert results_car_bound(caps, BaseSize(0, 0)) == results_car_bound(caps) == 105552448
    assert results_car_bound(caps, BaseSize(1 << 40, 0)) == MAX_RESULTS_CAR_BYTES  # the absolute cap holds
    assert BaseSize.from_json({"bytes": 5, "entries": 1}) == BaseSize(5, 1)
    for junk in (None, [], {"bytes": -1, "entries": 0}, {"bytes": True, "entries": 0}, {"bytes": "5", "entries": 1}):
        assert BaseSize.from_json(junk) is None


def _car_size(tree: Path, tmp: Path) -> int:
    write_car(tree, tmp / "x.car")
    return (tmp / "x.car").stat().st_size


def test_entries_with_the_longest_names_stay_under_the_per_entry_overhead(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(1500):  # 1500 x 255-byte names: over 256 KiB of links, so a HAMT (section 7.2)
        (tree / f"{i:05d}".ljust(255, "n")).touch()
    size = _car_size(tree, tmp_path)
    assert size > 1500 * 255  # the names are in it
    assert size <= CAR_HEADER_MAX + PER_ENTRY_OVERHEAD * (1500 + 1)


def test_chunked_files_stay_under_the_per_chunk_overhead(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    data = 5 * (1 << 20) + 1  # 6 chunks
    (tree / "f").write_bytes(b"\x01" * data)
    assert _car_size(tree, tmp_path) <= CAR_HEADER_MAX + data + PER_CHUNK_OVERHEAD * 6 + PER_ENTRY_OVERHEAD * 2


def test_symlinks_with_the_longest_targets_stay_under_the_bound(tmp_path: Path) -> None:
    # a job's symlink target counts against output_bytes (SPEC 4.5): 1024-byte targets under
    # 255-byte names, so each entry is over PER_ENTRY_OVERHEAD without its target's bytes
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(300):
        os.symlink(f"{i:05d}".ljust(1024, "t"), tree / f"{i:05d}".ljust(255, "n"))
    size = _car_size(tree, tmp_path)
    assert size > PER_ENTRY_OVERHEAD * (300 + 1)  # the targets are what takes it over the entries' overhead
    assert size <= CAR_HEADER_MAX + 300 * 1024 + PER_ENTRY_OVERHEAD * (300 + 1)


# -- a result whose layout no node writes (SPEC 7.1): links in place of the executor's files ---------
@pytest.mark.parametrize("where", ["stdout", "stderr", "exitCode", "trap", "outputs"])
@pytest.mark.parametrize("into", ["output-dir", "car"])
def test_a_result_with_a_link_where_a_node_writes_a_file_is_refused(tmp_path: Path, where: str, into: str) -> None:
    from aiohttp import web

    from cod.content.car import car_bytes
    from cod.content.unixfs import cid_of_tree
    from verifier.fetch import DownloadFailed, download_agreed

    from ..hostile import CAR_TYPE, on_loopback

    tree = tmp_path / "hostile"
    tree.mkdir()
    for name in ("stdout", "stderr", "exitCode", "trap"):
        (tree / name).write_text("0" if name == "exitCode" else "")
    (tree / "outputs").mkdir()
    (tree / "outputs").rmdir() if where == "outputs" else (tree / where).unlink()
    os.symlink("/etc/shadow" if where != "outputs" else os.path.expanduser("~"), tree / where)
    root = cid_of_tree(tree)
    body = car_bytes(tree, root)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=CAR_TYPE)

    async def attempt() -> None:
        runner, url = await on_loopback(handle, 1 << 20)
        try:
            async with aiohttp.ClientSession() as session:
                scratch = tmp_path / "scratch"
                scratch.mkdir()
                with pytest.raises(DownloadFailed) as failed:
                    await download_agreed(session, [url], "bafyjob", str(root),
                                          tmp_path / "out" if into == "output-dir" else None,
                                          tmp_path / "r.car" if into == "car" else None, scratch)
                assert f"{where} is a symlink" in str(failed.value.failures[url]), failed.value.failures
        finally:
            await runner.cleanup()

    asyncio.run(attempt())
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.car").exists()


def test_a_car_target_that_became_a_symlink_is_replaced_never_written_through(tmp_path: Path) -> None:
    """The CLI checks --car before downloading; a link put there meanwhile (or by a library
    caller) is replaced by the CAR, and the file it pointed at keeps its bytes."""
    from aiohttp import web

    from cod.content.car import car_bytes
    from cod.content.unixfs import cid_of_tree
    from verifier.fetch import download_agreed

    from ..hostile import CAR_TYPE, on_loopback

    tree = tmp_path / "honest"
    tree.mkdir()
    (tree / "stdout").write_text("hi\n")
    (tree / "stderr").write_text("")
    (tree / "exitCode").write_text("0")
    root = cid_of_tree(tree)
    body = car_bytes(tree, root)
    secret = tmp_path / "authorized_keys"
    secret.write_text("ssh-ed25519 KEEP\n")
    car = tmp_path / "r.car"
    os.symlink(secret, car)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=CAR_TYPE)

    async def attempt() -> None:
        runner, url = await on_loopback(handle, 1 << 20)
        try:
            async with aiohttp.ClientSession() as session:
                (tmp_path / "scratch").mkdir()
                await download_agreed(session, [url], "bafyjob", str(root), None, car, tmp_path / "scratch")
        finally:
            await runner.cleanup()

    asyncio.run(attempt())
    assert secret.read_text() == "ssh-ed25519 KEEP\n"
    assert not car.is_symlink() and car.read_bytes() == body

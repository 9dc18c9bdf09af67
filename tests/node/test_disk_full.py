"""A node on a full disk (Stage 9 point 8), on real small tmpfs mounts: an upload, a job, its
results, the job database and the node key each meet ENOSPC for real. Every refusal is a clear
JSON error (507 InsufficientStorage), nothing is leaked (no queue place, no half-written key, no
job left `running`), and once the disk is freed the node works as before.

Mounting needs root (``mount -t tmpfs``); where it is not permitted the tests are skipped and
say why."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cod import JobSpec, Limits, module_cid
from cod.content import dagpb
from cod.content.dagpb import Link
from cod.errors import CodError
from cod.identity import KEY_FILE
from cod.jobspec import Input
from cod.node import disk as disk_kinds
from cod.node.server import start_node

from ..helpers import VECTORS
from ..node_kit import CAR_TYPE, WAIT_FOR_CHANGE_WAT, car, pb, put, put_module, raw, submit_spec, until_state, wat

HELLO = (VECTORS / "hello.wasm").read_bytes()


def _mount(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where} (needs root): {proc.stderr.strip() or proc.returncode}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own, unmounted after it."""
    where = tmp_path / "disk"
    _mount(where, "2m")
    try:
        yield where
    finally:
        _umount(where)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte with one file (removed to free the disk again)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = 64 << 10
        while chunk:
            try:
                os.write(fd, bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def _truncate_wal(data_dir: Path) -> None:
    """Checkpoint the node's database and truncate its WAL (a real SQLite operation), so its
    next write must grow a file: on a full disk that write fails, whatever SQLite reused before."""
    with sqlite3.connect(data_dir / "jobs.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _storage_error(status: int, body: Any) -> None:
    assert status == 507, (status, body)
    assert body["error"] == "InsufficientStorage" and "disk" in body["message"] and body["hint"], body


async def _post(http: aiohttp.ClientSession, url: str, spec: JobSpec) -> tuple[int, Any]:
    async with http.post(url + "/v1/jobs?wait=1", json={"spec": spec.to_dict()}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_post_on_a_full_disk_is_507_and_leaks_no_place(disk: Path, http: aiohttp.ClientSession) -> None:
    """The job database cannot take the job: 507, and the queue place is not kept (the node
    used to answer 429 for ever after the disk was freed)."""
    data = disk / "node"
    node = await start_node(data, concurrency=1, queue_size=0)  # one place in all
    try:
        await put(http, node.url, module_cid(HELLO), HELLO, "application/octet-stream")
        _truncate_wal(data)
        filler = fill(disk)
        for n in range(3):
            status, body = await _post(http, node.url, JobSpec(module=module_cid(HELLO), args=("hello", str(n))))
            _storage_error(status, body)
        assert node.node.active == 0
        filler.unlink()
        status, body = await _post(http, node.url, JobSpec(module=module_cid(HELLO), args=("hello", "after")))
        assert status == 200 and body["state"] == "done", body
    finally:
        await node.stop()


@pytest.mark.parametrize("kind", ["file", "car spooled, not unpacked"])
async def test_an_upload_on_a_full_disk_is_507_and_keeps_nothing(disk: Path, http: aiohttp.ClientSession,
                                                                 kind: str) -> None:
    """A file upload meets the full disk while it is spooled; a CAR upload (room left for its
    spool, not for its tree) while it is unpacked. Both: 507, nothing kept, then stored."""
    data = disk / "node"
    node = await start_node(data, concurrency=1)
    try:
        content = bytes(range(256)) * 64  # 16 KiB
        if kind == "file":
            cid, body, content_type = module_cid(content), content, "application/octet-stream"
        else:
            leaf = raw(content)
            root = pb(dagpb.DIRECTORY, [Link(leaf[0], b"f", len(content))])
            cid, body, content_type = str(root[0]), car([root[0]], [root, leaf]), CAR_TYPE
        filler = fill(disk)
        if kind != "file":
            os.truncate(filler, filler.stat().st_size - 20480)  # room for the CAR's spool alone
        status, answer = await put(http, node.url, cid, body, content_type)
        _storage_error(status, answer)
        assert [sorted(p.name for p in (data / "blobs" / d).iterdir()) for d in ("files", "trees", "tmp")] == [[]] * 3
        filler.unlink()
        status, answer = await put(http, node.url, cid, body, content_type)
        assert status == 201, answer
    finally:
        await node.stop()


async def test_an_upload_on_a_read_only_disk_is_a_storage_error_not_a_500(
        disk: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """A second round of point 8: the file system of the data dir turns read-only under a running
    node (an ext4 that remounts itself ro after an I/O error does this), here the upload spool
    bind-mounted read-only. The upload must be refused as a storage error that says so (507, not
    a 500 "the node failed"), with no traceback, and be stored once the disk is writable again."""
    data = disk / "node"
    node = await start_node(data, concurrency=1)
    spool = data / "blobs" / "tmp"
    try:
        for args in (["--bind", str(spool), str(spool)], ["-o", "remount,bind,ro", str(spool)]):
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot bind-mount read-only: {done.stderr.strip()}")
        content = bytes(range(256)) * 64
        status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
        assert status == 507 and "read-only" in answer["message"], (status, answer)
        assert not [r for r in caplog.records if r.exc_info], caplog.text
        _umount(spool)
        status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
        assert status == 201, answer
    finally:
        _umount(spool)
        await node.stop()


async def test_an_upload_into_an_immutable_spool_is_a_storage_error_not_a_500(
        disk: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """The upload spool made immutable (``chattr +i``: even root gets EPERM creating a file in it)
    is a disk the node cannot write, not a node bug: 507 saying so, no traceback, and the upload
    is stored once the flag is cleared."""
    data = disk / "node"
    node = await start_node(data, concurrency=1)
    spool = data / "blobs" / "tmp"
    try:
        done = subprocess.run(["chattr", "+i", str(spool)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a directory immutable here: {done.stderr.strip()}")
        content = bytes(range(256)) * 64
        status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
        assert status == 507 and answer["error"] == "InsufficientStorage", (status, answer)
        assert "not writable" in answer["message"] and "chattr -i" in answer["hint"], answer
        assert not [r for r in caplog.records if r.exc_info], caplog.text
        subprocess.run(["chattr", "-i", str(spool)], check=True)
        status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
        assert status == 201, answer
    finally:
        subprocess.run(["chattr", "-i", str(spool)], capture_output=True)
        await node.stop()


def _read_only(where: Path) -> None:
    """Bind-mount ``where`` on itself read-only: new opens under it meet EROFS, as on a file system
    remounted read-only (files already open keep their own mount)."""
    for args in (["--bind", str(where), str(where)], ["-o", "remount,bind,ro", str(where)]):
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            _umount(where)
            pytest.skip(f"cannot bind-mount read-only: {done.stderr.strip()}")


def test_sqlites_io_error_on_a_read_only_mount_is_a_read_only_disk(disk: Path) -> None:
    """On a file system remounted read-only under it, SQLite's write fails as SQLITE_IOERR_WRITE
    (778 = 10 | 3 << 8, sqlite3.h), "disk I/O error", which names no cause: the mount does. On a
    writable mount the same error is no verdict on the disk (it stays a 500)."""
    home = disk / "node"
    home.mkdir()
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = 778
    assert disk_kinds.unwritable(error, home) is None
    _read_only(home)
    try:
        assert disk_kinds.unwritable(error, home) == disk_kinds.READ_ONLY
        assert disk_kinds.unwritable(error) is None  # without the data directory, nothing to ask
        assert disk_kinds.unwritable(OSError(errno.EROFS, "Read-only file system")) == disk_kinds.READ_ONLY
    finally:
        _umount(home)


async def test_a_read_only_data_dir_serves_what_it_stores_and_refuses_writes_clearly(
        disk: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """The whole data directory turns read-only: what is stored is still served (the module, by
    GET), an upload and a job are refused as a read-only disk (507; the job fails, never signed),
    no traceback is logged, and once the disk is writable both succeed."""
    data = disk / "node"
    node = await start_node(data, concurrency=1)
    try:
        hello = await put_module(http, node.url, HELLO)
        _read_only(data)
        try:
            async with http.get(f"{node.url}/v1/blobs/{hello}") as resp:
                assert resp.status == 200 and await resp.read() == HELLO
            content = bytes(range(256)) * 64
            status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
            assert status == 507 and answer["error"] == "InsufficientStorage", (status, answer)
            assert "read-only" in answer["message"] and "writable" in answer["hint"], answer
            status, job = await _post(http, node.url, JobSpec(module=hello, args=("hello", "ro")))
            if status == 200:  # the job database (open before) took the job; its results could not be written
                assert job["state"] == "failed" and job["statement"] is None, job
                assert job["error"]["error"] == "InsufficientStorage" and "read-only" in job["error"]["message"], job
            else:
                assert status == 507 and "read-only" in job["message"], (status, job)
            assert not [r for r in caplog.records if r.exc_info], caplog.text
        finally:
            _umount(data)
        status, answer = await put(http, node.url, module_cid(content), content, "application/octet-stream")
        assert status == 201, answer
        status, job = await _post(http, node.url, JobSpec(module=hello, args=("hello", "ro")))
        assert status == 200 and job["state"] == "done", job
    finally:
        await node.stop()


async def test_a_job_whose_results_meet_a_full_disk_fails_clearly(disk: Path, http: aiohttp.ClientSession,
                                                                   tmp_path: Path) -> None:
    """The executor cannot write the results: the job fails (never signed), the node serves on."""
    data = disk / "node"
    trigger = tmp_path / "trigger"
    trigger.mkdir()
    (trigger / "f").write_bytes(b"A")  # the guest waits while the first byte is "A"
    node = await start_node(data, concurrency=1, allow_local=[trigger])
    try:
        module = await put_module(http, node.url, wat(WAIT_FOR_CHANGE_WAT))
        spec = JobSpec(module=module, inputs=(Input(local=str(trigger), path="/inputs"),),
                       limits=Limits(timeout_ms=60_000))
        status, body = await submit_spec(http, node.url, spec)
        assert status == 202, body
        await until_state(http, node.url, str(spec.cid), {"running"})
        filler = fill(disk)
        (trigger / "f").write_bytes(b"B" * 64)  # the guest prints 64 bytes: a page the disk lacks
        job = await until_state(http, node.url, str(spec.cid), {"done", "failed"})
        assert job["state"] == "failed" and job["statement"] is None, job
        assert "No space left" in job["error"]["message"] or "disk" in job["error"]["message"], job
        filler.unlink()
        status, body = await _post(http, node.url, JobSpec(module=module_cid(HELLO), args=("h",)))
        assert status == 409  # the node answers as ever (it lacks hello.wasm)
    finally:
        await node.stop()


async def test_a_full_disk_between_results_and_record_never_leaves_a_job_running(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """The results are written (on a disk of their own) and then the job database's disk is
    full: the job used to stay `running` for ever and could not be cancelled. It ends failed
    with a clear error, keeps no results, and the failure is recorded once the disk is freed."""
    disk = tmp_path / "db-disk"
    _mount(disk, "2m")
    data = disk / "node"
    results = data / "results"
    try:
        _mount(results, "2m")  # the results on a disk of their own: they are written, the record is not
        try:
            trigger = tmp_path / "trigger"
            trigger.mkdir()
            (trigger / "f").write_bytes(b"A")
            node = await start_node(data, concurrency=1, allow_local=[trigger])
            try:
                module = await put_module(http, node.url, wat(WAIT_FOR_CHANGE_WAT))
                spec = JobSpec(module=module, inputs=(Input(local=str(trigger), path="/inputs"),),
                               limits=Limits(timeout_ms=60_000))
                job = str(spec.cid)
                status, body = await submit_spec(http, node.url, spec)
                assert status == 202, body
                await until_state(http, node.url, job, {"running"})
                _truncate_wal(data)
                filler = fill(disk)
                (trigger / "f").write_bytes(b"B")  # the guest ends; its results fit, its record does not
                final = await until_state(http, node.url, job, {"done", "failed"}, timeout=30)
                assert final["state"] == "failed" and final["statement"] is None, final
                assert final["error"]["error"] == "InsufficientStorage", final
                assert "disk" in final["error"]["message"], final
                async with http.get(f"{node.url}/v1/jobs/{job}/results/stdout") as resp:
                    assert resp.status == 404
                async with http.delete(f"{node.url}/v1/jobs/{job}") as resp:
                    assert resp.status == 409 and (await resp.json())["error"] == "NotCancellable"
                assert node.node.active == 0
                filler.unlink()
                async with http.get(f"{node.url}/v1/jobs/{job}") as resp:  # recorded now the disk has room
                    assert (await resp.json())["state"] == "failed"
            finally:
                await node.stop()
            with sqlite3.connect(data / "jobs.db") as db:
                ((state, error),) = db.execute("SELECT state, error FROM jobs WHERE job_cid = ?", [job])
            assert state == "failed" and "InsufficientStorage" in error, (state, error)
        finally:
            _umount(results)
    finally:
        _umount(disk)


async def test_a_first_start_on_a_full_disk_leaves_no_empty_key(disk: Path, http: aiohttp.ClientSession) -> None:
    """The key is written to a temporary file, synced and renamed: a start on a full disk fails
    clearly and leaves no node.key, and the next start (disk freed) makes one."""
    data = disk / "node"
    filler = fill(disk)
    with pytest.raises(CodError) as refused:
        await start_node(data, concurrency=1)
    assert "disk" in refused.value.message or "No space" in refused.value.message, refused.value.message
    assert not (data / KEY_FILE).exists()
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []  # no temporary key left either
    filler.unlink()
    node = await start_node(data, concurrency=1)
    try:
        assert len((data / KEY_FILE).read_bytes()) == 32
    finally:
        await node.stop()


@pytest.mark.parametrize("size", [0, 7])
async def test_an_empty_or_torn_key_of_an_old_version_says_what_to_do(tmp_path: Path, size: int) -> None:
    """cod before this stage could leave an empty (or torn) node.key on a full disk; such a key
    never signed anything, and the error says so and what to do."""
    data = tmp_path / "node"
    data.mkdir()
    key = data / KEY_FILE
    key.write_bytes(bytes(size))
    key.chmod(0o600)
    with pytest.raises(CodError) as refused:
        await start_node(data, concurrency=1)
    message, hint = refused.value.message, refused.value.hint or ""
    assert f"holds {size} bytes" in message and str(key) in message, message
    assert f"rm {key}" in hint and "new node ID" in hint, hint

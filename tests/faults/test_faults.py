"""Faults between a requester and compute nodes on hosts of their own (network namespaces):
packet loss, a partition, a slow link, latency, and nodes killed mid-upload and mid-job.

Every scenario checks three things: the outcome is the right one (verified on the expected
result CID, with a spare standing in where there is one; incomplete when too few nodes
are left), the verify call returns within the spec's deadline plus a margin (a bound, not a
speed test), and a result the faulted node stored before the fault is still served and
still hashes to its CID after the fault heals or the node restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from verifier import Records, Verification, verify

from .conftest import Figures
from .jobs import (BOUND_S, LONG_ITERATIONS, RETURN_MARGIN_S, Expected, big_wordcount_job, busy_job, served_result_cid,
                   stored_wordcount)
from .netns import PORT, ROOT, Fabric, Host, run
from .proxy import DelayProxy

pytestmark = pytest.mark.slow

LOSS_PERCENT = 5
PARTITION_AFTER_S = 1.0  # the cut lasts this long past the job's end: the answer is held, TCP backs off
SLOW_RATE = "8mbit"  # a 3 MiB upload then takes about 3 s
KILL_RATE = "4mbit"  # slow enough to kill the node with most of the upload still to come
KILL_AFTER_BYTES = 1 << 20
LATENCY_S = 0.2
POLL_S = 0.05
POLL_LIMIT_S = 60.0
ORPHAN_BOUND_S = 5.0  # an executor must notice its node's death well within the long job's 20 s
SHORT_DEADLINE_S = 15.0  # a deadline of their own keeps the partition scenarios short


async def _store_before(host: Host, records: Records, tmp: Path) -> tuple[str, str]:
    """Have ``host`` run and keep the vector word count before its fault: (job CID, result CID)."""
    job, expected = stored_wordcount()
    kept = await verify(job, [host.url], 1, records=records)
    assert (kept.outcome, kept.result_cid) == ("unverifiable", expected)
    return str(job.spec.cid), expected


async def _still_served(host: Host, stored: tuple[str, str], tmp: Path) -> None:
    job_cid, expected = stored
    assert await served_result_cid(host.url, job_cid, tmp) == expected


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check()`` until it holds; fail after POLL_LIMIT_S."""
    stop = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < stop:
        if await check():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"never saw {what}")


async def _job_state(url: str, job_cid: str) -> str | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/jobs/{job_cid}",
                                                             timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return str((await resp.json())["state"]) if resp.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def _running(url: str, job_cid: str) -> None:
    async def check() -> bool:
        return await _job_state(url, job_cid) == "running"
    await _until(check, f"job {job_cid} running on {url}")


async def _cod(tmp: Path, *args: str) -> tuple[int, str, str]:
    """Run the `cod` command line (records under ``tmp``), bounded by BOUND_S; exit code,
    stdout, stderr. The event loop keeps running meanwhile (a proxy may live in it)."""
    env = dict(os.environ, COD_HOME=str(tmp / "cod-home"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cod", *args, cwd=tmp, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BOUND_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _first_choice(records: Records, host: Host) -> None:
    """Give ``host`` a good record, so the verifier picks it among the first N (not as a spare)."""
    records.see(host.node_id, host.url, "")
    records.bump(host.node_id, "agreed")


async def _timed_verify(expected: Expected, urls: list[str], n: int, records: Records,
                        **options: Any) -> tuple[Verification, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(verify(expected.job, urls, n, records=records, **options), BOUND_S)
    return result, time.monotonic() - started


def _record(figures: Figures, scenario: str, result: Verification, expected: str, elapsed: float,
            fault: str, n: int) -> None:
    figures.add(scenario=scenario, outcome=result.outcome, expected=expected, elapsed_s=f"{elapsed:.1f}",
                bound_s=f"{BOUND_S:.0f}", answers=len(result.answers), failed=sum(not a.valid for a in result.answers),
                spares=max(0, len(result.answers) - n), fault=fault)


def _verified_on(result: Verification, expected: Expected, hosts: list[Host]) -> None:
    assert result.outcome == "verified", (result.note, [a.error for a in result.answers])
    assert result.result_cid == expected.result_cid and result.result_checked
    assert {a.node_id for a in result.answers if a.valid} == {h.node_id for h in hosts}


async def test_five_percent_loss_into_a_node(fabric: Fabric, records: Records, figures: Figures,
                                             tmp_path: Path) -> None:
    """5% of the packets into one node are dropped while it takes a 3 MiB upload, runs the job
    and serves the results: TCP recovers, the job verifies on all three."""
    hosts = fabric.add(3)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    expected = big_wordcount_job(tmp_path)
    victim.loss(LOSS_PERCENT)
    try:
        result, elapsed = await _timed_verify(expected, [h.url for h in hosts], 3, records)
        into, dropped = victim.counters()
    finally:
        victim.heal()
    _record(figures, "5% loss into a node", result, "verified", elapsed,
            f"{dropped} of {into} pkts into the node dropped", 3)
    assert into > 1000 and dropped > 0  # the upload went through the lossy link and lost packets
    _verified_on(result, expected, hosts)
    assert elapsed < BOUND_S
    await _still_served(victim, stored, tmp_path)


async def test_partition_during_a_job_then_healed(fabric: Fabric, records: Records, figures: Figures,
                                                  tmp_path: Path) -> None:
    """One node is cut off (both ways) while its job runs, and reconnected a second after the
    job ended there (watched on its disk): its answer was held by the partition, its connection
    survives, the answer arrives after the heal, all three verify."""
    hosts = fabric.add(3)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    expected = busy_job(tmp_path)
    job_cid = str(expected.job.spec.cid)
    verifying = asyncio.create_task(_timed_verify(expected, [h.url for h in hosts], 3, records))
    try:
        await _running(victim.url, job_cid)
        victim.partition()

        async def finished() -> bool:
            return victim.job_state_on_disk(job_cid) == "done"
        await _until(finished, f"job {job_cid} done on the cut-off node")
        await asyncio.sleep(PARTITION_AFTER_S)
        dropped = sum(victim.counters())
    finally:
        victim.heal()
    result, elapsed = await verifying
    _record(figures, "partition during a job, healed 1 s after it", result, "verified", elapsed,
            f"{dropped} pkts dropped", 3)
    assert dropped > 0
    _verified_on(result, expected, hosts)
    assert elapsed < BOUND_S
    await _still_served(victim, stored, tmp_path)


async def test_partition_before_the_job_uses_the_spare(fabric: Fabric, records: Records, figures: Figures,
                                                       tmp_path: Path) -> None:
    """A node cut off before the verification starts does not answer /v1/info: the three
    others run the job; after the heal the cut-off node still serves what it had."""
    hosts = fabric.add(4)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    _first_choice(records, victim)
    expected = busy_job(tmp_path)
    victim.partition()
    try:
        result, elapsed = await _timed_verify(expected, [h.url for h in hosts], 3, records)
        dropped = sum(victim.counters())
    finally:
        victim.heal()
    _record(figures, "partition before the job (4 nodes)", result, "verified (3 reachable)", elapsed,
            f"{dropped} pkts dropped", 3)
    assert dropped > 0
    _verified_on(result, expected, hosts[1:])
    assert victim.node_id not in {a.node_id for a in result.answers}  # never chosen: it did not answer
    assert elapsed < BOUND_S
    await _still_served(victim, stored, tmp_path)


async def test_partition_that_does_not_heal_is_replaced_by_a_spare(fabric: Fabric, records: Records,
                                                                   figures: Figures, tmp_path: Path) -> None:
    """A node cut off for good while its job runs: the spare should stand in before the deadline."""
    hosts = fabric.add(4)
    victim = hosts[0]
    _first_choice(records, victim)
    expected = busy_job(tmp_path)
    job_cid = str(expected.job.spec.cid)
    verifying = asyncio.create_task(_timed_verify(expected, [h.url for h in hosts], 3, records,
                                                  deadline_s=SHORT_DEADLINE_S))
    try:
        await _running(victim.url, job_cid)
        victim.partition()
        result, elapsed = await verifying
        dropped = sum(victim.counters())
    finally:
        victim.heal()
    _record(figures, "partition during a job, not healed (4 nodes)", result, "verified (spare)", elapsed,
            f"{dropped} pkts dropped; deadline {SHORT_DEADLINE_S:.0f} s", 3)
    assert elapsed < SHORT_DEADLINE_S + RETURN_MARGIN_S
    _verified_on(result, expected, hosts[1:])


async def test_partition_during_the_download_still_ends_by_the_deadline(fabric: Fabric, records: Records,
                                                                       figures: Figures, tmp_path: Path) -> None:
    """All nodes answer, then are cut off just as the requester fetches the agreed results."""
    hosts = fabric.add(3)
    expected = busy_job(tmp_path)

    def cut_before_download(step: str) -> None:
        if step.startswith("Downloading"):
            for host in hosts:
                host.partition()
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(verify(expected.job, [h.url for h in hosts], 3, records=records,
                                               progress=cut_before_download, deadline_s=SHORT_DEADLINE_S),
                                        SHORT_DEADLINE_S + RETURN_MARGIN_S)
    except asyncio.TimeoutError:
        figures.add(scenario="partition during the results download", outcome="(still waiting)",
                    expected="incomplete", elapsed_s=f"{time.monotonic() - started:.1f}",
                    bound_s=f"{SHORT_DEADLINE_S + RETURN_MARGIN_S:.0f}", fault="all 3 cut off after answering")
        raise
    finally:
        for host in hosts:
            host.heal()
    elapsed = time.monotonic() - started
    _record(figures, "partition during the results download", result, "incomplete", elapsed,
            "all 3 cut off after answering", 3)
    assert result.outcome == "incomplete" and not result.result_checked
    assert elapsed < SHORT_DEADLINE_S + RETURN_MARGIN_S


async def test_slow_link_during_an_upload(fabric: Fabric, records: Records, figures: Figures,
                                          tmp_path: Path) -> None:
    """A token bucket of 8 Mbit/s on one node's link while 3 MiB of inputs go up to it."""
    hosts = fabric.add(3)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    expected = big_wordcount_job(tmp_path)
    sent = victim.sent_bytes()
    victim.slow(SLOW_RATE)
    try:
        result, elapsed = await _timed_verify(expected, [h.url for h in hosts], 3, records)
        shaped = run("tc", "-s", "qdisc", "show", "dev", victim.veth)
    finally:
        victim.unslow()
    overlimits = int(shaped.split("overlimits")[1].split()[0])
    uploaded = victim.sent_bytes() - sent
    _record(figures, f"slow link ({SLOW_RATE} tbf), 3 MiB upload", result, "verified", elapsed,
            f"{uploaded >> 10} KiB through the bucket, {overlimits} overlimits", 3)
    assert uploaded > (3 << 20) and overlimits > 0  # the upload went through the shaped link
    _verified_on(result, expected, hosts)
    assert elapsed < BOUND_S
    await _still_served(victim, stored, tmp_path)


async def test_latency_through_a_delaying_proxy(fabric: Fabric, records: Records, figures: Figures,
                                                tmp_path: Path) -> None:
    """One node answers through a proxy that holds every byte 200 ms each way; the requester
    is the command line (`cod run --verify 3 --node ... --json`), as a user runs it."""
    hosts = fabric.add(3)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    expected = busy_job(tmp_path)
    module = tmp_path / "cli" / expected.job.spec.args[0]
    module.parent.mkdir()
    module.write_bytes(expected.job.wasm)
    proxy = await DelayProxy(victim.address, PORT, LATENCY_S).start()
    try:
        urls = [proxy.url] + [h.url for h in hosts[1:]]
        started = time.monotonic()
        code, out, err = await _cod(tmp_path, "run", "--verify", "3", *(f"--node={u}" for u in urls),
                                    "--timeout", f"{expected.job.spec.limits.timeout_ms // 1000}s", "--json",
                                    str(module))
        elapsed = time.monotonic() - started
    finally:
        await proxy.stop()
    report = json.loads(out) if code == 0 else {}
    answers = report.get("nodes", [])
    figures.add(scenario="200 ms latency proxy (cod run --verify)", outcome=report.get("outcome", f"exit {code}"),
                expected="verified", elapsed_s=f"{elapsed:.1f}", bound_s=f"{BOUND_S:.0f}", answers=len(answers),
                failed=sum(not a["signature_valid"] for a in answers), spares=max(0, len(answers) - 3),
                fault=f"{proxy.connections} connections, {proxy.chunks} chunks delayed")
    assert code == 0, err
    assert report["job_cid"] == str(expected.job.spec.cid)  # the command line built the same job
    assert (report["outcome"], report["result_cid"]) == ("verified", expected.result_cid)
    assert {a["node_id"] for a in answers if a["signature_valid"]} == {h.node_id for h in hosts}
    assert any(a["url"] == proxy.url and a["result_cid"] == expected.result_cid for a in answers)
    assert proxy.chunks > 0
    assert elapsed < BOUND_S
    await _still_served(victim, stored, tmp_path)


async def test_node_killed_during_an_upload(fabric: Fabric, records: Records, figures: Figures,
                                            tmp_path: Path) -> None:
    """SIGKILL while a 3 MiB upload is a third through: the spare takes over, the restarted
    node kept what it had and nothing of the half upload."""
    hosts = fabric.add(4)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    _first_choice(records, victim)
    expected = big_wordcount_job(tmp_path)
    victim.slow(KILL_RATE)
    sent = victim.sent_bytes()
    verifying = asyncio.create_task(_timed_verify(expected, [h.url for h in hosts], 3, records))

    async def uploading() -> bool:
        return victim.sent_bytes() - sent > KILL_AFTER_BYTES
    try:
        await _until(uploading, "the upload under way")
        victim.kill()
    finally:
        victim.unslow()
    result, elapsed = await verifying
    _record(figures, "SIGKILL during an upload (4 nodes)", result, "verified (spare)", elapsed,
            f"killed after {(victim.sent_bytes() - sent) >> 10} KiB of 3 MiB", 3)
    _verified_on(result, expected, hosts[1:])
    (dead,) = [a for a in result.answers if a.node_id == victim.node_id]
    assert not dead.valid and dead.error
    assert elapsed < BOUND_S
    victim.start()
    victim.wait_ready()
    await _still_served(victim, stored, tmp_path)
    (inputs,) = expected.job.spec.inputs
    async with aiohttp.ClientSession() as http, http.head(f"{victim.url}/v1/blobs/{inputs.cid}") as resp:
        assert resp.status == 404  # a half upload is never kept
    again = await verify(expected.job, [victim.url, hosts[1].url], 2, records=Records(tmp_path / "again.db"))
    assert (again.outcome, again.result_cid) == ("verified", expected.result_cid)  # it takes the upload anew


@pytest.mark.parametrize("spare", [True, False], ids=["spare", "no-spare"])
async def test_node_killed_during_a_job(spare: bool, fabric: Fabric, records: Records, figures: Figures,
                                        tmp_path: Path) -> None:
    """SIGKILL while the job runs: verified by the spare, or incomplete without one; the
    restarted node serves what it had and reports the interrupted job failed."""
    hosts = fabric.add(4 if spare else 3)
    victim = hosts[0]
    stored = await _store_before(victim, records, tmp_path)
    _first_choice(records, victim)
    expected = busy_job(tmp_path)
    job_cid = str(expected.job.spec.cid)
    verifying = asyncio.create_task(_timed_verify(expected, [h.url for h in hosts], 3, records))
    await _running(victim.url, job_cid)
    victim.kill()
    result, elapsed = await verifying
    outcome = "verified" if spare else "incomplete"
    _record(figures, f"SIGKILL during a job ({len(hosts)} nodes)", result, outcome + (" (spare)" if spare else ""),
            elapsed, "node and its executor killed", 3)
    if spare:
        _verified_on(result, expected, hosts[1:])
    else:
        assert result.outcome == "incomplete" and result.result_cid is None
    (dead,) = [a for a in result.answers if a.node_id == victim.node_id]
    assert not dead.valid and dead.error
    assert elapsed < BOUND_S
    victim.start()
    victim.wait_ready()
    await _still_served(victim, stored, tmp_path)
    assert await _job_state(victim.url, job_cid) == "failed"  # SPEC 9.2: running jobs are failed on restart


async def test_executor_does_not_outlive_its_killed_node(fabric: Fabric, records: Records, figures: Figures,
                                                         tmp_path: Path) -> None:
    """SIGKILL of the node alone (not of its host): its executor must not run on orphaned."""
    (host,) = fabric.add(1)
    expected = busy_job(tmp_path, LONG_ITERATIONS)
    job_cid = str(expected.job.spec.cid)
    verifying = asyncio.create_task(_timed_verify(expected, [host.url], 1, records))
    await _running(host.url, job_cid)
    host.kill(whole_host=False)
    result, _ = await verifying
    assert result.outcome == "incomplete"
    stop = time.monotonic() + ORPHAN_BOUND_S
    while host.leftovers() and time.monotonic() < stop:
        await asyncio.sleep(POLL_S)
    left = host.leftovers()
    figures.add(scenario="SIGKILL of the node only (executor left?)", outcome=f"{len(left)} orphan(s)",
                expected="0 orphans", elapsed_s=f"{ORPHAN_BOUND_S:.1f}", bound_s=f"{ORPHAN_BOUND_S:.0f}",
                answers=len(result.answers), failed=sum(not a.valid for a in result.answers), spares=0,
                fault="node SIGKILLed, workers not")
    assert left == []

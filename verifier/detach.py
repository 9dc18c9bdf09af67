"""Detached verification: submit a job to N nodes now, collect and compare their answers later.

``cod run --verify N --detach`` uploads what each node lacks, submits the job without waiting
and records a run with outcome ``submitted`` naming the N nodes. ``cod get``/``cod logs``
(``collect``) later read each node's job record (``GET /v1/jobs/{cid}``), check every signed
statement exactly as an attached run does (``verify.accept``), judge them by the same rules
(``verify._judge``: no spares are asked, so a node that failed makes the run incomplete),
record the outcome as a new run, and fetch the agreed result. Nothing about verification is
weaker for having waited: the statements are signed, and the result is hashed on arrival.

A ``running`` run (an attached run recorded before its nodes were asked, whose requester
stopped before it ended: killed, or its machine gone) is collected the same way, its row
completed in place. ``cancel`` stops a detached or running run on its nodes (``cod cancel``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cod.errors import BadSignature, CodError, NodeBusy, NodeError
from cod.jobspec import JobSpec
from cod.local import PreparedJob

from .client import MissingBlobs, NodeClient
from .fetch import BaseSize
from .jobview import recorded_view
from .outcomes import CANCELLED, SUBMITTED, UNFINISHED
from .reputation import Records, now
from .verify import (CANCEL_TIMEOUT_S, DEADLINE_MARGIN, DOWNLOAD_GRACE_S, Answer, NotEnoughNodes, Progress, Requester,
                     Verification, _candidates, _download, _judge, _remember, _Uploads, accept, check_quorum,
                     judge_claims, judged_extra, measure_base)

COLLECTABLE = (SUBMITTED, UNFINISHED)
FINISHED = "finished before the cancel"
"""What cancel records of a node whose job was already done or failed (409 NotCancellable)."""
"""Latest outcomes of a run whose answers are still on the nodes (collect, cancel)."""

SUBMIT_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.25
MAX_POLL_INTERVAL_S = 2.0


async def submit(job: PreparedJob, urls: list[str], n: int, *, quorum: int | None = None,
                 records: Records | None = None, progress: Progress = lambda step: None) -> dict[str, Any]:
    """Submit ``job`` to ``n`` nodes among ``urls`` without waiting; returns the job view of the
    recorded ``submitted`` run. NotEnoughNodes, before anything is uploaded, as for verify."""
    check_quorum(n, quorum)
    job_cid = str(job.spec.cid)
    spec = job.spec.to_dict()
    scratch = Path(tempfile.mkdtemp(prefix="cod-detach-"))
    try:
        async with Requester(records) as requester:
            records = requester.records
            unique = list(dict.fromkeys(urls))
            progress(f"Checking {len(unique)} node(s)")
            candidates, unreachable = await _candidates(requester, unique, job, records)
            if len(candidates) < n:
                raise NotEnoughNodes(len(candidates), len(unique), n, unreachable)
            uploads = _Uploads(job, scratch)
            base = await asyncio.to_thread(measure_base, job)
            progress(f"Submitting to {n} node(s)")
            started = now()
            answers = await asyncio.gather(*(_submit_one(client, Answer(info.node_id, client.url, info.profile),
                                                         uploads, spec, job_cid)
                                             for client, info in candidates[:n]))
            records.record_run(job_cid, started_at=started, finished_at=None, outcome=SUBMITTED,
                               result_cid=None, n=n, quorum=quorum or 0, spec=spec,
                               answers=[dict(asdict(a), submitted=a.error is None) for a in answers],
                               note="submitted; cod get collects the answers",
                               extra={"detached": True,
                                      "unreachable": [{"url": u, "reason": r} for u, r in unreachable],
                                      **({"output_base": base.to_json()} if base is not None else {})})
            view = recorded_view(records, job_cid, with_output=False)
            assert view is not None
            return view
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _submit_one(client: NodeClient, answer: Answer, uploads: _Uploads, spec: dict[str, Any],
                      job_cid: str) -> Answer:
    uploaded = False
    try:
        while True:
            try:
                await client.submit(spec, job_cid, timeout=SUBMIT_TIMEOUT_S, wait=False)
                return answer
            except MissingBlobs as lacking:
                if uploaded:
                    raise
                await uploads.upload(client, lacking.missing)
                uploaded = True
    except NodeBusy as busy:
        answer.error = f"busy: {busy.message}"
    except CodError as exc:
        answer.error = str(exc)
    return answer


async def collect(records: Records, job_cid: str, output_dir: Path, *, wait_s: float | None = None,
                  progress: Progress = lambda step: None, referee: str = "self") -> Verification | None:
    """Collect the answers of a detached run of ``job_cid``, judge them, record the outcome and
    fetch the agreed result into ``output_dir``. None when the job's latest run is not a
    detached one still to collect. Waits for the nodes up to ``wait_s`` (default: the job's
    timeout and DEADLINE_MARGIN); a node still busy then counts as giving no answer. Disputed
    claims are refereed as verify does (``referee`` "self", SPEC 11.3), the module and inputs
    fetched by CID from the nodes that signed."""
    run = records.latest_run(job_cid)
    if run is None or run["outcome"] not in COLLECTABLE:
        return None
    job_row = records.job(job_cid)
    assert job_row is not None
    spec = JobSpec.from_dict(job_row["spec"])
    prepared = PreparedJob(spec, b"")
    base = BaseSize.from_json((run.get("extra") or {}).get("output_base"))
    span = wait_s if wait_s is not None else spec.limits.timeout_ms / 1000 + DEADLINE_MARGIN
    started = now()
    scratch = Path(tempfile.mkdtemp(prefix="cod-collect-"))
    try:
        async with Requester(records) as requester:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + span
            progress(f"Collecting the answers of {len(run['answers'])} node(s)")
            answers = await asyncio.gather(*(_collect_one(NodeClient(requester.session, a["url"]), a, job_cid,
                                                          deadline, spec.engine) for a in run["answers"]))
            verification = _judge(prepared, job_cid, list(answers), int(run["n"]), int(run["quorum"] or 0))
            # the referee judges here too: what it lacks (here: everything) it fetches by CID from the signers
            await judge_claims(prepared, verification, scratch, referee=referee, progress=progress,
                               fraud_dir=records.path.parent / "fraud")
            _remember(records, verification)
            if verification.result_cid is not None:
                progress("Downloading results")
                budget = max(deadline - loop.time(), DOWNLOAD_GRACE_S)
                await _download(requester.session, records, verification, prepared, output_dir, scratch, budget,
                                base=base)
            extra = {"result_checked": verification.result_checked, "detached": True, **judged_extra(verification),
                     "results_dir": str(verification.results_dir.resolve()) if verification.results_dir else None,
                     **({"output_base": base.to_json()} if base is not None else {})}
            if run["outcome"] == UNFINISHED:  # its own requester never finished it: completed in place
                records.finish_run(run["run_id"], finished_at=now(), outcome=verification.outcome,
                                   result_cid=verification.result_cid, answers=[asdict(a) for a in verification.answers],
                                   note=verification.note, extra=extra)
                verification.run_id = int(run["run_id"])
                return verification
            verification.run_id = records.record_run(
                job_cid, started_at=run["started_at"] or started, finished_at=now(), outcome=verification.outcome,
                result_cid=verification.result_cid, n=verification.n, quorum=verification.quorum,
                spec=job_row["spec"], answers=[asdict(a) for a in verification.answers], note=verification.note,
                extra=extra)
            return verification
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _collect_one(client: NodeClient, recorded: dict[str, Any], job_cid: str, deadline: float,
                       engine: str) -> Answer:
    """One node's answer to a job it was given earlier: checked as verify checks it."""
    answer = Answer(str(recorded["node_id"]), str(recorded["url"]), str(recorded.get("profile") or ""))
    if recorded.get("error"):
        answer.error = str(recorded["error"])
        return answer
    loop = asyncio.get_running_loop()
    interval = POLL_INTERVAL_S
    try:
        while True:
            record = await client.job(job_cid)
            if record["state"] in ("done", "failed"):
                return accept(answer, record, job_cid, engine)
            if loop.time() + interval > deadline:
                answer.error = f"still {record['state']} when collected"
                return answer
            await asyncio.sleep(interval)
            interval = min(MAX_POLL_INTERVAL_S, interval * 2)
    except BadSignature as exc:
        answer.signature_valid, answer.result_cid, answer.error = False, None, str(exc)
    except NodeError as exc:
        answer.error = str(exc)
    except CodError as exc:
        answer.error = str(exc)
    return answer


async def cancel(records: Records, job_cid: str) -> dict[str, Any] | None:
    """Stop a detached (``submitted``) or unfinished (``running``) run of ``job_cid`` on every node
    given it (DELETE /v1/jobs/{cid}, all at once) and record it ``cancelled``: a running row is
    completed in place, a submitted one gets a new run. Returns the job view, with ``cancel``:
    {URL: None, or why that node did not confirm}; None when the latest run is neither."""
    run = records.latest_run(job_cid)
    if run is None or run["outcome"] not in COLLECTABLE:
        return None
    urls = list(dict.fromkeys(str(a["url"]) for a in run["answers"] if a.get("url") and not a.get("error")))
    async with Requester(records) as requester:
        why = await asyncio.gather(*(NodeClient(requester.session, url).cancel(job_cid, CANCEL_TIMEOUT_S, FINISHED)
                                     for url in urls))
    confirmed = dict(zip(urls, why))
    if urls and all(w == FINISHED for w in why):  # nothing was stopped: the results stand, cod get collects them
        return {"job_cid": job_cid, "cancel": confirmed, "finished": True}
    answers = [dict(a, error=a.get("error") or "cancelled by the requester"
                    + (f" (the node did not confirm: {confirmed[a['url']]})" if confirmed.get(a.get("url")) else ""))
               for a in run["answers"]]
    note = "cancelled by the requester (cod cancel)"
    if run["outcome"] == UNFINISHED:
        records.finish_run(run["run_id"], finished_at=now(), outcome=CANCELLED, result_cid=None, answers=answers,
                           note=note)
    else:
        job_row = records.job(job_cid)
        assert job_row is not None
        records.record_run(job_cid, started_at=run["started_at"] or now(), finished_at=now(), outcome=CANCELLED,
                           result_cid=None, n=int(run["n"]), quorum=int(run["quorum"] or 0), spec=job_row["spec"],
                           answers=answers, note=note, extra={"detached": True})
    view = recorded_view(records, job_cid, with_output=False)
    assert view is not None
    return dict(view, cancel=confirmed)

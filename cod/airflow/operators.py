"""Airflow operators for cod: a thin shell over cod.local (prepare) and verifier.pipeline.

- :class:`CodWasmRunOperator`: a WebAssembly job verified by N nodes (``verify=3``).
- :class:`CodDockerRunOperator`: a docker job, run by one node and flagged unverifiable.
- :class:`CodGetOperator`: the agreed results of an earlier job, downloaded and checked.

Each returns a dict that Airflow pushes to XCom (``return_value``): ``job_cid``, ``outcome``,
``result_cid``, ``verified``, ``verifiable``, ``groups``, ... A stage whose result was not
verified (a mismatch, too few agreeing nodes, failures) fails its task; the log names every
node's answer and the groups of nodes that signed each result CID.

``module``, ``args``, ``inputs``, ``env``, ``seed``, ``image``, ``output_dir`` and ``job_cid``
are templated, so ``inputs=["{{ ti.xcom_pull(task_ids='stage1')['result_cid'] }}:/inputs"]``
mounts stage 1's results by CID (they are in this requester's content store, and nodes that
lack them get them uploaded). An input a template rendered must be a CID (``ipfs://`` or
bare): a rendered path on the worker would be hashed and uploaded to the nodes (its
credentials, where the DAG meant a CID), so it fails the task unless the operator is given
``allow_local_inputs=True``. Paths written literally in the DAG are the DAG's own, and allowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from ..content.cid import CID
from ..content.store import lookup
from ..errors import CIDError, CodError
from ..jobspec import Limits
from ..local import IPFS_SCHEME, PreparedJob, check_prepared, parse_mount, prepare, prepare_docker
from .hooks import CodHook, CodNetwork

DEFAULT_VERIFY = 3
TEMPLATE_MARKS = ("{{", "{%", "{#")  # what makes a text a Jinja template (Airflow's default delimiters)


class _CodRun(BaseOperator):  # type: ignore[misc]  # Airflow's classes are untyped here
    """What both run operators share: the network, the stage and its verdict."""

    def __init__(self, *, inputs: Sequence[str] = (), env: Sequence[str] = (),
                 limits: Mapping[str, int] | None = None, output_dir: str | None = None,
                 cod_conn_id: str = CodHook.default_conn_name, allow_local_inputs: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inputs = list(inputs)
        self.declared_inputs = list(self.inputs)  # as the DAG wrote them, before templates are rendered
        self.allow_local_inputs = allow_local_inputs
        self.env = list(env)
        self.limits = dict(limits or {})
        self.output_dir = output_dir
        self.cod_conn_id = cod_conn_id

    def _network(self) -> CodNetwork:
        return _network(self, self.cod_conn_id)

    def _inputs(self) -> list[str]:
        """The rendered inputs: each ``SRC[:DST]`` text. A template that rendered to nothing (an
        earlier stage that pushed no XCom gives ``None``) is refused here, naming it; so is one
        that rendered to a worker path, unless ``allow_local_inputs`` (``_from_template``)."""
        for n, item in enumerate(self.inputs):
            if not isinstance(item, str) or not item.strip() or item.split(":", 1)[0] in ("None", ""):
                raise AirflowException(f"inputs[{n}] rendered to {item!r}, not SRC[:/path]: did the stage its "
                                       "template pulls from push a result_cid to XCom?")
        if self.allow_local_inputs:
            return list(self.inputs)
        # the DAG's list rendered as a whole (native rendering) cannot be matched item by item: all templated
        whole = len(self.declared_inputs) != len(self.inputs)
        return [_from_template(n, item) if whole or _templated(self.declared_inputs[n]) else item
                for n, item in enumerate(self.inputs)]

    def _limits(self) -> Limits:
        known = {f.name for f in fields(Limits)}
        unknown = sorted(set(self.limits) - known)
        if unknown:
            raise AirflowException(f"limits: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        bad = [key for key, value in self.limits.items() if type(value) is not int or value < 1]
        if bad:
            raise AirflowException(f"limits: {', '.join(sorted(bad))} must be positive integers")
        return Limits(**self.limits)

    def _stage(self, job: PreparedJob, network: CodNetwork, n: int, quorum: int | None, ledger: str | None,
               require_local: bool = False) -> dict[str, Any]:
        from verifier.pipeline import run_stage

        self.log.info("cod: job %s on %d node(s) of %s", job.spec.cid, n, ", ".join(network.nodes) or
                      "an embedded devstack")
        try:
            stage = run_stage(job, network.nodes, n, quorum=quorum, ledger=ledger or network.ledger,
                              output_dir=Path(self.output_dir) if self.output_dir else None,
                              require_local=require_local)
        except CodError as exc:
            raise AirflowException(_text(exc)) from None
        for line in stage.report():
            self.log.info("%s", line)
        if not stage.passed:
            raise AirflowException(f"cod: job {stage.verification.job_cid} was not verified "
                                   f"({stage.verification.outcome}):\n" + "\n".join(stage.report()))
        if stage.engine == "docker":
            self.log.warning("cod: a docker job is never verifiable; its result %s is one node's word",
                             stage.verification.result_cid)
        return stage.to_xcom()


class CodWasmRunOperator(_CodRun):
    """Run a WASI module (a path, a CID or ipfs://CID) on ``verify`` nodes and compare their
    signed results; the task fails unless they agree (or a ``quorum`` of them does)."""

    template_fields: Sequence[str] = ("module", "args", "inputs", "env", "seed", "output_dir")
    ui_color = "#d7ecd9"

    def __init__(self, *, module: str, args: Sequence[str] = (), seed: str | None = None,
                 verify: int = DEFAULT_VERIFY, quorum: int | None = None, ledger: str | None = None,
                 require_local: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.module = module
        self.args = list(args)
        self.seed = seed
        self.verify = verify
        self.quorum = quorum
        self.ledger = ledger
        self.require_local = require_local

    def execute(self, context: Any) -> dict[str, Any]:
        network = self._network()
        try:
            job = prepare(self.module, [str(a) for a in self.args], inputs=self._inputs(), env=self.env,
                          seed=self.seed, limits=self._limits(), resolve=lookup, remote=True)
            check_prepared(job, _engine())  # a file that is no module fails here, before it is sent anywhere
        except CodError as exc:
            raise AirflowException(_text(exc)) from None
        return self._stage(job, network, self.verify, self.quorum, self.ledger, self.require_local)


class CodDockerRunOperator(_CodRun):
    """Run ``image`` with ``command`` on one node's Docker-compatible engine. Never verifiable:
    the XCom says ``verifiable: false`` and the log says so."""

    template_fields: Sequence[str] = ("image", "command", "inputs", "env", "output_dir")
    ui_color = "#e3e3f5"

    def __init__(self, *, image: str, command: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.command = list(command)

    def execute(self, context: Any) -> dict[str, Any]:
        network = self._network()
        try:
            job = prepare_docker(self.image, [str(c) for c in self.command], inputs=self._inputs(), env=self.env,
                                 limits=self._limits(), resolve=lookup)
        except CodError as exc:
            raise AirflowException(_text(exc)) from None
        return self._stage(job, network, 1, None, None)


class CodGetOperator(BaseOperator):  # type: ignore[misc]
    """Download the agreed results of an earlier job (``job_cid``: a CID, a unique prefix, or a
    template such as ``{{ ti.xcom_pull(task_ids='stage3')['job_cid'] }}``) into ``output_dir``,
    checked against the result CID, from a node that signed them."""

    template_fields: Sequence[str] = ("job_cid", "output_dir")

    def __init__(self, *, job_cid: str, output_dir: str, cod_conn_id: str = CodHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_cid = job_cid
        self.output_dir = output_dir
        self.cod_conn_id = cod_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from verifier.pipeline import fetch_stage

        network = _network(self, self.cod_conn_id)
        try:
            got = asyncio.run(fetch_stage(self.job_cid, Path(self.output_dir), network.nodes))
        except CodError as exc:
            raise AirflowException(_text(exc)) from None
        self.log.info("cod: results %s of job %s -> %s", got["result_cid"], got["job_cid"], got["path"])
        return got


def _network(operator: Any, conn_id: str) -> CodNetwork:
    """The task's network (CodHook), logged with where it came from."""
    try:
        network = CodHook(conn_id).get_conn()
    except CodError as exc:
        raise AirflowException(_text(exc)) from None
    operator.log.info("cod: network: %s", network.source)
    return network


def _engine() -> Any:
    """The engine that checks a module here as `cod run` does (compiled modules cached in
    COD_CACHE_DIR, else cod's default cache)."""
    import os

    from ..wasm.engine import Engine, default_cache_dir

    return Engine(os.environ.get("COD_CACHE_DIR") or default_cache_dir(), wall_clock=False)


def _templated(declared: Any) -> bool:
    """Whether an input as the DAG wrote it is a template (anything but a plain text is taken as one)."""
    return not isinstance(declared, str) or any(mark in declared for mark in TEMPLATE_MARKS)


def _from_template(n: int, item: str) -> str:
    """A rendered input that must name content by CID: returned as ``ipfs://CID[:DST]`` (so a
    worker file that happens to bear the CID's name is never read instead), or refused."""
    try:
        src, dst = parse_mount(item)
    except CodError as exc:
        raise AirflowException(_text(exc)) from None
    bare = src.removeprefix(IPFS_SCHEME)
    try:
        cid = str(CID.parse(bare.rstrip("/")))
    except CIDError:
        raise AirflowException(
            f"cod: inputs[{n}] came from a template and rendered to {src!r}, which is not a CID: a path on this "
            "worker would be hashed and uploaded to the nodes (hint: pull a result_cid from XCom, write the path "
            "literally in the DAG, or pass allow_local_inputs=True to mount worker paths from templates)") from None
    given_dst = ":" in item.removeprefix(IPFS_SCHEME)
    return f"{IPFS_SCHEME}{cid}" + (f":{dst}" if given_dst else "")


def _text(exc: CodError) -> str:
    return f"cod: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")

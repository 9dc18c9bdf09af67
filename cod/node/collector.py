"""What a node keeps and for how long (SPEC 9.11): the retention, and the collector's plan.

Kept: the results of the ``keep_jobs`` most recently finished jobs, and of every job that
finished less than ``keep_results_s`` ago; blobs (uploads, fetched content) used less than
``keep_blobs_s`` ago or named by a queued or running job; the CARs of what is kept. Removed:
the rest, with their CARs; copies of datasets the node no longer offers once no job holds
them. Offered datasets (their copies) and private modules are never collected. The plan is
a pure function of what is stored, the times of use and ``now_ns`` (the node's clock, or a
test's): time decides only what is kept, never a result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

NS = 1_000_000_000
DAY_S = 86_400


@dataclass(frozen=True)
class Retention:
    """A node's retention and per-client storage quota (``cod serve --keep-*``, ``--max-client-bytes``)."""

    keep_jobs: int = 1000
    keep_results_s: int = 7 * DAY_S
    keep_blobs_s: int = DAY_S
    client_bytes: int = 64 << 30
    collect_every_s: int = 600

    def __post_init__(self) -> None:
        for name in ("keep_jobs", "keep_results_s", "keep_blobs_s", "client_bytes", "collect_every_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")

    def published(self) -> dict[str, int]:
        """As ``/v1/info`` shows it under ``storage``."""
        return {"keep_jobs": self.keep_jobs, "keep_results_s": self.keep_results_s,
                "keep_blobs_s": self.keep_blobs_s, "max_client_bytes": self.client_bytes}


@dataclass
class Plan:
    """What one collection removes: job CIDs (their results), blob CIDs, dataset copies, CARs."""

    results: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    cars: list[str] = field(default_factory=list)


@dataclass
class Stored:
    """What the node holds when it collects."""

    done: list[tuple[str, int, str]]  # (job CID, completion number, result CID) of every done job with results
    finished_ns: dict[str, int]  # job CID -> when it finished
    blob_used_ns: dict[str, int]  # blob CID -> when it was last stored or used
    held: set[str]  # CIDs named by queued or running jobs, and the trees (job CIDs for results) they lie in
    datasets: set[str]  # CIDs of the datasets offered now
    stale_copies: list[str]  # copies of datasets no longer offered
    cars: list[str] = field(default_factory=list)  # root CIDs of the kept CARs


def plan(retention: Retention, stored: Stored, now_ns: int) -> Plan:
    """What to remove at ``now_ns`` (a time with no record of its own counts as now: kept)."""
    out = Plan()
    recent = sorted(stored.done, key=lambda row: row[1], reverse=True)
    result_edge = now_ns - retention.keep_results_s * NS
    kept_results: set[str] = set()
    for rank, (job, _seq, result) in enumerate(recent):
        if rank < retention.keep_jobs or stored.finished_ns.get(job, now_ns) >= result_edge or job in stored.held:
            kept_results.add(result)
        else:
            out.results.append(job)
    blob_edge = now_ns - retention.keep_blobs_s * NS
    kept_blobs = set()
    for cid, used in sorted(stored.blob_used_ns.items()):
        if used < blob_edge and cid not in stored.held and cid not in stored.datasets:
            out.blobs.append(cid)
        else:
            kept_blobs.add(cid)
    out.copies = [cid for cid in stored.stale_copies if cid not in stored.held]
    keep_cars = kept_results | kept_blobs | stored.datasets | (set(stored.stale_copies) - set(out.copies))
    out.cars = [cid for cid in sorted(stored.cars) if cid not in keep_cars]
    return out


def named_cids(module: str | None, inputs: Iterable[str], output_base: str | None) -> set[str]:
    """The CIDs a job spec names (its module, input CIDs and output base)."""
    return {cid for cid in (module, output_base, *inputs) if cid}

"""Figures of the ledger core (issue 7): appends per second, proof time, audit of 100,000 entries.

    PYTHONPATH=. python tests/bench/ledger.py [--entries 100000]

Statements are signed before the clock starts (signing is the client's work). Appends go through
Ledger (validation with signature checks, stored hashes, derived rows, a signed checkpoint per
request, one SQLite transaction each), as the service calls it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from cod.ledger import entries, merkle
from cod.ledger.audit import audit_dir_report
from cod.ledger.log import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.ledger.bkit import DATA, MOD, NODES, ORIGIN, agreeing, blessed_ledger, cid, spec  # noqa: E402

REASON = "the job reads data that is not blessed FIL+ data (fil-plus-only)"


def refusals(n: int, salt: str) -> list[dict[str, object]]:
    return [entries.sign_refusal(NODES[i % len(NODES)], job=cid(f"{salt} job {i}"), policy="fil-plus-only",
                                 inputs=[cid(f"{salt} input {i}")], reason=REASON) for i in range(n)]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} entries/s ({count} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = blessed_ledger(Path(tmp))

        batch = refusals(2000, "single")
        t0 = time.perf_counter()
        for item in batch:
            ledger.refusal(item)
        print("append, one refusal per request:      ", rate(len(batch), time.perf_counter() - t0))

        import threading
        work = [refusals(1000, f"thread {n}") for n in range(4)]
        threads = [threading.Thread(target=lambda items=items: [ledger.refusal(x) for x in items]) for items in work]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("append, one per request, 4 threads:   ", rate(4000, time.perf_counter() - t0), "(group commit)")

        batch = refusals(20_000, "batched")
        t0 = time.perf_counter()
        for start in range(0, len(batch), 100):
            ledger.append_signed(batch[start:start + 100])
        print("append, 100 refusals per request:     ", rate(len(batch), time.perf_counter() - t0))

        evidence = []
        for i in range(500):
            s = spec(DATA, cid(f"evidence input {i}"))
            ledger.bless([entries.sign_bless_batch(MOD, {cid(f"evidence input {i}"): [i]}, origin=ORIGIN)])
            evidence.append((s, agreeing(s, 3)))
        t0 = time.perf_counter()
        for s, st in evidence:
            ledger.report_evidence(s, st)
        print("append, evidence of 3 nodes (judged): ", rate(len(evidence), time.perf_counter() - t0))

        blesses = entries.bless_batches(MOD, {cid(f"bless {k}"): [k] for k in range(10_000)}, origin=ORIGIN)
        t0 = time.perf_counter()
        ledger.bless(blesses)
        dt = time.perf_counter() - t0
        print(f"bless, 10,000 inputs in {len(blesses)} batches:   {10_000 / dt:,.0f} inputs/s ({dt:.2f} s)")

        todo = args.entries - ledger.size
        batch = refusals(max(todo, 0), "fill")
        t0 = time.perf_counter()
        for start in range(0, len(batch), 1000):
            ledger.append_signed(batch[start:start + 1000])
        if batch:
            print("append, 1000 refusals per request:    ", rate(len(batch), time.perf_counter() - t0))

        size = ledger.size
        picks = [random.Random(7).randrange(size) for _ in range(2000)]
        t0 = time.perf_counter()
        for i in picks:
            merkle.prove_record(size, i, ledger.read_hashes)
        print(f"inclusion proof (tree of {size:,}):       {(time.perf_counter() - t0) / len(picks) * 1e3:.3f} ms")
        t0 = time.perf_counter()
        for i in picks[:500]:
            ledger.inclusion(i)
        print(f"inclusion answer with leaf, checkpoint: {(time.perf_counter() - t0) / 500 * 1e3:.3f} ms")
        ledger.close()

        t0 = time.perf_counter()
        ledger = Ledger.open(Path(tmp) / "ledger")
        print(f"open (replay {size:,} entries):         {time.perf_counter() - t0:.2f} s")
        ledger.close()
        t0 = time.perf_counter()
        report = audit_dir_report(Path(tmp) / "ledger")
        print(f"audit of {size:,} entries:               {time.perf_counter() - t0:.2f} s, "
              f"{len(report.problems)} problems ({size - len(batch) + len(batch) // 1000:,} checkpoints)")

    with tempfile.TemporaryDirectory() as tmp:   # the worst case: one checkpoint per entry
        ledger = blessed_ledger(Path(tmp))
        for item in refusals(10_000, "one by one"):
            ledger.refusal(item)
        ledger.close()
        t0 = time.perf_counter()
        report = audit_dir_report(Path(tmp) / "ledger")
        print(f"audit of 10,004 entries, 10,004 checkpoints: {time.perf_counter() - t0:.2f} s, "
              f"{len(report.problems)} problems")


if __name__ == "__main__":
    main()

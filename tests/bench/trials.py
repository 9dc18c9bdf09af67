"""Stage 11 figure: 100 seeded random trials of 1 honest node against 1 to 9 colluding liars.

Each trial draws the number of liars (1..9), their mode (late, early, random: SPEC 11.8) and
the job: the probe vector with an argument of its own, or the word count of a text made for
the trial. The job goes to the honest node and the liars (`--verify N` asking all of them)
with the referee by re-execution; a trial is won when the outcome is verified-by-referee with
the honest node's result and every liar is named a proven liar. Run alone:
`python tests/bench/trials.py [TRIALS]`; `make bench` runs it inside tests/bench/run.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cod.jobspec import JobSpec  # noqa: E402
from cod.local import PreparedJob, prepare  # noqa: E402
from cod.node.liar import LATE_LIE, MODES  # noqa: E402
from verifier import Devstack, Records, Requester  # noqa: E402

VECTORS = ROOT / "vectors"
SEED = 11
TRIALS = 100
MAX_LIARS = 9
WORDS = ("compute", "over", "data", "where", "it", "lives", "honest", "node", "liar", "\n", "\t", " ")


def _probe(word: str) -> PreparedJob:
    import json

    vector = json.loads((VECTORS / "probe.json").read_text())
    spec = JobSpec.from_dict(vector["spec"])
    spec = dataclasses.replace(spec, args=(*spec.args[:2], word))
    sources = {item.path: str(VECTORS / vector["inputs"][item.path]) for item in spec.inputs}
    return PreparedJob(spec, (VECTORS / "probe.wasm").read_bytes(), sources)


def _wordcount(draw: random.Random, where: Path) -> PreparedJob:
    where.mkdir(parents=True)
    for n in range(draw.randint(1, 3)):
        text = " ".join(draw.choice(WORDS) for _ in range(draw.randint(1, 400)))
        (where / f"part-{n}.txt").write_text(text)
    return prepare(VECTORS / "wordcount.wasm", [], inputs=[str(where)])


@dataclasses.dataclass
class Figures:
    trials: int
    won: int
    elapsed: float
    median: float
    slowest: float
    by_mode: dict[str, list[int]]  # mode -> [trials, won]
    late_on_top: dict[str, int]  # mode -> trials whose lie was the late one


async def trials(count: int = TRIALS, seed: int = SEED) -> Figures:
    draw = random.Random(seed)
    won = 0
    seconds: list[float] = []
    by_mode = {mode: [0, 0] for mode in MODES}  # mode -> [trials, won]
    late_on_top = {mode: 0 for mode in MODES}  # trials whose lie was the late one (the fault showed nothing)
    with tempfile.TemporaryDirectory(prefix="cod-bench-liars-") as tmp:
        base = Path(tmp)
        async with Requester(Records(base / "requester.db")) as requester, \
                Devstack(1 + MAX_LIARS, bad_nodes=MAX_LIARS, base_dir=base / "stack") as stack:
            start = time.perf_counter()
            for trial in range(count):
                liars, mode = draw.randint(1, MAX_LIARS), draw.choice(MODES)
                job = (_probe(f"trial-{trial}-{draw.getrandbits(32):08x}") if draw.random() < 0.5
                       else _wordcount(draw, base / f"input-{trial}"))
                stack.lie(mode)
                honest, *others = stack.nodes[:1] + stack.liars[:liars]
                urls = [honest.url] + [o.url for o in others]
                began = time.perf_counter()
                result = await requester.verify(job, urls, len(urls), referee="self")
                seconds.append(time.perf_counter() - began)
                claims = {a.node_id: a.result_cid for a in result.answers}
                truth = claims.get(honest.node.identity.node_id)
                ok = (result.outcome == "verified-by-referee" and result.result_cid == truth is not None
                      and sorted(result.liars) == sorted(o.node.identity.node_id for o in others))
                won += ok
                by_mode[mode][0] += 1
                by_mode[mode][1] += ok
                stdout = others[0].node.results / result.job_cid / "stdout"
                late_on_top[mode] += stdout.read_bytes().endswith(LATE_LIE)
            elapsed = time.perf_counter() - start
    return Figures(count, won, elapsed, statistics.median(seconds), max(seconds), by_mode, late_on_top)


def section(count: int = TRIALS) -> list[str]:
    f = asyncio.run(trials(count))
    lines = [
        f"{f.won} of {f.trials} trials won (the honest result accepted, every liar named), in {f.elapsed:.1f} s: "
        f"{f.median * 1000:.0f} ms a trial (median), {f.slowest * 1000:.0f} ms the slowest.",
        "",
        "| mode | trials | won | lie told late (late mode: always; early, random: the flipped byte changed "
        "nothing the job shows) |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        lines.append(f"| {mode} | {f.by_mode[mode][0]} | {f.by_mode[mode][1]} | {f.late_on_top[mode]} |")
    return lines


if __name__ == "__main__":
    print("\n".join(section(int(sys.argv[1]) if len(sys.argv) > 1 else TRIALS)))

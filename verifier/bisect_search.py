"""The k-way search for the first checkpoint where two traces part (SPEC 11.7).

Two sides list the state hashes of one job at the same fuel boundaries. Position -1 is the
start, which both share by definition (the same job spec, module and inputs); a position a
side does not list differs from everything. The search keeps ``agreed < parted``, the sides
agreeing at ``agreed`` and parting at ``parted``, and narrows the gap by asking ``k - 1``
evenly spaced positions inside it in each round, until ``parted == agreed + 1``: the one
segment a referee re-executes. When the sequences agree up to a point and differ after it,
that point is found; whatever the sequences, the segment found starts at an agreed state
and ends at parted ones (so what the referee re-executes is always well defined).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_ROUNDS = 64
"""Most rounds of one search (a round: one batch of positions compared)."""
DEFAULT_K = 16
"""Positions compared in one round, at most (--bisect-k)."""
MIN_K, MAX_K = 2, 1024

Probe = Callable[[list[int]], Sequence[bool]]
"""Whether the two sides agree at each of the given positions (one round)."""


@dataclass(frozen=True)
class Found:
    """Where two traces part: ``agreed`` (-1: the start) and ``parted`` = agreed + 1, or
    ``parted`` None when they agree everywhere asked; ``rounds`` the batches compared."""

    agreed: int
    parted: int | None
    rounds: int


def probes(agreed: int, parted: int, k: int) -> list[int]:
    """The up to ``k - 1`` positions strictly between ``agreed`` and ``parted``, evenly spaced."""
    gap = parted - agreed
    if gap <= 1:
        return []
    count = min(k - 1, gap - 1)
    return sorted({agreed + (gap * j) // (count + 1) for j in range(1, count + 1)} - {agreed, parted})


def search(length: int, agree: Probe, k: int = DEFAULT_K, max_rounds: int = MAX_ROUNDS) -> Found:
    """The segment where two sequences of ``length`` positions first part, by k-way search.

    The first round asks the last position (and the first ``k - 1`` splits): a pair that agrees
    there has no parting segment. Raises ValueError for a ``k`` out of [MIN_K, MAX_K], a
    negative length, or more than ``max_rounds`` rounds (the length is then beyond any k)."""
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"k = {k} is not from {MIN_K} to {MAX_K}")
    if length < 0:
        raise ValueError(f"length {length} is negative")
    if length == 0:
        return Found(-1, None, 0)
    agreed, parted = -1, length - 1
    asked = [*probes(agreed, parted, k), parted]
    rounds = 0
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise ValueError(f"the search took more than {max_rounds} rounds")
        answers = list(agree(asked))
        if len(answers) != len(asked):
            raise ValueError(f"{len(answers)} answers to {len(asked)} positions")
        split = next((i for i, same in enumerate(answers) if not same), None)
        if split is None:
            if asked[-1] == parted and rounds == 1:
                return Found(length - 1, None, rounds)  # agree at the last position asked: no parting
            agreed = asked[-1]
        else:
            parted = asked[split]
            agreed = asked[split - 1] if split > 0 else agreed
        if parted == agreed + 1:
            return Found(agreed, parted, rounds)
        asked = probes(agreed, parted, k)


def rounds_bound(length: int, k: int) -> int:
    """The most rounds :func:`search` takes over ``length`` positions: ceil(log_k(length)) (at least 1)."""
    rounds, reach = 1, k
    while reach < length:
        reach *= k
        rounds += 1
    return rounds

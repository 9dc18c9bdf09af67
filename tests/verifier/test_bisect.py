"""Bisection (SPEC 11.7): the k-way search on synthetic hash sequences, then disputes between real nodes."""

from __future__ import annotations

import math

import pytest

from verifier.bisect_search import MAX_ROUNDS, search


def _sides(length: int, first: int) -> tuple[list[str], list[str]]:
    """Two hash sequences equal before ``first`` and different from it on (``first`` = length: equal)."""
    honest = [f"h{i}" for i in range(length)]
    liar = [h if i < first else f"x{i}" for i, h in enumerate(honest)]
    return honest, liar


def _oracle(a: list[str], b: list[str], asked: list[list[int]]):  # type: ignore[no-untyped-def]
    def agree(positions: list[int]) -> list[bool]:
        asked.append(list(positions))
        return [a[p] == b[p] for p in positions]
    return agree


@pytest.mark.parametrize("k", [2, 3, 16, 100])
@pytest.mark.parametrize("length", [1, 2, 7, 128, 129, 1000])
def test_the_first_divergence_is_found_for_every_position(k: int, length: int) -> None:
    # the bound by hand: each round leaves at most ceil(gap / k) of a gap, the first gap is length
    bound, gap = 0, length
    while gap > 1:
        gap, bound = math.ceil(gap / k), bound + 1
    bound = max(bound, 1)
    for first in range(length + 1):
        honest, liar = _sides(length, first)
        asked: list[list[int]] = []
        found = search(length, _oracle(honest, liar, asked), k)
        assert found.rounds == len(asked) <= bound
        assert all(len(batch) <= k for batch in asked)
        if first == length:
            assert (found.agreed, found.parted) == (length - 1, None) and found.rounds == 1
        else:
            assert (found.agreed, found.parted) == (first - 1, first)


def test_binary_search_of_a_million_positions_stays_under_the_rounds_bound() -> None:
    length = 1 << 20
    for first in (0, 1, 12345, length // 2, length - 1):
        honest, liar = _sides(length, first)
        found = search(length, _oracle(honest, liar, []), 2)
        assert (found.agreed, found.parted) == (first - 1, first)
        assert found.rounds <= 21 <= MAX_ROUNDS


def test_sequences_that_agree_again_still_give_an_agreed_then_parted_segment() -> None:
    a = [f"h{i}" for i in range(100)]
    b = [("x" if i % 7 == 3 else "h") + str(i) for i in range(100)]  # parts and rejoins, again and again
    b[-1] = "x99"
    found = search(100, _oracle(a, b, []), 4)
    assert found.parted is not None and found.parted == found.agreed + 1
    assert a[found.parted] != b[found.parted]
    assert found.agreed == -1 or a[found.agreed] == b[found.agreed]


def test_a_search_past_its_round_bound_or_with_a_bad_k_is_refused() -> None:
    honest, liar = _sides(1 << 12, 1000)
    with pytest.raises(ValueError, match="more than 3 rounds"):
        search(1 << 12, _oracle(honest, liar, []), 2, max_rounds=3)
    for k in (0, 1, 1025):
        with pytest.raises(ValueError, match="is not from 2"):
            search(10, _oracle(honest, liar, []), k)
    with pytest.raises(ValueError, match="answers"):
        search(10, lambda positions: [True], 4)

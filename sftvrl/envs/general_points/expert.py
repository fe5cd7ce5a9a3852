"""The expert's answer for a hand: one optimal formula, chosen the same way every time."""

from __future__ import annotations

from functools import lru_cache

from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN, FormulaError, evaluate_python
from sftvrl.envs.general_points.cards import Hand
from sftvrl.envs.general_points.solver import solutions


def _inversions(order: list[int]) -> int:
    return sum(
        1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j]
    )


def _float_fails(formula: str, target: int) -> bool:
    try:
        return evaluate_python(TOKEN_PATTERN.findall(formula)) != target
    except FormulaError:
        return True


@lru_cache(maxsize=4096)
def _ranked_solutions(
    multiset: tuple[int, ...], target: int
) -> tuple[tuple[bool, int, str, tuple[int, ...]], ...]:
    """Per multiset (the dealt order does not change the solutions): each solution with the parts
    of its rank that do not depend on the dealt order, and the numbers in the order it uses them."""
    return tuple(
        (
            _float_fails(formula, target),
            formula.count("("),
            formula,
            tuple(int(token) for token in TOKEN_PATTERN.findall(formula) if token.isdigit()),
        )
        for formula in solutions(multiset, target)
    )


def expert_formula(hand: Hand) -> str:
    """The simplest solution: fewest parentheses, numbers closest to the dealt order, then text.

    Formulas that float arithmetic also gets right come first, so the expert scores +5 under the
    ``paper`` verifier too whenever the hand allows (8/(3-8/3) for 3 3 8 8 is the kind that can't).
    Deterministic for a hand, so SFT data is reproducible.
    """
    target = hand.rules.target
    ranked = _ranked_solutions(tuple(sorted(hand.numbers)), target)
    if not ranked:
        raise ValueError(f"hand {hand} has no solution for {target}")
    position: dict[int, list[int]] = {}
    for index, number in enumerate(hand.numbers):
        position.setdefault(number, []).append(index)

    def dealt_order(numbers: tuple[int, ...]) -> int:
        seen: dict[int, int] = {}
        order = []
        for n in numbers:
            order.append(position[n][seen.get(n, 0)])
            seen[n] = seen.get(n, 0) + 1
        return _inversions(order)

    best = min(ranked, key=lambda r: (r[0], r[1], dealt_order(r[3]), r[2]))
    return best[2]

"""The expert's answer for a hand: one optimal formula, chosen the same way every time."""

from __future__ import annotations

from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN, FormulaError, evaluate_python
from sftvrl.envs.general_points.cards import Hand
from sftvrl.envs.general_points.solver import solutions


def _inversions(order: list[int]) -> int:
    return sum(
        1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j]
    )


def expert_formula(hand: Hand) -> str:
    """The simplest solution: fewest parentheses, numbers closest to the dealt order, then text.

    Formulas that float arithmetic also gets right come first, so the expert scores +5 under the
    ``paper`` verifier too whenever the hand allows (8/(3-8/3) for 3 3 8 8 is the kind that can't).
    Deterministic for a hand, so SFT data is reproducible.
    """
    candidates = solutions(hand.numbers, hand.rules.target)
    if not candidates:
        raise ValueError(f"hand {hand} has no solution for {hand.rules.target}")
    position = {}
    for index, number in enumerate(hand.numbers):
        position.setdefault(number, []).append(index)

    def dealt_order(formula: str) -> int:
        seen: dict[int, int] = {}
        order = []
        for token in TOKEN_PATTERN.findall(formula):
            if token.isdigit():
                n = int(token)
                order.append(position[n][seen.get(n, 0)])
                seen[n] = seen.get(n, 0) + 1
        return _inversions(order)

    def float_fails(formula: str) -> bool:
        try:
            return evaluate_python(TOKEN_PATTERN.findall(formula)) != hand.rules.target
        except FormulaError:
            return True

    return min(candidates, key=lambda f: (float_fails(f), f.count("("), dealt_order(f), f))

"""The expert's answer for a hand: one optimal formula, chosen the same way every time."""

from __future__ import annotations

from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN
from sftvrl.envs.general_points.cards import Hand
from sftvrl.envs.general_points.solver import solutions


def _inversions(order: list[int]) -> int:
    return sum(
        1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j]
    )


def expert_formula(hand: Hand) -> str:
    """The simplest solution: fewest parentheses, numbers closest to the dealt order, then text.

    Deterministic for a hand (so SFT data is reproducible) and free of spaces, so it scores +5 in
    both verifier modes unless float evaluation gets it wrong (the paper mode's known quirk).
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

    return min(candidates, key=lambda f: (f.count("("), dealt_order(f), f))

"""The exact solver: the paper's counts, the official solution strings, and their properties."""

import itertools
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftvrl.envs.general_points import (
    Rules,
    evaluate_exact,
    is_solvable,
    number_multisets,
    solutions,
    solvability_table,
)
from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN
from sftvrl.envs.general_points.solver import _formula_strings

hands = st.lists(st.integers(1, 13), min_size=4, max_size=4)


def test_solvable_counts_match_the_known_totals():
    table = solvability_table(24, 4, 13)
    assert len(table) == 1820
    assert sum(table.values()) == 1362
    ten = [c for c in table if max(c) <= 10]
    assert len(ten) == 715
    assert sum(table[c] for c in ten) == 566


def test_split_multiset_counts():
    assert len(number_multisets(Rules.id())) == 566
    assert len(number_multisets(Rules.id(), solvable_only=False)) == 715
    assert len(number_multisets(Rules.rule_ood(), solvable_only=False)) == 1820 - 715
    assert len(number_multisets(Rules(face="jqk"))) == 1362


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ((3, 3, 8, 8), ["8/(3-8/3)"]),
        ((1, 1, 1, 1), []),
        ((4, 6, 1, 1), None),
        ((1, 3, 13, 6), None),
    ],
)
def test_known_hands(numbers, expected):
    found = solutions(numbers)
    if expected is not None:
        assert found == expected
    assert bool(found) == is_solvable(numbers)


def _brute_force_strings(numbers, target=24):
    """The official enumeration, written out plainly: every ordering, operator triple and bracket
    placement, evaluated exactly."""
    found = set()
    for ordering in set(itertools.permutations(numbers)):
        for ops in itertools.product("+-*/", repeat=3):
            for tokens in _formula_strings(ordering, ops):
                try:
                    if evaluate_exact(tokens) == target:
                        found.add("".join(tokens))
                except ValueError:
                    pass
    return sorted(found)


@pytest.mark.parametrize(
    "numbers", [(1, 3, 13, 6), (3, 3, 8, 8), (10, 10, 4, 4), (1, 5, 5, 5), (2, 2, 12, 13)]
)
def test_fast_solutions_equal_the_plain_enumeration(numbers):
    assert solutions(numbers) == _brute_force_strings(numbers)


@settings(max_examples=60, deadline=None)
@given(hands)
def test_every_solution_evaluates_to_target_and_uses_the_hand(numbers):
    found = solutions(numbers)
    assert found == sorted(set(found))
    for formula in found:
        tokens = TOKEN_PATTERN.findall(formula)
        assert "".join(tokens) == formula  # no spaces, no "=24"
        assert evaluate_exact(tokens) == Fraction(24)
        assert Counter(int(t) for t in tokens if t.isdigit()) == Counter(numbers)
    assert bool(found) == is_solvable(numbers)


@settings(max_examples=40, deadline=None)
@given(hands, st.integers(1, 40))
def test_solvability_is_order_independent_and_target_aware(numbers, target):
    assert is_solvable(numbers, target) == is_solvable(list(reversed(numbers)), target)
    assert bool(solutions(numbers, target)) == is_solvable(numbers, target)


def test_other_hand_sizes():
    assert is_solvable([4, 6]) and not is_solvable([5, 5])
    assert is_solvable([24]) and not is_solvable([23])
    assert is_solvable([1, 2, 3, 4, 5])
    assert solutions([4, 6]) == ["4*6", "6*4"]
    with pytest.raises(ValueError, match="at most"):
        is_solvable(list(range(1, 9)))

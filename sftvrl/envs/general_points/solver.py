"""Exact solver for GeneralPoints: is a hand solvable, and what are its solution formulas.

Two questions, two algorithms:
- *Solvable?* Exact rational search over sub-multisets (values of every split, memoised), checked
  against the target with set look-ups. Over all 1,820 rank multisets it takes well under a second,
  so a full solvability table is built once per (target, hand size) and dealing costs microseconds.
- *Which formulas?* The official environment's solution strings (every distinct ordering of the
  numbers, every operator triple, the seven bracket placements ``a.b.c.d``, ``(a.b).c.d``,
  ``(a.b.c).d``, ``a.(b.c).d``, ``a.(b.c.d)``, ``a.b.(c.d)``, ``(a.b).(c.d)``), kept when their exact
  value is the target. The ``paper`` verifier's partial-credit and feedback rules compare model
  formulas with these strings, so they must be the same strings. They are cached per multiset.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

OPERATORS = ("+", "-", "*", "/")

MAX_SOLVER_NUMBERS = 6
"""The exact search is exponential; six numbers is the most a game here deals."""


def _combine(a: Fraction, b: Fraction) -> set[Fraction]:
    values = {a + b, a - b, b - a, a * b}
    if b:
        values.add(a / b)
    if a:
        values.add(b / a)
    return values


@cache
def _reachable(numbers: tuple[int, ...]) -> frozenset[Fraction]:
    """Every value an expression using each of the (sorted) numbers once can take."""
    if len(numbers) == 1:
        return frozenset({Fraction(numbers[0])})
    values: set[Fraction] = set()
    for left, right in _splits(numbers):
        for a in _reachable(left):
            for b in _reachable(right):
                values |= _combine(a, b)
    return frozenset(values)


def _splits(numbers: tuple[int, ...]) -> Iterable[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered splits of a sorted multiset into two non-empty sorted sub-multisets."""
    n = len(numbers)
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for size in range(1, n // 2 + 1):
        for chosen in itertools.combinations(range(n), size):
            left = tuple(numbers[i] for i in chosen)
            right = tuple(numbers[i] for i in range(n) if i not in chosen)
            key = (left, right) if left <= right else (right, left)
            if key not in seen:
                seen.add(key)
                yield key


def _can_reach(numbers: tuple[int, ...], target: Fraction) -> bool:
    """Whether the last operation of some expression over ``numbers`` can give ``target``."""
    if len(numbers) == 1:
        return numbers[0] == target
    for left, right in _splits(numbers):
        right_values = _reachable(right)
        for a in _reachable(left):
            # a + b, a - b, b - a, a * b, a / b, b / a == target, solved for b
            needed = {target - a, a - target, target + a}
            if a:
                needed.add(target / a)
            if target:
                needed.add(a / target)
            needed.add(target * a)
            for b in needed:
                if b in right_values and target in _combine(a, b):
                    return True
    return False


def _check_numbers(numbers: Sequence[int]) -> tuple[int, ...]:
    key = tuple(sorted(int(n) for n in numbers))
    if not key:
        raise ValueError("a hand needs at least one number")
    if len(key) > MAX_SOLVER_NUMBERS:
        raise ValueError(f"the solver handles at most {MAX_SOLVER_NUMBERS} numbers, got {len(key)}")
    return key


@lru_cache(maxsize=200_000)
def _solvable_sorted(numbers: tuple[int, ...], target: int) -> bool:
    return _can_reach(numbers, Fraction(target))


def is_solvable(numbers: Sequence[int], target: int = 24) -> bool:
    """Whether some formula using every number once (+ - * / and parentheses) equals ``target``.

    Exact rational arithmetic; memoised per multiset, so repeated hands cost a dictionary look-up.
    """
    return _solvable_sorted(_check_numbers(numbers), int(target))


@lru_cache(maxsize=8)
def solvability_table(target: int = 24, n_cards: int = 4, max_value: int = 13) -> dict:
    """``{sorted numbers: solvable}`` for every multiset of ``n_cards`` values in 1..``max_value``.

    Built once per argument set (about a second for four cards) and shared by the dealer and the
    exhaustive evaluation sets.
    """
    combos = itertools.combinations_with_replacement(range(1, max_value + 1), n_cards)
    return {combo: _solvable_sorted(combo, int(target)) for combo in combos}


# -- the official solution strings -------------------------------------------------------------


def _bracket_shapes(n: int) -> list[tuple[int, ...]]:
    """Insertion points of the official solver: none, every single pair, and (a.b).(c.d) for 4."""
    length = 2 * n - 1
    shapes: list[tuple[int, ...]] = [()]
    shapes += [
        (x, y)
        for x in range(0, length, 2)
        for y in range(x + 4, length + 2, 2)
        if (x, y) != (0, length + 1)
    ]
    if n == 4:
        shapes.append((0, 4, 6, 10))
    return shapes


def _formula_strings(ordering: Sequence[object], ops: Sequence[str]) -> list[list[str]]:
    base: list[str] = []
    for number, op in itertools.zip_longest(ordering, ops, fillvalue=""):
        base.append(str(number))
        if op:
            base.append(op)
    formulas = []
    for shape in _bracket_shapes(len(ordering)):
        tokens = list(base)
        for point, bracket in zip(shape, "()" * (len(shape) // 2), strict=True):
            tokens.insert(point, bracket)
        formulas.append(tokens)
    return formulas


Tree = tuple  # (op, left, right) or a leaf index


@lru_cache(maxsize=8)
def _formula_trees(n: int) -> tuple[tuple[tuple[str, ...], Tree], ...]:
    """Every official (operator triple, bracket placement) as a symbolic token list and its tree.

    Leaves are positions 0..n-1 in the ordering; the tree follows the usual precedence, so one
    vectorised pass over all orderings gives every formula's value at once.
    """
    from sftvrl.envs.general_points.arithmetic import _run

    placeholders = tuple(str(i) for i in range(n))
    trees = []
    for ops in itertools.product(OPERATORS, repeat=n - 1):
        for tokens in _formula_strings(placeholders, ops):
            tree = _run(tokens, int, lambda op, left, right: (op, left, right))
            trees.append((tuple(tokens), tree))
    return tuple(trees)


_NUMPY_OPS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}


def _evaluate_tree(tree: Tree, leaves: np.ndarray) -> np.ndarray:
    if isinstance(tree, int):
        return leaves[tree]
    op, left, right = tree
    return _NUMPY_OPS[op](_evaluate_tree(left, leaves), _evaluate_tree(right, leaves))


@lru_cache(maxsize=4096)
def _solutions_sorted(numbers: tuple[int, ...], target: int) -> tuple[str, ...]:
    """Float screening over all orderings at once, then exact confirmation of the candidates."""
    from sftvrl.envs.general_points.arithmetic import evaluate_exact

    orderings = sorted(set(itertools.permutations(numbers)))
    leaves = np.array(orderings, dtype=np.float64).T  # (n, orderings)
    goal = Fraction(target)
    found: set[str] = set()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for symbolic, tree in _formula_trees(len(numbers)):
            values = _evaluate_tree(tree, leaves)
            for index in np.flatnonzero(np.abs(values - target) < 1e-6):
                ordering = orderings[index]
                tokens = [str(ordering[int(t)]) if t.isdigit() else t for t in symbolic]
                try:
                    exact = evaluate_exact(tokens)
                except ValueError:  # a zero divisor the float pass turned into inf
                    continue
                if exact == goal:
                    found.add("".join(tokens))
    return tuple(sorted(found))


def solutions(numbers: Sequence[int], target: int = 24) -> list[str]:
    """Every distinct solution formula (no spaces, no ``=target``), as the official solver writes them.

    Sorted for determinism. Empty when the hand is unsolvable. Cached per multiset, since the set
    does not depend on the order the cards were dealt in.
    """
    key = _check_numbers(numbers)
    if not is_solvable(key, target):
        return []
    return list(_solutions_sorted(key, int(target)))


@lru_cache(maxsize=4096)
def solution_prefixes(numbers: tuple[int, ...], target: int) -> frozenset[str]:
    """Every prefix of every solution string, for O(1) "is this a prefix of a solution?" checks."""
    prefixes: set[str] = set()
    for formula in solutions(numbers, target):
        prefixes.update(formula[:i] for i in range(len(formula) + 1))
    return frozenset(prefixes)

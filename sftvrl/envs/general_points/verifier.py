"""The one GeneralPoints verifier: rewards and feedback for RL, evaluation, SFT checks and the widget.

``verify(response, hand, rules, vision=..., mode=...)`` returns a :class:`Verdict`. Two modes:

``mode="paper"`` reproduces the official reward function and feedback text for every input
(``utils_rl.step_rewards`` with the env's regex parsing, as specified in PAPER.md §1.3–1.4),
including its quirks:

1. *Parsing.* ``json.loads`` of the whole answer first (it fails on the schema's trailing comma),
   then the first ``"formula": "..."`` (double quotes, one line). A missing field is the string
   ``"None"``. ``cards`` must be a 4-item list of single-quoted or bare ranks: double-quoted ranks
   keep their quotes and so never match, all-integer lists become ``[]``, and a strict-JSON list
   fails too (all of these read as wrongly recognised cards in GP-VL).
2. *Vision check first* (GP-VL): wrong cards give -1.5 and nothing else is checked.
3. *Whitespace is illegal*: any character outside digits, ``+-*/()`` gives one -3 and stops.
4. *Penalties add up*: every grammar offence costs -3, a wrong number -2 and an unused number
   another -2 (sums such as -4, -5, -6 are possible; they are ``AGGREGATED_ERROR``).
5. *Float evaluation*: the value comes from Python's float arithmetic, so a correct formula
   like ``8/(3-8/3)`` (= 23.999999999999986) is not correct; since it is a full solver string the
   prefix walk adds nothing and the reward is 0 with message "." (``FLOAT_MISMATCH``).
6. *Partial credit*: a formula Python cannot evaluate (unclosed '(', trailing operator, division by
   zero, leading zeros, too deep nesting) gets +1 when it is a prefix of a solver solution string.
7. *Prefix feedback*: a wrong value gets -1 and names the longest prefix shared with a solver
   string, so the message depends on the solver's bracket style, not on mathematics.
8. *Crashes*: where the official code would raise (a non-string JSON ``formula``; a number of more
   than 4,300 digits) we return a verdict instead: the value's text form for the former, and
   -3 "illegal characters" for the latter. Nothing is ever executed: Python's evaluation is
   emulated by :func:`~sftvrl.envs.general_points.arithmetic.evaluate_python`.

``mode="exact"`` (default) is the same protocol, reward table and messages with the quirks fixed:
the tolerant :func:`parse_response`; whitespace allowed; ``x``, ``X``, ``×``, ``÷`` and ``−``
accepted as operators; exact rationals (a correct formula always gets +5); one penalty per answer
(the most severe offence, all offences listed in the message); an incomplete formula that is not a
solution prefix is -3 "your formula is incomplete"; division by zero is -1 with its own message;
lenient card reading (quotes of any kind, 'T', rank names, suit marks). The vision check stays
first: recognising the cards is part of the GP-VL task and its accuracy is a reported metric.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Literal

from sftvrl.envs.general_points.arithmetic import (
    PYTHON_MAX_INT_DIGITS,
    TOKEN_PATTERN,
    DivisionByZero,
    FormulaError,
    IncompleteFormula,
    evaluate_exact,
    evaluate_python,
    grammar_issues,
)
from sftvrl.envs.general_points.cards import Hand
from sftvrl.envs.general_points.parser import ParsedResponse, parse_response
from sftvrl.envs.general_points.rules import Rules
from sftvrl.envs.general_points.solver import solution_prefixes

Mode = Literal["exact", "paper"]
MAX_FORMULA_CHARS = 256
"""Exact mode: longer formulas are refused before any work (four cards need about 20 characters)."""


class Outcome(StrEnum):
    """What happened to an answer, named as the official statistics logger names rewards."""

    CORRECT_SOLUTION = "CORRECT_SOLUTION"
    PARTIAL_SOLUTION = "PARTIAL_SOLUTION"
    NO_SOLUTION = "NO_SOLUTION"
    INCORRECT_VISION = "INCORRECT_VISION"
    INCORRECT_NUMBER = "INCORRECT_NUMBER"
    ILLEGAL_FORMULA = "ILLEGAL_FORMULA"
    AGGREGATED_ERROR = "AGGREGATED_ERROR"
    """paper mode: several penalties summed (e.g. -5)."""
    FLOAT_MISMATCH = "FLOAT_MISMATCH"
    """paper mode: a correct formula that float evaluation misses (reward 0, message '.')."""
    STEP_LIMIT = "STEP_LIMIT"
    """paper step limit: the unverified extra call after the last attempt (reward -1)."""


REWARDS: dict[Outcome, float] = {
    Outcome.CORRECT_SOLUTION: 5.0,
    Outcome.PARTIAL_SOLUTION: 1.0,
    Outcome.NO_SOLUTION: -1.0,
    Outcome.INCORRECT_VISION: -1.5,
    Outcome.INCORRECT_NUMBER: -2.0,
    Outcome.ILLEGAL_FORMULA: -3.0,
}
"""The paper's reward table (PAPER.md §1.4)."""

_OUTCOME_BY_REWARD = {reward: outcome for outcome, reward in REWARDS.items()}


@dataclass(frozen=True)
class Verdict:
    """The verifier's judgement of one answer.

    ``message`` is the feedback shown to the model (the prompt layer prefixes it with "You failed
    this trial because "); ``messages`` are its parts; ``value`` the formula's value when it had one.
    """

    reward: float
    outcome: Outcome
    message: str
    messages: tuple[str, ...] = ()
    formula: str | None = None
    value: Fraction | float | int | None = None
    parsed: ParsedResponse | None = field(default=None, compare=False, repr=False)

    @property
    def success(self) -> bool:
        return self.outcome is Outcome.CORRECT_SOLUTION


def _join(messages: list[str]) -> str:
    return ", ".join(messages) + "."


def verify(
    response: str | ParsedResponse,
    hand: Hand,
    rules: Rules | None = None,
    *,
    vision: bool = False,
    mode: Mode = "exact",
) -> Verdict:
    """Score one answer to ``hand`` under ``rules`` (default: the hand's own rules); never raises."""
    rules = rules or hand.rules
    text = response.text if isinstance(response, ParsedResponse) else response
    if mode == "paper":
        return _verify_paper(text, hand, rules, vision)
    if mode == "exact":
        parsed = response if isinstance(response, ParsedResponse) else parse_response(text)
        return _verify_exact(parsed, hand, rules, vision)
    raise ValueError(f"unknown verifier mode {mode!r}; expected 'exact' or 'paper'")


# -- shared steps ------------------------------------------------------------------------------


def _number_messages(used: list[int], hand_numbers: tuple[int, ...]) -> list[str]:
    """The official wording for wrong, overused and unused numbers, in the official order."""
    have: dict[int, int] = {}
    for n in hand_numbers:
        have[n] = have.get(n, 0) + 1
    counts: dict[int, int] = {}
    for n in used:
        counts[n] = counts.get(n, 0) + 1
    messages = []
    invalid = [n for n in counts if n not in have]
    overused = [n for n in counts if counts[n] > have.get(n, 0)]
    if invalid:
        messages.append(f"you used invalid numbers: {invalid}")
    elif overused:
        messages.append(f"you used numbers: {overused} too many times")
    unused = [n for n in have if have[n] > counts.get(n, 0)]
    if unused:
        messages.append(f"you didn't use numbers: {unused}")
    return messages


def _prefixes(hand: Hand, rules: Rules) -> frozenset[str]:
    """Prefixes of the solver's strings; built on first need, so correct answers never pay for it."""
    return solution_prefixes(tuple(sorted(hand.numbers)), rules.target)


def _prefix_feedback(tokens: list[str], prefixes: frozenset[str]) -> str | None:
    """The official hint: the longest token prefix shared with a solver string, or None."""
    register = ""
    for token in tokens:
        previous, register = register, register + token
        if register not in prefixes:
            if not previous:
                return "your formula does not match any solution"
            return (
                f"{previous} is partially correct but the full formula does not match any solution"
            )
    return None


# -- paper mode --------------------------------------------------------------------------------

_PAPER_PATTERNS = {
    "formula": re.compile(r'"formula": "(.*?)"'),
    "cards": re.compile(r'"cards": \[([^\]]+)\]'),
}
_PAPER_TOKENS = re.compile(r"\d+|[+\-*/()]")


def _paper_field(text: str, key: str) -> object:
    """The official ``re_match``: whole-text JSON first, then a regex; "None" when absent."""
    try:
        return json.loads(text)[key]
    except Exception:
        match = _PAPER_PATTERNS[key].search(text)
        if match is None:
            return "None"
        value = match.group(1)
        if key == "cards":
            try:
                return [int(part) for part in value.split(", ")]
            except ValueError:
                return "[" + value + "]"
        return value


def _paper_card_list(value: object, n_cards: int) -> list[str]:
    """The official ``robust_str_to_list``: only strings survive, and only with n items."""
    if not isinstance(value, str):
        return []
    for char in "[]' ":
        value = value.replace(char, "")
    items = value.split(",")
    return items if len(items) == n_cards else []


def _paper_outcome(reward: float) -> Outcome:
    if reward == 0:
        return Outcome.FLOAT_MISMATCH
    return _OUTCOME_BY_REWARD.get(reward, Outcome.AGGREGATED_ERROR)


def _verify_paper(text: object, hand: Hand, rules: Rules, vision: bool) -> Verdict:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if vision:
        cards = _paper_card_list(_paper_field(text, "cards"), rules.n_cards)
        if sorted(cards) != sorted(hand.ranks):
            reward = REWARDS[Outcome.INCORRECT_VISION]
            message = "you recognized wrong cards"
            return Verdict(reward, Outcome.INCORRECT_VISION, message, (message,))

    raw = _paper_field(text, "formula")
    formula = (raw if isinstance(raw, str) else str(raw)).split("=")[0]

    def verdict(reward: float, messages: list[str], value: object = None) -> Verdict:
        return Verdict(
            reward, _paper_outcome(reward), _join(messages), tuple(messages), formula, value
        )

    tokens = _PAPER_TOKENS.findall(formula)
    if "".join(tokens) != formula:
        return verdict(REWARDS[Outcome.ILLEGAL_FORMULA], ["illegal characters"])
    messages = [issue.message for issue in grammar_issues(tokens)]
    reward = REWARDS[Outcome.ILLEGAL_FORMULA] * len(messages)

    number_tokens = [t for t in tokens if t[0] not in "+-*/()"]
    if any(len(t) > PYTHON_MAX_INT_DIGITS for t in number_tokens):
        return verdict(REWARDS[Outcome.ILLEGAL_FORMULA], ["illegal characters"])
    number_messages = _number_messages([int(t) for t in number_tokens], hand.numbers)
    messages += number_messages
    reward += REWARDS[Outcome.INCORRECT_NUMBER] * len(number_messages)
    if reward != 0:
        return verdict(reward, messages)

    value: int | float | None = None
    try:
        value = evaluate_python(tokens, grammar_checked=True)
    except FormulaError:
        if formula in _prefixes(hand, rules):
            return verdict(REWARDS[Outcome.PARTIAL_SOLUTION], ["partial solution"])
    else:
        if value == rules.target:
            return verdict(REWARDS[Outcome.CORRECT_SOLUTION], ["Correct solution"], value)
    hint = _prefix_feedback(tokens, _prefixes(hand, rules))
    if hint is None:  # a full solver string that float arithmetic misses
        return verdict(0.0, [], value)
    return verdict(REWARDS[Outcome.NO_SOLUTION], [hint], value)


# -- exact mode --------------------------------------------------------------------------------

_OPERATOR_SPELLINGS = str.maketrans({"x": "*", "X": "*", "×": "*", "÷": "/", "−": "-", "–": "-"})
_WHITESPACE = re.compile(r"\s+")


def normalise_formula(formula: str) -> str:
    """Exact mode's reading of a formula: no whitespace, one spelling per operator."""
    return _WHITESPACE.sub("", formula).translate(_OPERATOR_SPELLINGS)


def _exact_verdict(
    offences: list[tuple[Outcome, str]],
    parsed: ParsedResponse,
    formula: str | None = None,
    value: Fraction | None = None,
) -> Verdict:
    """One penalty per answer: the most severe offence's reward; every offence in the message."""
    outcome = min((o for o, _ in offences), key=REWARDS.__getitem__)
    messages = tuple(dict.fromkeys(m for _, m in offences))
    return Verdict(
        REWARDS[outcome], outcome, _join(list(messages)), messages, formula, value, parsed
    )


def _verify_exact(parsed: ParsedResponse, hand: Hand, rules: Rules, vision: bool) -> Verdict:
    if vision and (parsed.cards is None or sorted(parsed.cards) != sorted(hand.ranks)):
        return _exact_verdict([(Outcome.INCORRECT_VISION, "you recognized wrong cards")], parsed)

    lhs = parsed.formula_lhs
    if lhs is None:
        message = 'no "formula" field in your answer'
        return _exact_verdict([(Outcome.ILLEGAL_FORMULA, message)], parsed)
    if len(lhs) > MAX_FORMULA_CHARS:
        message = f"your formula is longer than {MAX_FORMULA_CHARS} characters"
        return _exact_verdict([(Outcome.ILLEGAL_FORMULA, message)], parsed)
    formula = normalise_formula(lhs)
    tokens = TOKEN_PATTERN.findall(formula)
    if "".join(tokens) != formula:
        return _exact_verdict([(Outcome.ILLEGAL_FORMULA, "illegal characters")], parsed, formula)

    offences = [(Outcome.ILLEGAL_FORMULA, issue.message) for issue in grammar_issues(tokens)]
    used = [int(t) for t in tokens if t[0].isdigit()]
    offences += [(Outcome.INCORRECT_NUMBER, m) for m in _number_messages(used, hand.numbers)]
    if offences:
        return _exact_verdict(offences, parsed, formula)

    try:
        value = evaluate_exact(tokens, grammar_checked=True)
    except IncompleteFormula:
        if formula in _prefixes(hand, rules):
            return _exact_verdict([(Outcome.PARTIAL_SOLUTION, "partial solution")], parsed, formula)
        offence = (Outcome.ILLEGAL_FORMULA, "your formula is incomplete")
        return _exact_verdict([offence], parsed, formula)
    except DivisionByZero:
        offence = (Outcome.NO_SOLUTION, "your formula divides by zero")
        return _exact_verdict([offence], parsed, formula)
    if value == rules.target:
        offence = (Outcome.CORRECT_SOLUTION, "Correct solution")
    else:
        hint = _prefix_feedback(tokens, _prefixes(hand, rules))
        hint = hint or "your formula does not match any solution"
        offence = (Outcome.NO_SOLUTION, hint)
    return _exact_verdict([offence], parsed, formula, value)

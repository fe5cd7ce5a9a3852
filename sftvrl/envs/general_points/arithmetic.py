"""Arithmetic over model text without ``eval``: a tokenizer, a grammar check and two evaluators.

Formulas come from models, so they may be anything. We never hand them to Python. Tokens are
numbers, ``+ - * /`` and parentheses; an iterative shunting-yard parser builds the value, so deep
nesting cannot exhaust the stack and the work is linear in the input length.

Two evaluators share the parser:
- :func:`evaluate_exact` computes with :class:`fractions.Fraction` (what the game means);
- :func:`evaluate_python` reproduces what ``eval(formula)`` does in CPython 3.11 for the inputs the
  official verifier lets through (ints stay exact, ``/`` gives floats, the same exceptions), so the
  ``paper`` verifier can be bit-for-bit without ever executing text.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

TOKEN_PATTERN = re.compile(r"[0-9]+|[+\-*/()]")
"""ASCII numbers, the four operators and parentheses: the legal alphabet of a formula."""

PYTHON_MAX_PAREN_DEPTH = 200
"""CPython's tokenizer refuses more than 200 nested parentheses (``too many nested parentheses``)."""

PYTHON_MAX_INT_DIGITS = 4300
"""CPython refuses to convert longer digit strings to int (``sys.int_info.default_max_str_digits``)."""

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class FormulaError(ValueError):
    """The formula cannot be evaluated; ``reason`` says why in words a model can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IncompleteFormula(FormulaError):
    """The formula stops early: a trailing operator or an unclosed parenthesis."""


class DivisionByZero(FormulaError):
    """The formula divides by zero somewhere."""


@dataclass(frozen=True)
class GrammarIssue:
    """One offence against the token grammar, with the official verifier's wording."""

    message: str


def token_kind(token: str) -> str:
    """'number', 'operator', 'open', 'close' (tokens come from a tokenizer, so nothing else)."""
    if token in _PRECEDENCE:
        return "operator"
    if token == "(":
        return "open"
    if token == ")":
        return "close"
    return "number"


def grammar_issues(tokens: Sequence[str]) -> list[GrammarIssue]:
    """Every place where a token may not follow its predecessor, as the official verifier counts them.

    A number or '(' may start a formula or follow an operator or '('; an operator or ')' must follow
    a number or ')'; a ')' needs an open '('. Unclosed '(' and a trailing operator are not grammar
    offences here (the official code only notices them when evaluation fails).
    """
    issues: list[GrammarIssue] = []
    previous: str | None = None
    open_parens = 0
    for token in tokens:
        kind = token_kind(token)
        if kind == "number":
            if previous not in (None, "operator", "open"):
                issues.append(GrammarIssue("invalid sequence after number"))
        elif kind == "operator":
            if previous not in ("number", "close"):
                issues.append(GrammarIssue("invalid sequence after operator"))
        elif kind == "open":
            if previous in (None, "operator", "open"):
                open_parens += 1
            else:
                issues.append(GrammarIssue("invalid sequence before '('"))
        elif previous in ("number", "close"):
            if open_parens:
                open_parens -= 1
            else:
                issues.append(GrammarIssue("unmatched closing parenthesis"))
        else:
            issues.append(GrammarIssue("invalid sequence after ')'"))
        previous = kind
    return issues


def _run(
    tokens: Sequence[str],
    number: Callable[[str], object],
    apply: Callable[[str, object, object], object],
) -> object:
    """Shunting-yard evaluation of a grammatical token list with left-associative + - * /."""
    values: list[object] = []
    ops: list[str] = []

    def reduce_top() -> None:
        op = ops.pop()
        right = values.pop()
        left = values.pop()
        values.append(apply(op, left, right))

    expect_operand = True
    for token in tokens:
        kind = token_kind(token)
        if kind == "number":
            values.append(number(token))
            expect_operand = False
        elif kind == "open":
            ops.append(token)
            expect_operand = True
        elif kind == "close":
            while ops and ops[-1] != "(":
                reduce_top()
            if not ops:
                raise FormulaError("unmatched closing parenthesis")
            ops.pop()
            expect_operand = False
        else:
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[token]:
                reduce_top()
            ops.append(token)
            expect_operand = True
    if expect_operand:
        raise IncompleteFormula("the formula ends with an operator" if tokens else "empty formula")
    while ops:
        if ops[-1] == "(":
            raise IncompleteFormula("unclosed parenthesis")
        reduce_top()
    return values[0]


def _checked_grammar(tokens: Sequence[str]) -> None:
    issues = grammar_issues(tokens)
    if issues:
        raise FormulaError(issues[0].message)


_EXACT_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _ratio_apply(op: str, left: object, right: object) -> tuple[int, int]:
    """Rational arithmetic on (numerator, denominator) pairs, reduced only at the end.

    Several times faster than :class:`~fractions.Fraction` on the short formulas of the game.
    """
    (a, b), (c, d) = left, right  # type: ignore[misc]
    if op == "+":
        return (a * d + c * b, b * d)
    if op == "-":
        return (a * d - c * b, b * d)
    if op == "*":
        return (a * c, b * d)
    if c == 0:
        raise DivisionByZero("division by zero")
    return (a * d, b * c)


def evaluate_exact(tokens: Sequence[str], *, grammar_checked: bool = False) -> Fraction:
    """The exact rational value of a tokenized formula, or :class:`FormulaError` saying why not.

    ``grammar_checked=True`` skips the grammar pass for callers that have just run it.
    """
    if not grammar_checked:
        _checked_grammar(tokens)
    numerator, denominator = _run(tokens, lambda t: (int(t), 1), _ratio_apply)  # type: ignore[misc]
    return Fraction(numerator, denominator)


def _python_number(token: str) -> int:
    if not token.isascii():
        raise FormulaError("invalid character in number")  # SyntaxError in eval
    if len(token) > 1 and token[0] == "0" and token.strip("0"):
        raise FormulaError("leading zeros in decimal integer literals are not permitted")
    if len(token) > PYTHON_MAX_INT_DIGITS:
        raise FormulaError("exceeds the limit for integer string conversion")
    return int(token)


def _python_apply(op: str, left: object, right: object) -> int | float:
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if op == "/":
        if right == 0:
            raise DivisionByZero("division by zero")
        try:
            return left / right
        except OverflowError as error:
            raise FormulaError(str(error)) from None
    try:
        return _EXACT_OPS[op](left, right)
    except OverflowError as error:  # int too large to convert to float
        raise FormulaError(str(error)) from None


def evaluate_python(tokens: Sequence[str], *, grammar_checked: bool = False) -> int | float:
    """What CPython 3.11's ``eval`` returns for this token string, or the error it would raise.

    Only for token lists whose characters the tokenizer accepted: numbers (possibly non-ASCII digits,
    which the official regex ``\\d`` admits), operators and parentheses. Raises
    :class:`FormulaError` wherever ``eval`` raises (syntax, leading zeros, too deep nesting,
    division by zero, overflow).
    """
    depth = max_depth = 0
    for token in tokens:
        if token == "(":
            depth += 1
            max_depth = max(max_depth, depth)
        elif token == ")":
            depth -= 1
    if max_depth > PYTHON_MAX_PAREN_DEPTH:
        raise FormulaError("too many nested parentheses")
    if not grammar_checked:
        _checked_grammar(tokens)
    result = _run(tokens, _python_number, _python_apply)
    assert isinstance(result, int | float)
    return result

"""The verifier in both modes: a table of edge cases, a reference model of the official reward,
and properties (never raises, a correct formula always scores +5 in exact mode)."""

import json
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftvrl.envs.general_points import Hand, Outcome, Rules, solutions, verify
from sftvrl.envs.general_points.arithmetic import FormulaError, evaluate_python, grammar_issues

OOD = Hand.from_cards(["SA", "H3", "DK", "C6"], Rules.rule_ood())  # numbers 1 3 13 6
EIGHTS = Hand.from_cards(["S3", "C3", "S8", "C8"], Rules.id(vision=True))  # only 8/(3-8/3)


def answer(formula: str, cards: str = "['A', '3', 'K', '6']") -> str:
    return f'{{\n  "cards": {cards},\n  "number": [1, 3, 13, 6],\n  "formula": "{formula}",\n}}'


PARTIAL = "(1+ is partially correct but the full formula does not match any solution."
# (formula, paper reward, paper message, exact reward, exact message)
CASES = [
    ("(1+13-6)*3=24", 5, "Correct solution.", 5, "Correct solution."),
    ("(1+6)*3+13=24", -1, PARTIAL, -1, PARTIAL),
    ("1+3+6+13", -1, "your formula does not match any solution.", -1, None),
    ("(1 + 13 - 6) * 3", -3, "illegal characters.", 5, "Correct solution."),
    ("(1+13-6)x3", -3, "illegal characters.", 5, "Correct solution."),
    ("(1+13-6)×3", -3, "illegal characters.", 5, "Correct solution."),
    ("(1+13-6)*3.0", -3, "illegal characters.", -3, "illegal characters."),
    ("(1+6)*3+10", -4, "you used invalid numbers: [10], you didn't use numbers: [13].", -2, None),
    ("13*3-6-1+1", -2, "you used numbers: [1] too many times.", -2, None),
    ("13-1)", -5, "unmatched closing parenthesis, you didn't use numbers: [3, 6].", -3, None),
    ("1++3*6*13", -3, "invalid sequence after operator.", -3, None),
    ("-1+3*6+13", -3, "invalid sequence after operator.", -3, None),
    ("1**3*6*13", -3, "invalid sequence after operator.", -3, None),
    ("(1+13-6)*", -2, "you didn't use numbers: [3].", -2, None),
    (
        "(1+13-6)*(3",
        -1,
        "(1+13-6)* is partially correct but the full formula does not match any solution.",
        -3,
        "your formula is incomplete.",
    ),
    (
        "(1+13-6)*3+",
        -1,
        "(1+13-6)*3 is partially correct but the full formula does not match any solution.",
        -3,
        "your formula is incomplete.",
    ),
    ("3*(1+13-6", 1, "partial solution.", 1, "partial solution."),
    (
        "13*(6-1-3",
        -1,
        "your formula does not match any solution.",
        -3,
        "your formula is incomplete.",
    ),
    ("6/(3-3)+1+13", -2, "you used numbers: [3] too many times.", -2, None),
    (
        "(1+13-6)*03",
        -1,
        "(1+13-6)* is partially correct but the full formula does not match any solution.",
        5,
        "Correct solution.",
    ),
    ("", -2, "you didn't use numbers: [1, 3, 13, 6].", -2, None),
    ("__import__('os')", -3, "illegal characters.", -3, "illegal characters."),
]


@pytest.mark.parametrize(
    ("formula", "paper_reward", "paper_msg", "exact_reward", "exact_msg"), CASES
)
def test_edge_cases(formula, paper_reward, paper_msg, exact_reward, exact_msg):
    paper = verify(answer(formula), OOD, mode="paper")
    assert (paper.reward, paper.message) == (paper_reward, paper_msg)
    exact = verify(answer(formula), OOD)
    assert exact.reward == exact_reward
    if exact_msg is not None:
        assert exact.message == exact_msg
    assert exact.success == (exact_reward == 5)


def test_paper_mode_float_quirk_and_exact_fix():
    paper = verify(answer("8/(3-8/3)", "['3', '3', '8', '8']"), EIGHTS, mode="paper", vision=True)
    assert (paper.reward, paper.message, paper.outcome) == (0, ".", Outcome.FLOAT_MISMATCH)
    exact = verify(answer("8/(3-8/3)", "['3', '3', '8', '8']"), EIGHTS, vision=True)
    assert exact.success and exact.reward == 5


def test_vision_check_comes_first_and_paper_reads_cards_literally():
    wrong = answer("(1+13-6)*3", "['A', '3', 'Q', '6']")
    for mode in ("paper", "exact"):
        verdict = verify(wrong, OOD, vision=True, mode=mode)
        assert verdict.outcome == Outcome.INCORRECT_VISION and verdict.reward == -1.5
    double_quoted = answer("(1+13-6)*3", '["A", "3", "K", "6"]')
    assert verify(double_quoted, OOD, vision=True, mode="paper").reward == -1.5
    assert verify(double_quoted, OOD, vision=True).reward == 5
    numeric = answer("8/(3-8/3)", "[3, 3, 8, 8]")
    assert verify(numeric, EIGHTS, vision=True, mode="paper").reward == -1.5
    assert verify(answer("(1+13-6)*3"), OOD, vision=True, mode="paper").reward == 5


def test_division_by_zero():
    hand = Hand.from_cards(["SA", "CA", "S4", "S6"], Rules())
    paper = verify(answer("6/(1-1)*4"), hand, mode="paper")
    assert (paper.reward, paper.message) == (
        -1,
        "6/(1 is partially correct but the full formula does not match any solution.",
    )
    exact = verify(answer("6/(1-1)*4"), hand)
    assert (exact.reward, exact.message) == (-1, "your formula divides by zero.")


def test_missing_formula():
    assert verify("no idea", OOD, mode="paper").message == "illegal characters."
    exact = verify("no idea", OOD)
    assert exact.reward == -3 and "formula" in exact.message


def test_paper_messages_have_the_official_form():
    verdict = verify(answer("(1+6)*3+10"), OOD, mode="paper")
    assert verdict.outcome == Outcome.AGGREGATED_ERROR
    assert verdict.messages == ("you used invalid numbers: [10]", "you didn't use numbers: [13]")


# -- a reference model of the official reward, written from PAPER.md §1.3-1.4 -------------------


def reference_paper_reward(text: str, hand: Hand, vision: bool) -> tuple[float, str]:
    """Straightforward model of the official scorer, with Python's own ``eval`` on the formula
    (safe here: only digits, operators and parentheses ever reach it, in a test)."""

    def field(key, pattern):
        try:
            return json.loads(text)[key]
        except Exception:
            found = re.search(pattern, text)
            if not found:
                return "None"
            value = found.group(1)
            if key == "cards":
                try:
                    return list(map(int, value.split(", ")))
                except ValueError:
                    return "[" + value + "]"
            return value

    if vision:
        cards = field("cards", r'"cards": \[([^\]]+)\]')
        items = []
        if isinstance(cards, str):
            items = (
                cards.replace("[", "").replace("]", "").replace("'", "").replace(" ", "").split(",")
            )
            items = items if len(items) == 4 else []
        if sorted(items) != sorted(hand.ranks):
            return -1.5, "you recognized wrong cards"
    formula = str(field("formula", r'"formula": "(.*?)"')).split("=")[0]
    tokens = re.findall(r"\d+|[+\-*/()]", formula)
    if "".join(tokens) != formula:
        return -3, "illegal characters."
    reward, messages, previous, depth = 0, [], None, 0
    follows = {"n": (None, "o", "("), "o": ("n", ")"), "(": (None, "o", "(")}
    for token in tokens:
        kind = (
            "n"
            if token[0].isdigit() or token[0] not in "+-*/()"
            else ("o" if token in "+-*/" else token)
        )
        if kind == ")":
            if previous in ("n", ")"):
                if depth:
                    depth -= 1
                else:
                    reward, messages = reward - 3, [*messages, "unmatched closing parenthesis"]
            else:
                reward, messages = reward - 3, [*messages, "invalid sequence after ')'"]
        elif previous not in follows[kind]:
            text_of = {
                "n": "invalid sequence after number",
                "o": "invalid sequence after operator",
                "(": "invalid sequence before '('",
            }
            reward, messages = reward - 3, [*messages, text_of[kind]]
        elif kind == "(":
            depth += 1
        previous = kind
    used = Counter(int(t) for t in tokens if t[0] not in "+-*/()")
    have = Counter(hand.numbers)
    if [n for n in used if n not in have]:
        reward, messages = (
            reward - 2,
            [*messages, f"you used invalid numbers: {[n for n in used if n not in have]}"],
        )
    elif [n for n in used if used[n] > have[n]]:
        reward, messages = (
            reward - 2,
            [
                *messages,
                f"you used numbers: {[n for n in used if used[n] > have[n]]} too many times",
            ],
        )
    if [n for n in have if have[n] > used[n]]:
        reward, messages = (
            reward - 2,
            [*messages, f"you didn't use numbers: {[n for n in have if have[n] > used[n]]}"],
        )
    if reward:
        return reward, ", ".join(messages) + "."
    sols = solutions(hand.numbers, hand.rules.target)
    try:
        if eval(formula) == hand.rules.target:  # digits, operators and parentheses only
            return 5, "Correct solution."
    except Exception:
        if any(s.startswith(formula) for s in sols):
            return 1, "partial solution."
    register = ""
    for token in tokens:
        before, register = register, register + token
        if not any(s.startswith(register) for s in sols):
            if not before:
                return -1, "your formula does not match any solution."
            return (
                -1,
                f"{before} is partially correct but the full formula does not match any solution.",
            )
    return 0, "."


formula_chars = st.sampled_from([*"0123456789+-*/()", "13", "6", "1", "3", " ", "x", "٣"])
formulas = st.lists(formula_chars, max_size=24).map("".join)


def hand_formulas(hand):
    """Formulas built from the hand's own numbers, so the evaluation paths are reached often."""
    pieces = st.sampled_from([str(n) for n in hand.numbers] + list("+-*/()"))
    return st.lists(pieces, min_size=1, max_size=14).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(formulas, hand_formulas(OOD), st.sampled_from(solutions(OOD.numbers))), st.booleans()
)
def test_paper_mode_matches_the_reference_model(formula, vision):
    text = answer(formula)
    verdict = verify(text, OOD, mode="paper", vision=vision)
    assert (verdict.reward, verdict.message) == reference_paper_reward(text, OOD, vision)


@settings(max_examples=150, deadline=None)
@given(hand_formulas(EIGHTS))
def test_paper_mode_matches_the_reference_on_a_fraction_hand(formula):
    text = answer(formula, "['3', '3', '8', '8']")
    verdict = verify(text, EIGHTS, mode="paper", vision=True)
    assert (verdict.reward, verdict.message) == reference_paper_reward(text, EIGHTS, True)


arithmetic_text = st.lists(
    st.sampled_from(["1", "3", "8", "0", "00", "07", "13", "+", "-", "*", "/", "(", ")"]),
    max_size=16,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(arithmetic_text)
def test_python_evaluation_emulates_eval(text):
    """On every formula the paper verifier would evaluate (grammatical token strings)."""
    tokens = re.findall(r"\d+|[+\-*/()]", text)
    if grammar_issues(tokens):
        return
    try:
        expected = eval(text)  # a test oracle over digits and operators only
    except (SyntaxError, ZeroDivisionError, TypeError):
        expected = FormulaError
    except Exception:  # pragma: no cover - anything else is an emulation gap
        raise
    try:
        got = evaluate_python(tokens)
    except FormulaError:
        got = FormulaError
    if expected is FormulaError or got is FormulaError:
        assert got is expected
    else:
        assert got == expected and type(got) is type(expected)


def test_python_evaluation_nesting_limit():
    assert evaluate_python(["("] * 200 + ["1"] + [")"] * 200) == 1
    with pytest.raises(FormulaError):
        evaluate_python(["("] * 201 + ["1"] + [")"] * 201)


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 13), min_size=4, max_size=4).filter(lambda n: bool(solutions(n))),
    st.data(),
)
def test_exact_mode_always_rewards_a_correct_formula(numbers, data):
    hand = Hand(
        tuple(f"S{n}" for n in numbers), tuple(map(str, numbers)), tuple(numbers), Rules(face="jqk")
    )
    formula = data.draw(st.sampled_from(solutions(numbers)))
    spaced = " ".join(formula).replace("*", data.draw(st.sampled_from(["*", "x", "×"])))
    verdict = verify(answer(spaced + " = 24"), hand)
    assert verdict.success and verdict.reward == 5


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.booleans(), st.sampled_from(["paper", "exact"]))
def test_verify_never_raises(text, vision, mode):
    verdict = verify(text, OOD, vision=vision, mode=mode)
    assert isinstance(verdict.reward, float) and isinstance(verdict.message, str)


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_hostile_inputs_get_a_verdict(mode):
    hostile = [
        answer("(" * 5000 + "1+3+6+13" + ")" * 5000),
        answer("9" * 5000),
        answer("1" * 100_000),
        "x" * 2_000_000,
        '{"formula": 24}',
        '{"formula": null, "cards": ["A"]}',
        "[" * 100_000,
        answer("\x00\x1b[31m"),
        answer("__import__('os').system('true')"),
        answer("2**999999**9"),
    ]
    for text in hostile:
        for vision in (False, True):
            verdict = verify(text, OOD, vision=vision, mode=mode)
            assert not verdict.success


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        verify("x", OOD, mode="strict")  # type: ignore[arg-type]

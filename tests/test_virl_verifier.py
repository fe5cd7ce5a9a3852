"""The V-IRL parser and verifier: tolerance, quirks of paper mode, fixes of exact mode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftvrl.envs.virl.model import INTERSECTION, NO_LANDMARKS, RailEntry
from sftvrl.envs.virl.parser import MAX_CHARS, normalize_action, parse_answer
from sftvrl.envs.virl.verifier import (
    MSG_AT_INTERSECTION,
    MSG_CORRECT,
    MSG_NOT_AT_INTERSECTION,
    MSG_WRONG_ACTION,
    OUTPUT_SCHEMA,
    verify,
)


def entry(kind="turn") -> RailEntry:
    turn = kind in ("turn", "start")
    return RailEntry(
        xy=(0.0, 0.0),
        viewpoint="v",
        heading=0.0,
        kind=kind,
        absolute_action="turn_direction(north)" if turn else "forward()",
        relative_action="turn_direction(slightly left)" if turn else "forward()",
        landmark_obs="Hotel X is on your right" if kind == "turn" else NO_LANDMARKS,
        intersection_obs=INTERSECTION if kind == "turn" else "",
        instruction="Turn slightly left to face north.",
        instruction_index=3,
    )


def answer(action: str, obs: str = "No landmarks nearby; ", trailing: bool = True) -> str:
    body = {"current observation": obs, "current instruction": "x", "action": action}
    text = json.dumps(body, indent=2)
    return text[:-2] + ",\n}" if trailing else text


def test_parser_reads_official_format_with_trailing_comma():
    p = parse_answer(answer("turn_direction(north)"))
    assert p.action == "turn_direction(north)" and p.observation == "No landmarks nearby; "
    assert not p.strict_json
    assert parse_answer(answer("forward()", trailing=False)).strict_json


def test_parser_regex_fallback_and_single_quotes():
    text = 'Sure! "current observation": "A; B", "action": "stop()" and more {{{'
    assert parse_answer(text).action == "stop()"
    assert parse_answer("{'action': 'forward()'}").action == "forward()"
    assert parse_answer("no json here").action is None


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=100), st.none(), st.integers()))
def test_parser_and_verifier_never_raise(text):
    p = parse_answer(text)
    assert p.action is None or isinstance(p.action, str)
    for mode in ("exact", "paper"):
        v = verify(text, entry(), absolute=True, mode=mode)
        assert v.reward in (1.0, -1.0, -1.5)


def test_parser_bounds_input():
    huge = '{"action": "forward()"}' + "x" * (10 * MAX_CHARS)
    assert parse_answer(huge).action == "forward()"
    late = "x" * (MAX_CHARS + 10) + '"action": "forward()"'
    assert parse_answer(late).action is None


def test_normalize_action():
    assert normalize_action(" Turn_Direction( 'North' ) ") == "turn_direction(north)"
    assert normalize_action("turn_direction(slightly   left)") == "turn_direction(slightly left)"
    assert normalize_action("forward") == "forward()"
    assert normalize_action(None) is None


def test_correct_and_wrong_messages():
    v = verify(answer("turn_direction(north)"), entry(), absolute=True)
    assert v.correct and v.reward == 1.0 and v.message == MSG_CORRECT
    v = verify(
        answer("turn_direction(south)", "Hotel X is on your right; " + INTERSECTION),
        entry(),
        absolute=True,
    )
    assert v.outcome == "wrong_action" and v.reward == -1.0
    assert v.message == MSG_WRONG_ACTION + OUTPUT_SCHEMA
    assert v.message.startswith("you make incorrect action.")


def test_rule_decides_the_expected_label():
    e = entry()
    assert verify(answer("turn_direction(slightly left)"), e, absolute=False).correct
    assert not verify(answer("turn_direction(north)"), e, absolute=False).correct


def test_paper_mode_intersection_quirk():
    """Official: −1.5 whenever a wrong answer says "intersection", even at a real one."""
    e = entry("turn")
    said = answer("turn_direction(south)", "Hotel X is on your right; You observe an intersection")
    v = verify(said, e, absolute=True, mode="paper")
    assert v.reward == -1.5 and v.message.startswith(MSG_NOT_AT_INTERSECTION)
    # exact mode compares with the full observation: at a real intersection it is −1.
    assert verify(said, e, absolute=True, mode="exact").reward == -1.0
    # exact mode also penalises missing an intersection; paper mode never can.
    silent = answer("turn_direction(south)", "Hotel X is on your right; ")
    assert verify(silent, e, absolute=True, mode="paper").reward == -1.0
    v = verify(silent, e, absolute=True, mode="exact")
    assert v.reward == -1.5 and v.message.startswith(MSG_AT_INTERSECTION)
    # Off an intersection, both modes penalise the false claim.
    f = entry("forward")
    wrong = answer("stop()", "You observe an intersection")
    for mode in ("paper", "exact"):
        assert verify(wrong, f, absolute=True, mode=mode).reward == -1.5


def test_exact_mode_normalises_but_paper_mode_does_not():
    text = answer("Turn_Direction(North)")
    assert verify(text, entry(), absolute=True, mode="exact").correct
    assert not verify(text, entry(), absolute=True, mode="paper").correct
    spaced = answer(" forward()")
    assert verify(spaced, entry("forward"), absolute=True, mode="exact").correct
    assert not verify(spaced, entry("forward"), absolute=True, mode="paper").correct


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        verify("x", entry(), absolute=True, mode="fuzzy")  # type: ignore[arg-type]

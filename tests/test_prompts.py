"""Prompt layouts: the paper's template as the official code renders it, and the compact one."""

from sftvrl.envs.general_points import Hand, Rules
from sftvrl.envs.general_points.parser import parse_response
from sftvrl.prompts import feedback_prompt, response_text, task_prompt

HAND = Hand.from_cards(["SA", "H3", "DK", "C6"], Rules.rule_ood())


def test_paper_text_layout():
    prompt = task_prompt(HAND)
    assert prompt.startswith("\n[Task Description]\nYou are an expert 24 points card game player.")
    assert (
        "Note that 'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each"
        in prompt
    )
    assert "[Input]\nCards: ['A', '3', 'K', '6']\n" in prompt
    assert prompt.endswith("\"formula\": 'an equation that equals 24',\n}\n\n")


def test_paper_vision_layout_hides_the_cards():
    prompt = task_prompt(HAND, vision=True)
    assert "observing these four cards in the image" in prompt
    assert "Cards:" not in prompt
    assert "Your response should be a valid json file in the following format:\n{" in prompt


def test_rule_text_follows_the_rule():
    assert "count as '10'." in task_prompt(Hand.from_cards(["SK"] * 4, Rules(target=40)))
    assert "equals 40" in task_prompt(Hand.from_cards(["SK"] * 4, Rules(target=40)))


def test_responses_round_trip_through_the_parser():
    for layout in ("paper", "compact"):
        parsed = parse_response(response_text(HAND, "(1+13-6)*3", layout=layout))
        assert parsed.formula == "(1+13-6)*3=24"
        assert parsed.cards == HAND.ranks and parsed.numbers == HAND.numbers
    assert response_text(HAND, "(1+13-6)*3").endswith('"formula": "(1+13-6)*3=24",\n}')


def test_compact_layout_and_feedback():
    compact = task_prompt(HAND, layout="compact")
    assert (
        "A 3 K 6" in compact and "11 12 13" in compact and len(compact) < len(task_prompt(HAND)) / 2
    )
    assert (
        feedback_prompt("illegal characters.")
        == "You failed this trial because illegal characters."
    )

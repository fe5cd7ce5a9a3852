"""GeneralPoints prompts and answers, in the paper's layout and in a compact one.

``layout="paper"`` reproduces the official templates (``Q_GeneralPoint_EQN_L`` / ``_VL`` and
``ResponseEqn``) character for character where they are known, so the released Init checkpoints
see what they were trained on; its quirks are kept (the face-card message ends with a period and
is followed by ", and ..."; the output schema has a trailing comma). The VL template is rebuilt
from the paper's Fig. 11 (same sections; the cards sentence and the "valid json" line differ).
``layout="compact"`` states the same facts in fewer tokens for the tiny CPU models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # runtime imports would be circular: the env imports these templates
    from sftvrl.envs.general_points.cards import Hand
    from sftvrl.envs.general_points.rules import Rules

from sftvrl.prompts.feedback import FEEDBACK_PREFIX, feedback_prompt

Layout = Literal["paper", "compact"]

__all__ = [
    "FEEDBACK_PREFIX",
    "Layout",
    "compact_face_rule",
    "feedback_prompt",
    "response_text",
    "task_prompt",
]


_PAPER_TASK = """
[Task Description]
You are an expert {target} points card game player. {cards_sentence}
Note that {face_card_msg}, and each card must be used once.
Your goal is to output a formula that evaluates to {target} using numbers from the cards and \
operators such as '+', '-', '*', '/', '(', ')', and '='.
{input_section}
[Output]
{output_intro}{{
  "cards": [x, y, z, w], where {face_card_msg},
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals {target}',
}}

"""

_PAPER_RESPONSE = """{{
  "cards": {cards},
  "number": {numbers},
  "formula": "{formula}",
}}"""

_COMPACT_TASK = (
    "Cards: {cards}. {face_rule} Use each card once with + - * / ( ) to make {target}.\n"
    'Answer as {{"cards": [...], "number": [...], "formula": "..."}}.'
)


def compact_face_rule(rules: Rules) -> str:
    """The compact layout's rule sentence: 'J Q K count as 10.' or 'J Q K count as 11 12 13.'."""
    j, q, k = rules.face_values
    values = str(j) if j == q == k else f"{j} {q} {k}"
    return f"J Q K count as {values}."


def _python_list(items: object) -> str:
    return repr(list(items))  # type: ignore[call-overload]


def task_prompt(
    hand: Hand, rules: Rules | None = None, *, vision: bool = False, layout: Layout = "paper"
) -> str:
    """The first user turn: the task, the rule and (text variant) the cards.

    In the vision variant the cards are only in the image, which the chat puts before this text.
    """
    rules = rules or hand.rules
    if layout == "paper":
        if vision:
            cards_sentence = (
                f"You are observing these {_count_word(len(hand.cards))} cards in the image."
            )
            input_section = ""
            output_intro = "Your response should be a valid json file in the following format:\n"
        else:
            cards_sentence = f"You will receive a set of {len(hand.cards)} cards."
            input_section = f"\n[Input]\nCards: {_python_list(hand.ranks)}\n"
            output_intro = ""
        return _PAPER_TASK.format(
            target=rules.target,
            cards_sentence=cards_sentence,
            face_card_msg=rules.face_card_message,
            input_section=input_section,
            output_intro=output_intro,
        )
    if layout == "compact":
        cards = "in the image" if vision else " ".join(hand.ranks)
        return _COMPACT_TASK.format(
            cards=cards, face_rule=compact_face_rule(rules), target=rules.target
        )
    raise ValueError(f"unknown prompt layout {layout!r}; expected 'paper' or 'compact'")


def _count_word(n: int) -> str:
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    return words.get(n, str(n))


def response_text(hand: Hand, formula: str, *, layout: Layout = "paper") -> str:
    """An answer in the layout's format: recognised cards, their numbers, the formula ``=target``."""
    target = hand.rules.target
    full = formula if "=" in formula else f"{formula}={target}"
    if layout == "paper":
        return _PAPER_RESPONSE.format(
            cards=_python_list(hand.ranks), numbers=_python_list(hand.numbers), formula=full
        )
    if layout == "compact":
        cards = ", ".join(f"'{rank}'" for rank in hand.ranks)
        numbers = ", ".join(str(n) for n in hand.numbers)
        return f'{{"cards": [{cards}], "number": [{numbers}], "formula": "{full}"}}'
    raise ValueError(f"unknown prompt layout {layout!r}; expected 'paper' or 'compact'")

"""The one verifier of V-IRL: rewards and feedback for a model answer at one rail point.

``paper`` mode reproduces the official ``step_rewards_virl`` (VIRL.md §1.6): exact string match
of the action; on a wrong action, −1.5 if the answer's observation mentions "intersection" but
the ground-truth *landmark* string does not (so the check fires whenever a wrong answer says
"intersection", even at a real intersection), else −1. ``exact`` mode fixes two things and says
so: actions are compared after ``normalize_action`` (case, spaces, quotes), and the intersection
check uses the full ground-truth observation (landmark + intersection part), in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .model import RailEntry
from .parser import ParsedAnswer, normalize_action, parse_answer

Mode = Literal["exact", "paper"]
Outcome = Literal["correct", "wrong_action", "wrong_observation", "step_limit"]

CORRECT_ACTION = 1.0
INCORRECT_ACTION = -1.0
INCORRECT_OBSERVATION = -1.5
STEP_LIMIT = -1.0

OUTPUT_SCHEMA = (
    "{\n"
    '  "current observation": your current observation,\n'
    '  "current instruction": the sentence of the instruction to execute now,\n'
    '  "action": the action to take, from the action space,\n'
    "}"
)
"""The [Output] schema; wrong-answer messages repeat it, as the official ones do."""

MSG_CORRECT = "Correct action."
MSG_NOT_AT_INTERSECTION = (
    "you are not at any intersection. Please avoid this observation and try again in the same "
    "format: "
)
MSG_AT_INTERSECTION = (
    "you are at an intersection. Please avoid this observation and try again in the same format: "
)
MSG_WRONG_ACTION = (
    "you make incorrect action. Please avoid this action and try again in the same format: "
)
MSG_STEP_LIMIT = "step_limit_reached"


@dataclass(frozen=True)
class Verdict:
    """Reward, outcome and feedback message for one answer, plus what was parsed from it."""

    reward: float
    outcome: Outcome
    message: str
    parsed: ParsedAnswer
    action: str | None
    """The action as compared (normalised in ``exact`` mode)."""

    @property
    def correct(self) -> bool:
        """True when the action matched the ground truth."""
        return self.outcome == "correct"


def verify(
    text: object,
    entry: RailEntry,
    *,
    absolute: bool,
    mode: Mode = "exact",
    schema: str = OUTPUT_SCHEMA,
) -> Verdict:
    """Grade ``text`` at ``entry`` under the absolute or relative rule; never raises on text."""
    if mode not in ("exact", "paper"):
        raise ValueError(f"mode must be 'exact' or 'paper', got {mode!r}")
    parsed = parse_answer(text)
    truth = entry.action(absolute)
    if mode == "exact":
        action = normalize_action(parsed.action)
        observation = (parsed.observation or "").lower()
        reference = entry.observation.lower()
    else:
        action = parsed.action
        observation = parsed.observation or ""
        reference = entry.landmark_obs
    if action == truth:
        return Verdict(CORRECT_ACTION, "correct", MSG_CORRECT, parsed, action)
    says = "intersection" in observation
    truly = "intersection" in reference
    if says and not truly:
        msg = MSG_NOT_AT_INTERSECTION + schema
        return Verdict(INCORRECT_OBSERVATION, "wrong_observation", msg, parsed, action)
    if truly and not says:
        msg = MSG_AT_INTERSECTION + schema
        return Verdict(INCORRECT_OBSERVATION, "wrong_observation", msg, parsed, action)
    return Verdict(INCORRECT_ACTION, "wrong_action", MSG_WRONG_ACTION + schema, parsed, action)

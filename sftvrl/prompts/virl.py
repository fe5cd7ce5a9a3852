"""V-IRL prompts: the paper's layout (``paper``) and a short one for tiny models (``compact``).

The ``paper`` layout follows the official ``Q_VIRL_L`` / ``Q_VIRL_VL`` templates section by
section (PAPER.md §2.2, VIRL.md §1.5): [Task Description], [Instruction], [Observation format] (VL
only), [Action space], [Observations and actions sequence], [Output]. Section names, action
strings and observation phrases are the official ones; the prose is our own wording. The
expert response (the SFT target) fills the three output keys with the oracle observation, the
current instruction sentence and the ground-truth action.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from sftvrl.envs.virl.geometry import COMPASS, RELATIVE
from sftvrl.envs.virl.model import Rail
from sftvrl.envs.virl.verifier import OUTPUT_SCHEMA

PromptStyle = Literal["paper", "compact"]

VL_CURRENT_OBS = "You observe an image of 4 views; "
"""In V-IRL-VL the current O line is this (plus the intersection flag); the image does the rest."""

COMPACT_SCHEMA = '{"current observation": "...", "current instruction": "...", "action": "..."}'

_TASK_L = (
    "You are an expert in navigation. You will receive a numbered list of navigation "
    "instructions, and at every step your current observation together with the history of your "
    "past observations and actions. First work out which sentence of the instruction has to be "
    "executed now, then choose the action to take."
)
_TASK_VL = (
    "You are an expert in navigation. You will receive a numbered list of navigation "
    "instructions, an image of the street views around you, and the history of your past "
    "observations and actions. First work out which sentence of the instruction has to be "
    "executed now, then choose the action to take."
)
_OBS_FORMAT = (
    "The image is a 2x2 grid of street views around you, arranged as [front, right / back, left]. "
    "Please identify if any landmarks in the instruction are visible in the street views."
)


def turn_choices(absolute: bool) -> tuple[str, ...]:
    """Allowed arguments of ``turn_direction`` under the absolute or relative rule."""
    return COMPASS if absolute else RELATIVE


def action_space_text(absolute: bool) -> str:
    """The three-line [Action space] block; only the list of allowed x changes between rules."""
    choices = "[" + ", ".join(f"'{c}'" for c in turn_choices(absolute)) + "]"
    return (
        '"forward()": move forward one step\n'
        f'"turn_direction(x)": turn to face direction x, where x is one of {choices}\n'
        '"stop()": the navigation is finished'
    )


def current_observation(rail: Rail, index: int, *, vision: bool) -> str:
    """The current O line: oracle text for L; "You observe an image of 4 views; ..." for VL."""
    entry = rail.entries[index]
    if vision:
        return VL_CURRENT_OBS + entry.intersection_obs
    return entry.observation


def history_text(rail: Rail, index: int, *, absolute: bool, vision: bool) -> str:
    """O/A lines of the expert path up to ``index`` (past O lines keep their oracle text)."""
    lines = []
    for i, entry in enumerate(rail.entries[:index], start=1):
        lines.append(f"O_{i}: {entry.observation}")
        lines.append(f"A_{i}: {entry.action(absolute)}")
    n = index + 1
    lines.append(f"O_{n}: {current_observation(rail, index, vision=vision)}")
    lines.append(f"A_{n}: ")
    return "\n".join(lines)


def output_schema(style: PromptStyle = "paper") -> str:
    """The answer format the prompt asks for, and that feedback messages repeat."""
    return OUTPUT_SCHEMA if style == "paper" else COMPACT_SCHEMA


def build_prompt(
    rail: Rail,
    index: int,
    *,
    absolute: bool,
    vision: bool,
    style: PromptStyle = "paper",
    only_json: bool = False,
    layout_text: str = "[front, right / back, left]",
) -> str:
    """The user prompt at rail position ``index``; rebuilt from scratch after each correct step.

    ``only_json`` adds "Please only output the json." as the official ``_EG`` variants do.
    ``layout_text`` is used by the compact style to state the grid layout actually rendered.
    """
    if style == "compact":
        return compact_prompt(
            rail,
            index,
            absolute=absolute,
            turns=turn_choices(absolute),
            vision=vision,
            layout=layout_text,
        )
    if style != "paper":
        raise ValueError(f"prompt style must be 'paper' or 'compact', got {style!r}")
    parts = [
        "[Task Description]",
        _TASK_VL if vision else _TASK_L,
        "",
        "[Instruction]",
        rail.instruction,
        "",
    ]
    if vision:
        parts += ["[Observation format]", _OBS_FORMAT, ""]
    parts += [
        "[Action space]",
        action_space_text(absolute),
        "",
        "[Observations and actions sequence]",
        history_text(rail, index, absolute=absolute, vision=vision),
        "",
        "[Output]",
        "Your response should be a valid json file in the following format:",
        OUTPUT_SCHEMA,
    ]
    if only_json:
        parts.append("Please only output the json.")
    return "\n".join(parts)


def compact_prompt(
    rail: Rail,
    index: int,
    *,
    absolute: bool,
    turns: Sequence[str],
    vision: bool = False,
    layout: str = "[front, right / back, left]",
) -> str:
    """The compact prompt with ``turns`` listed as the allowed turn directions (the history's
    past actions use compass words when ``absolute``, else relative words).

    The environment lists one rule's whole vocabulary (:func:`turn_choices`); the tiny tier's
    foundation corpus lists other vocabularies, so the model learns to read the list.
    """
    allowed = ", ".join(turns)
    parts = [
        "Follow the route instructions.",
        rail.instruction,
        f"Actions: forward() | turn_direction(x), x in {{{allowed}}} | stop()",
    ]
    if vision:
        parts.append(f"Image: 4 street views {layout}.")
    parts += [
        "History:",
        history_text(rail, index, absolute=absolute, vision=vision),
        f"Answer: {COMPACT_SCHEMA}",
    ]
    return "\n".join(parts)


def expert_response(rail: Rail, index: int, *, absolute: bool, style: PromptStyle = "paper") -> str:
    """The optimal answer at ``index``: oracle observation, current sentence, correct action."""
    entry = rail.entries[index]
    fields = {
        "current observation": entry.observation,
        "current instruction": entry.instruction,
        "action": entry.action(absolute),
    }
    if style == "compact":
        return json.dumps(fields, ensure_ascii=False)
    body = ",\n".join(
        f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in fields.items()
    )
    return "{\n" + body + ",\n}"


def sft_pairs(
    rail: Rail, *, absolute: bool, vision: bool, style: PromptStyle = "paper"
) -> list[tuple[str, str]]:
    """(prompt, expert response) for every rail position, teacher-forced (paper App. C.1)."""
    return [
        (
            build_prompt(rail, i, absolute=absolute, vision=vision, style=style),
            expert_response(rail, i, absolute=absolute, style=style),
        )
        for i in range(len(rail.entries))
    ]

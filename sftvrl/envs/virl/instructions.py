"""Template instructions and the ``milestone_info`` text format (VIRL.md §1.2, §2.3).

The sentence shapes are the official ones, quirks included ("reach destination where The
destination X ..."). Every turn sentence carries both the relative and the compass word, so the
instruction text is identical under both action rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .geometry import relative_word
from .model import NO_LANDMARK, Milestone


def landmark_expression(name: str | None, relation: str | None) -> str:
    """ "X is on your R" at a turn point, or "No landmark nearby" when there is no landmark."""
    if name is None or relation is None:
        return NO_LANDMARK
    return f"{name} is on your {relation}"


def destination_expression(name: str, relation: str) -> str:
    """The last block's expression: "The destination X is on your R"."""
    return f"The destination {name} is on your {relation}"


def relative_words(
    milestones: Sequence[Milestone], init_heading: float, *, wrap: bool
) -> list[str]:
    """Relative word of every block: block 0 against the initial heading, then leg to leg."""
    words, prev = [], float(init_heading)
    for m in milestones:
        words.append(relative_word(prev, float(m.bearing), wrap=wrap))
        prev = float(m.bearing)
    return words


def turn_sentence(i: int, relative: str, compass: str) -> str:
    """ "First, turn R to face C." for the first block, "Turn R to face C." after."""
    head = "First, turn" if i == 0 else "Turn"
    return f"{head} {relative} to face {compass}."


def move_sentence(m: Milestone) -> str:
    """The "Move forward until ..." sentence of a block."""
    if m.is_destination:
        return f"Move forward until you reach destination where {m.expression}."
    if m.expression == NO_LANDMARK:
        return "Move forward until you reach next intersection."
    return f"Move forward until you reach next intersection where {m.expression}."


def sentences(milestones: Sequence[Milestone], relatives: Sequence[str]) -> list[str]:
    """Two sentences per block (turn, move), in order; number them with ``numbered``."""
    out: list[str] = []
    for i, (m, rel) in enumerate(zip(milestones, relatives, strict=True)):
        out.append(turn_sentence(i, rel, m.compass))
        out.append(move_sentence(m))
    return out


def numbered(lines: Sequence[str]) -> str:
    """ "1. ...\\n2. ..." as the [Instruction] section shows it."""
    return "\n".join(f"{i}. {s}" for i, s in enumerate(lines, start=1))


# -- milestone_info ------------------------------------------------------------------------------


def format_milestone_info(
    milestones: Sequence[Milestone], legs_m: Sequence[float], headings: Sequence[int]
) -> str:
    """Serialise milestones as the five-field pseudo-JSON blocks V-IRL's collector writes."""
    blocks = []
    for m, leg, head in zip(milestones, legs_m, headings, strict=True):
        blocks.append(
            "{\n"
            f'    "intersection_idx": "{m.index}",\n'
            f'    "landmarks": "{m.expression}",\n'
            f'    "distance": "{leg:.1f} meters",\n'
            f'    "human_heading": "{head}",\n'
            f'    "to_next_intersection_heading": "{m.bearing} ({m.compass})"\n'
            "}"
        )
    return "\n".join(blocks)


_LINE = re.compile(r'^\s*"?([A-Za-z_]+)"?\s*:\s*(.*?)\s*$')
_HEADING = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\(\s*([a-z]+)\s*\)\s*$")


def parse_milestone_info(text: str) -> list[dict[str, str]]:
    """Split ``milestone_info`` on closing braces and read its ``key: value`` lines.

    Quotes and trailing commas are stripped, as the official reader does. Blocks without any
    key are skipped.
    """
    blocks: list[dict[str, str]] = []
    for chunk in text.split("}"):
        fields: dict[str, str] = {}
        for line in chunk.replace("{", "\n").splitlines():
            match = _LINE.match(line)
            if match:
                value = match.group(2).rstrip(",").strip().strip('"').strip("'")
                fields[match.group(1)] = value
        if fields:
            blocks.append(fields)
    return blocks


def parse_heading(value: str) -> tuple[int, str]:
    """ "177 (south)" → (177, "south"); raises ValueError naming the bad value."""
    match = _HEADING.match(value)
    if not match:
        raise ValueError(
            f"cannot read heading {value!r}; expected '<degrees> (<compass word>)' like '177 (south)'"
        )
    return int(float(match.group(1))) % 360, match.group(2)

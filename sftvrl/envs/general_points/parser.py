"""Reading a model's GeneralPoints answer: the JSON-like block with ``cards``, ``number``, ``formula``.

Models write the answer loosely: a trailing comma (the paper's own schema has one), single quotes,
code fences, prose around it, keys in any order. :func:`parse_response` tolerates all of that and
never raises. It reads a bounded prefix of the text with linear-time patterns, so a megabyte of
garbage costs milliseconds. (The official parser, with its quirks, is reproduced separately by the
``paper`` verifier mode.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RESPONSE_CHARS = 65_536
"""Only this much of a response is read; an answer longer than this is not an answer."""

MAX_FIELD_CHARS = 1_000
"""Longest field value read (a formula for four cards has about 20 characters)."""

_AFTER_KEY = r"""["'`]?\s*[:=]\s*"""
_FORMULA_VALUE = re.compile(
    _AFTER_KEY + r"""(?:"([^"\n]{0,1000})"|'([^'\n]{0,1000})'|([^,\n}]{0,1000}))"""
)
_LIST_VALUE = re.compile(r"s?" + _AFTER_KEY + r"\[([^\]\n]{0,1000})\]")
"""Patterns anchored just after a key word (found by a fast ``rfind``), so a scan is linear."""

_RANK_NAMES = {"ACE": "A", "JACK": "J", "QUEEN": "Q", "KING": "K", "T": "10", "1": "A"}
_SUIT_MARKS = re.compile(r"[♠♣♥♦♤♧♡♢]|^(?:[SHDC](?=(?:10|[2-9AJQKT])$))|(?<=[0-9AJQKT])[SHDC]$")


def normalise_rank(item: str) -> str:
    """A card as a plain rank: strip quotes, spaces and suit marks; 'T' or '1' -> '10' / 'A'.

    'K', "'K'", 'king', 'SK', 'K♠' all become 'K'; unknown text is returned upper-cased, so it
    simply fails to match a real rank.
    """
    text = item.strip().strip("\"'`“”‘’ ").upper()
    text = _SUIT_MARKS.sub("", text).strip()
    return _RANK_NAMES.get(text, text)


@dataclass(frozen=True)
class ParsedResponse:
    """The fields read from a response; a field the model did not write is ``None``.

    ``formula`` is as written (including any ``=24``); ``cards`` are normalised plain ranks;
    ``numbers`` are ints, or ``None`` when missing or not all integers.
    """

    text: str
    formula: str | None
    cards: tuple[str, ...] | None
    numbers: tuple[int, ...] | None

    @property
    def formula_lhs(self) -> str | None:
        """The formula up to its first '=' (the part that is verified)."""
        return None if self.formula is None else self.formula.split("=", 1)[0]


def _last_value(window: str, lowered: str, key: str, pattern: re.Pattern[str]) -> re.Match | None:
    """The value after the last occurrence of ``key`` (any case) that has one."""
    end = len(lowered)
    while (at := lowered.rfind(key, 0, end)) >= 0:
        if match := pattern.match(window, at + len(key)):
            return match
        end = at
    return None


def _items(body: str) -> list[str]:
    return [part for part in (p.strip() for p in body.split(",")) if part]


def parse_response(text: object) -> ParsedResponse:
    """Read ``formula``, ``cards`` and ``number`` from a model's answer; never raises.

    When a field occurs several times, the last one wins (models often restate the schema or draft
    an answer before the final one).
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    window = text[:MAX_RESPONSE_CHARS]
    lowered = window.lower()

    formula = None
    if match := _last_value(window, lowered, "formula", _FORMULA_VALUE):
        formula = next(g for g in match.groups() if g is not None).strip()

    cards = None
    if match := _last_value(window, lowered, "cards", _LIST_VALUE):
        cards = tuple(normalise_rank(item) for item in _items(match.group(1)))

    numbers = None
    if match := _last_value(window, lowered, "number", _LIST_VALUE):
        raw = [item.strip("\"'` ") for item in _items(match.group(1))]
        if raw and all(re.fullmatch(r"-?[0-9]{1,6}", item) for item in raw):
            numbers = tuple(int(item) for item in raw)

    return ParsedResponse(text=text, formula=formula, cards=cards, numbers=numbers)

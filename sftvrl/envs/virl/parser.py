"""Tolerant reader of the model's JSON-like answer; any input gives a result, nothing raises.

The official template ends its schema with a trailing comma, so strict JSON usually fails and the
official code falls back to a regex on ``"action": "..."``. This parser tries strict JSON, then
JSON with trailing commas removed, then per-key regexes (double or single quotes). Input is cut to
``MAX_CHARS`` and every regex is linear, so the time is bounded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_CHARS = 8000
KEYS = {
    "action": "action",
    "observation": "current observation",
    "instruction": "current instruction",
}

_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PATTERNS = {
    field: (
        re.compile(r'"' + re.escape(key) + r'"\s*:\s*"([^"\n]*)"'),
        re.compile(r"'" + re.escape(key) + r"'\s*:\s*'([^'\n]*)'"),
    )
    for field, key in KEYS.items()
}


@dataclass(frozen=True)
class ParsedAnswer:
    """The three fields of an answer (None where absent) and whether it was strict JSON."""

    action: str | None
    observation: str | None
    instruction: str | None
    strict_json: bool = False


def _from_mapping(obj: object) -> dict[str, str | None] | None:
    if not isinstance(obj, dict):
        return None
    out: dict[str, str | None] = {}
    for field, key in KEYS.items():
        value = obj.get(key)
        out[field] = value if isinstance(value, str) else None
    return out


def parse_answer(text: object) -> ParsedAnswer:
    """Read ``action``, ``current observation`` and ``current instruction`` from model text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text[:MAX_CHARS]
    try:
        got = _from_mapping(json.loads(text))
    except (ValueError, RecursionError):
        got = None
    if got is not None:
        return ParsedAnswer(got["action"], got["observation"], got["instruction"], strict_json=True)
    lo, hi = text.find("{"), text.rfind("}")
    if 0 <= lo < hi:
        try:
            got = _from_mapping(json.loads(_TRAILING_COMMA.sub(r"\1", text[lo : hi + 1])))
        except (ValueError, RecursionError):
            got = None
    fields: dict[str, str | None] = dict(got) if got else dict.fromkeys(KEYS)
    for field, patterns in _PATTERNS.items():
        if fields.get(field) is None:
            for pattern in patterns:
                match = pattern.search(text)
                if match:
                    fields[field] = match.group(1)
                    break
    return ParsedAnswer(fields["action"], fields["observation"], fields["instruction"])


_SPACES = re.compile(r"\s+")


def normalize_action(action: str | None) -> str | None:
    """Canonical form used by ``exact`` mode: lower case, single spaces, no quotes or padding.

    ``" Turn_Direction( 'North' ) "`` → ``turn_direction(north)``; bare ``forward``/``stop`` get
    their parentheses. ``paper`` mode compares the raw string instead.
    """
    if action is None:
        return None
    s = _SPACES.sub(" ", action.strip().lower()).replace('"', "").replace("'", "")
    s = re.sub(r"\s*\(\s*", "(", s)
    s = re.sub(r"\s*\)", ")", s)
    if s in ("forward", "stop"):
        s += "()"
    return s

"""Headings, compass words and turn labels: the discretisation both action spaces are built on.

Conventions (VIRL.md §2.2): positions are metres in a local frame (x east, y north); a bearing is
in compass degrees (0 = north, 90 = east) and is truncated to an integer when written into a
route, as the official ``milestone_info`` does.

* **Absolute label**: nearest of the 8 compass words at 45° spacing; a tie goes to the earlier
  word of ``COMPASS`` (north, northeast, ...).
* **Relative label**: Δ = new − previous bearing. ``wrap=True`` (``exact`` mode) first wraps Δ
  into [−180, 180), so 350° → 10° is a 20° right turn; ``wrap=False`` (``paper`` mode) keeps the
  raw difference as the official code does, so that turn is labelled "left". Then Δ < −45 →
  left, Δ > 45 → right, −45 ≤ Δ ≤ 0 → slightly left (going straight counts as slightly left,
  the vocabulary has no "straight"), 0 < Δ ≤ 45 → slightly right.
* **Relation of a place** to a walker: (bearing to place − heading) mod 360 in 45° bins.
"""

from __future__ import annotations

import math

COMPASS: tuple[str, ...] = (
    "north",
    "northeast",
    "east",
    "southeast",
    "south",
    "southwest",
    "west",
    "northwest",
)
"""The absolute action vocabulary, in bin order (bin k is centred on 45·k degrees)."""

RELATIVE: tuple[str, ...] = ("left", "right", "slightly left", "slightly right")
"""The relative action vocabulary, in the order the action-space text lists it."""

RELATIONS: tuple[str, ...] = (
    "front",
    "right front",
    "right",
    "right behind",
    "behind",
    "left behind",
    "left",
    "left front",
)
"""Egocentric relation words, bin k centred on 45·k degrees clockwise from the heading."""


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Compass bearing in [0, 360) from point ``a`` to point ``b`` (local metres, y north)."""
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


def int_bearing(a: tuple[float, float], b: tuple[float, float]) -> int:
    """The bearing truncated to an integer, as the official route files store it."""
    return int(bearing(a, b)) % 360


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Euclidean distance in metres."""
    return math.hypot(b[0] - a[0], b[1] - a[1])


def angle_diff(a: float, b: float) -> float:
    """Signed smallest difference ``b − a`` in [−180, 180)."""
    return (b - a + 180.0) % 360.0 - 180.0


def compass_word(deg: float) -> str:
    """Nearest compass word; ties go to the earlier word of ``COMPASS``."""
    best, best_d = COMPASS[0], 1e9
    for k, word in enumerate(COMPASS):
        d = abs(angle_diff(45.0 * k, deg))
        if d < best_d - 1e-9:
            best, best_d = word, d
    return best


def relative_word(prev_deg: float, new_deg: float, *, wrap: bool) -> str:
    """Relative turn word from ``prev_deg`` to ``new_deg``; ``wrap=False`` is the paper's quirk."""
    delta = angle_diff(prev_deg, new_deg) if wrap else new_deg - prev_deg
    if delta < -45:
        return "left"
    if delta > 45:
        return "right"
    if delta <= 0:
        return "slightly left"
    return "slightly right"


def relation_word(heading: float, target_bearing: float) -> str:
    """Where something at ``target_bearing`` lies for a walker facing ``heading``."""
    rel = (target_bearing - heading) % 360.0
    return RELATIONS[int(((rel + 22.5) % 360.0) // 45.0)]


def turn_action(word: str) -> str:
    """The action string for a turn, e.g. ``turn_direction(slightly left)``."""
    return f"turn_direction({word})"


def turn_word(action: str | None) -> str | None:
    """The direction of a turn action (``turn_action``'s inverse); None for any other action."""
    if action and action.startswith("turn_direction(") and action.endswith(")"):
        return action[len("turn_direction(") : -1]
    return None


FORWARD = "forward()"
STOP = "stop()"


EARTH_RADIUS_M = 6371008.8


def to_local(lat: float, lng: float, origin: tuple[float, float]) -> tuple[float, float]:
    """(lat, lng) → local metres (x east, y north) around ``origin``; exact enough for a city."""
    lat0, lng0 = origin
    x = math.radians(lng - lng0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return (x, y)


def to_latlng(xy: tuple[float, float], origin: tuple[float, float]) -> tuple[float, float]:
    """Inverse of ``to_local``."""
    lat0, lng0 = origin
    lat = lat0 + math.degrees(xy[1] / EARTH_RADIUS_M)
    lng = lng0 + math.degrees(xy[0] / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return (lat, lng)

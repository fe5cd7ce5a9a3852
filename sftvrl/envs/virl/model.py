"""Plain records shared by the synthetic and the real route sources (VIRL.md §5.3).

Both sources produce ``RouteSpec`` values in a local metric frame (x east, y north), so the rail
builder, verifier, prompts and environment never know where a route came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

XY = tuple[float, float]
EntryKind = Literal["start", "forward", "turn", "stop"]

NO_LANDMARK = "No landmark nearby"
"""Landmark expression of a turn point without landmark (singular, as in the instructions)."""
NO_LANDMARKS = "No landmarks nearby"
"""Observation at the start and at forward points (plural, as the official code writes it)."""
INTERSECTION = "You observe an intersection"


@dataclass(frozen=True)
class Place:
    """A named storefront: a landmark candidate, a destination or a decoy in the views."""

    id: int
    name: str
    category: str
    reviews: int
    xy: XY
    corner: bool
    look: int
    """Seed for appearance details; the style decides what it means."""


@dataclass(frozen=True)
class Milestone:
    """One key position of a route: a turn point, or the destination when ``is_destination``."""

    index: int
    xy: XY
    bearing: int
    """Integer straight-line bearing from the previous key position (or the start) to here."""
    compass: str
    expression: str
    """Landmark expression: "X is on your R", "No landmark nearby" or "The destination X ..."."""
    landmark: str | None
    is_destination: bool


@dataclass(frozen=True)
class RouteSpec:
    """A route as both sources produce it; ``init_heading`` 0 means "random at every reset"."""

    route_id: str
    start: XY
    milestones: tuple[Milestone, ...]
    init_heading: int = 0
    city: str = ""
    length_m: float = 0.0
    destination: str = ""

    def __post_init__(self) -> None:
        if not self.milestones:
            raise ValueError(f"route {self.route_id!r} has no milestones")
        if not self.milestones[-1].is_destination:
            raise ValueError(f"route {self.route_id!r}: the last milestone must be the destination")


@dataclass(frozen=True)
class RailEntry:
    """One movable point of the expert rail and everything the agent is shown or graded on."""

    xy: XY
    viewpoint: str
    heading: float
    kind: EntryKind
    absolute_action: str
    relative_action: str
    landmark_obs: str
    intersection_obs: str
    instruction: str
    instruction_index: int
    landmark: str | None = None
    """Ground-truth landmark name at this point (recognition diagnostics), if any."""

    @property
    def observation(self) -> str:
        """The oracle observation line: landmark part, ``"; "``, intersection part."""
        return f"{self.landmark_obs}; {self.intersection_obs}"

    def action(self, absolute: bool) -> str:
        """The ground-truth action under the absolute or the relative rule."""
        return self.absolute_action if absolute else self.relative_action


@dataclass(frozen=True)
class Rail:
    """The expert path of one episode: entries, numbered instruction and the draws behind it."""

    route: RouteSpec
    entries: tuple[RailEntry, ...]
    sentences: tuple[str, ...]
    init_heading: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def instruction(self) -> str:
        """The global numbered instruction: "1. ...\\n2. ..."."""
        return "\n".join(f"{i}. {s}" for i, s in enumerate(self.sentences, start=1))

"""Turn a route into the expert rail of one episode, as the official env does (VIRL.md §1.4).

The rail is: the start (first turn), 0–4 interpolated forward points per leg, each turn point
(the next turn, with its landmark and "You observe an intersection") and the destination
(``stop()``). The random draws (initial heading, dropped forward points) come from the episode's
generator, so a seed fixes the rail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .geometry import FORWARD, STOP, distance, turn_action
from .instructions import relative_words, sentences
from .model import INTERSECTION, NO_LANDMARKS, XY, Rail, RailEntry, RouteSpec

Snapper = Callable[[XY], "tuple[str, XY] | None"]
"""Maps a position to (viewpoint id, snapped position), or None when no viewpoint is near."""

DROP_RATE = 0.5
STRAIGHT_LINE_LENGTH = 5
MIN_LEG_M = 5.0
END_GAP_M = 8.0


def build_rail(
    route: RouteSpec,
    rng: np.random.Generator,
    snap: Snapper,
    *,
    wrap: bool,
    drop_rate: float = DROP_RATE,
    straight_line_length: int = STRAIGHT_LINE_LENGTH,
) -> Rail:
    """The expert rail for ``route``; raises ValueError if a key position has no viewpoint."""
    init = route.init_heading if route.init_heading else int(rng.integers(0, 360))
    ms = route.milestones
    rels = relative_words(ms, init, wrap=wrap)
    lines = sentences(ms, rels)

    def must_snap(xy: XY, what: str) -> tuple[str, XY]:
        hit = snap(xy)
        if hit is None:
            raise ValueError(
                f"route {route.route_id}: no viewpoint within 20 m of the {what} at {xy}; "
                "the panorama mapping does not cover this route"
            )
        return hit

    vp, sxy = must_snap(route.start, "start")
    entries = [
        RailEntry(
            xy=sxy,
            viewpoint=vp,
            heading=float(init),
            kind="start",
            absolute_action=turn_action(ms[0].compass),
            relative_action=turn_action(rels[0]),
            landmark_obs=NO_LANDMARKS,
            intersection_obs="",
            instruction=lines[0],
            instruction_index=1,
        )
    ]
    prev = route.start
    for i, m in enumerate(ms):
        leg = distance(prev, m.xy)
        if leg > MIN_LEG_M:
            for k in range(1, straight_line_length + 1):
                if rng.random() < drop_rate:
                    continue
                f = k / straight_line_length
                hit = snap((prev[0] + f * (m.xy[0] - prev[0]), prev[1] + f * (m.xy[1] - prev[1])))
                if hit is None:
                    continue
                if distance(hit[1], prev) <= END_GAP_M or distance(hit[1], m.xy) <= END_GAP_M:
                    continue
                entries.append(
                    RailEntry(
                        xy=hit[1],
                        viewpoint=hit[0],
                        heading=float(m.bearing),
                        kind="forward",
                        absolute_action=FORWARD,
                        relative_action=FORWARD,
                        landmark_obs=NO_LANDMARKS,
                        intersection_obs="",
                        instruction=lines[2 * i + 1],
                        instruction_index=2 * i + 2,
                    )
                )
        vp, mxy = must_snap(m.xy, f"key position {m.index}")
        if m.is_destination:
            entries.append(
                RailEntry(
                    xy=mxy,
                    viewpoint=vp,
                    heading=float(m.bearing),
                    kind="stop",
                    absolute_action=STOP,
                    relative_action=STOP,
                    landmark_obs=m.expression,
                    intersection_obs="",
                    instruction=lines[2 * i + 1],
                    instruction_index=2 * i + 2,
                    landmark=m.landmark,
                )
            )
            break
        nxt = ms[i + 1]
        entries.append(
            RailEntry(
                xy=mxy,
                viewpoint=vp,
                heading=float(m.bearing),
                kind="turn",
                absolute_action=turn_action(nxt.compass),
                relative_action=turn_action(rels[i + 1]),
                landmark_obs=m.expression,
                intersection_obs=INTERSECTION,
                instruction=lines[2 * i + 2],
                instruction_index=2 * i + 3,
                landmark=m.landmark,
            )
        )
        prev = m.xy
    return Rail(route=route, entries=tuple(entries), sentences=tuple(lines), init_heading=init)

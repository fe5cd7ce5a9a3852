"""Route sources: which routes a split holds, how to snap positions, how to draw views.

Synthetic splits (defaults, no downloads):

| split | city and look | routes | rule |
|---|---|---|---|
| ``id`` | training city, ``metro_ny`` look | 1000 NYC-like routes, sampled at random | absolute |
| ``heldout`` | training city, ``metro_ny`` | 200 further routes never in ``id`` | absolute |
| ``rule_ood`` | same as ``id`` | same routes | relative |
| ``visual_ood`` | the ``id`` routes drawn in the nine world looks (route i in look i mod 9) | same routes and text as ``id`` | absolute |
| ``mini`` | nine small cities, one per world look, test name pool | 18 short routes (2 per city), fixed order | absolute |

``mini`` mirrors V-IRL's VLN-mini benchmark (the paper's visual OOD); ``visual_ood`` isolates
the pure appearance shift. The ``id`` pool is also the evaluation pool, as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .city import City, CityParams
from .model import XY, RailEntry, RouteSpec
from .routes import MINI_FILTER, NYC_FILTER, city_and_routes
from .styles import TRAIN_STYLE, WORLD_STYLES, get_style
from .views import Look, render_grid

SPLITS: tuple[str, ...] = ("id", "heldout", "rule_ood", "visual_ood", "mini")
MINI_ROUTES_PER_CITY = 2


class RouteSource(Protocol):
    """What the environment needs from a data source (synthetic or the released files)."""

    split: str
    ordered: bool

    def __len__(self) -> int: ...

    def route(self, i: int) -> RouteSpec: ...

    def style(self, i: int) -> str: ...

    def snapper(self, i: int) -> Callable[[XY], tuple[str, XY] | None]: ...

    def render(self, i: int, entry: RailEntry, *, layout: str, size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class _Slot:
    city: City
    route: RouteSpec
    style: str


class SyntheticSource:
    """Routes and views from seeded procedural cities; see the module docstring for splits."""

    def __init__(
        self,
        split: str = "id",
        *,
        seed: int = 0,
        n_routes: int = 1000,
        n_heldout: int = 200,
        style: str | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown V-IRL split {split!r}; use one of {list(SPLITS)}")
        if style is not None:
            get_style(style)
        self.split = split
        self.ordered = split == "mini"
        self.seed = seed
        self._slots: list[_Slot] = []
        if split == "mini":
            for k, look in enumerate(WORLD_STYLES):
                city, routes = city_and_routes(
                    seed * 1000 + 101 + k,
                    CityParams.mini_like(),
                    f"mini-{look.name}",
                    MINI_ROUTES_PER_CITY,
                    MINI_FILTER,
                )
                self._slots += [_Slot(city, r, style or look.name) for r in routes]
            return
        city, routes = city_and_routes(
            seed, CityParams.nyc_like(), "metro", n_routes + n_heldout, NYC_FILTER
        )
        pool = routes[n_routes:] if split == "heldout" else routes[:n_routes]
        for i, r in enumerate(pool):
            if style is not None:
                look = style
            elif split == "visual_ood":
                look = WORLD_STYLES[i % len(WORLD_STYLES)].name
            else:
                look = TRAIN_STYLE
            self._slots.append(_Slot(city, r, look))

    def __len__(self) -> int:
        return len(self._slots)

    def route(self, i: int) -> RouteSpec:
        """The i-th route of the split."""
        return self._slots[i].route

    def style(self, i: int) -> str:
        """The look route i is drawn in."""
        return self._slots[i].style

    def city(self, i: int) -> City:
        """The city route i lies in."""
        return self._slots[i].city

    def snapper(self, i: int) -> Callable[[XY], tuple[str, XY] | None]:
        """Nearest-viewpoint lookup (20 m) in route i's city."""
        return self._slots[i].city.snap

    def render(self, i: int, entry: RailEntry, *, layout: str, size: int) -> np.ndarray:
        """The 2×2 view grid at a rail entry of route i."""
        slot = self._slots[i]
        look = Look.draw(get_style(slot.style), slot.route.route_id)
        return render_grid(slot.city, entry.xy, entry.heading, look, size=size, layout=layout)

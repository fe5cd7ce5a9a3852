"""The V-IRL-VL foundation: the V-IRL text foundation given eyes, as ``vision`` does for GP-VL.

The language model is ``tiny-text-virl`` (weights copied in); a fresh vision tower and projector
learn on the V-IRL-VL form of the same foundation corpus (``virl_corpus(vision=True)``): the
current observation line no longer names the landmark, the 2x2 grid of street views at that rail
point does, and the answer's observation has to say it. Routes come from the corpus's cities
(seeds 1-8, never the study's city 0) in the training look only, so the mini-benchmark's cities
and looks (V-IRL-VL's visual OOD) stay out of pretraining, as red suits do for GP-VL.

The recognition probe reads, for each of the four views, the category of the nearest storefront
sign the renderer drew in it (or none): the storefront's colour and pictogram are what a 56-pixel
view still shows of a sign, whose name is a few pixels tall. The targets come from
:func:`signs_in_view`, the list the renderer draws from, so a target is what the picture shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sftvrl.envs.virl.views import CATEGORY_COLOURS, signs_in_view, view_headings
from sftvrl.tiny.virl_corpus import city_env

SIGN_CLASSES: tuple[str, ...] = ("none", *sorted(CATEGORY_COLOURS))
"""The probe's classes per view: no sign, or the category of the nearest sign drawn in it."""

LAYOUT = "prompt"
"""The view order the tiny tier's compact prompt states: [front, right / back, left]."""

RailPoint = tuple[int, int, int]
"""(city seed, episode seed, rail index): what a V-IRL corpus chat's image shows."""


def rail_point(example: dict[str, Any]) -> RailPoint:
    """The rail point a corpus chat shows (its image is rendered from it, never stored)."""
    return (example["city_seed"], example["episode_seed"], example["rail_index"])


def render_point(point: RailPoint, view_size: int) -> tuple[np.ndarray, list[int]]:
    """The view grid at a rail point and the probe's class for each view (grid order)."""
    city_seed, episode_seed, index = point
    env = city_env(city_seed)
    _, info = env.reset(seed=episode_seed)
    route = info["route_index"]
    entry = env.rail.entries[index]
    grid = env.source.render(route, entry, layout=LAYOUT, size=view_size)
    city = env.source.city(route)
    classes = []
    for heading in view_headings(entry.heading, LAYOUT):
        signs = signs_in_view(city, entry.xy, heading)
        category = city.places[signs[0][1]].category if signs else "none"
        classes.append(SIGN_CLASSES.index(category))
    return grid, classes


class ViewBatches:
    """Pixel values and probe targets of corpus rail points, rendered once and kept.

    A grid takes 15-20 ms to draw, so each point is drawn the first time a batch asks for it
    and kept as half-precision pixel values (the corpus is a few thousand points, revisited every
    epoch).
    """

    def __init__(self, processor: Any, view_size: int) -> None:
        self.processor = processor
        self.view_size = view_size
        self._pixels: dict[RailPoint, torch.Tensor] = {}
        self._classes: dict[RailPoint, list[int]] = {}

    def _render(self, point: RailPoint) -> None:
        grid, classes = render_point(point, self.view_size)
        pixels = self.processor.image_processor([grid], return_tensors="pt")["pixel_values"][0]
        self._pixels[point] = pixels.half()
        self._classes[point] = classes

    def __call__(self, points: list[RailPoint]) -> dict[str, torch.Tensor]:
        for point in points:
            if point not in self._pixels:
                self._render(point)
        return {
            "pixel_values": torch.stack([self._pixels[p] for p in points]).float(),
            "targets": torch.tensor([self._classes[p] for p in points]),
        }

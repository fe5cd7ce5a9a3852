"""Synthetic street views drawn with PIL: pinhole cameras in a procedural city (VIRL.md §5.8).

Each view is a 90° perspective picture at a viewpoint and heading: sky and pavement, roads
projected from the street graph (so cross streets appear exactly at junctions), building facades
with windows and ornament, and every place within 55 m as a storefront with a sign carrying its
name and a category pictogram. Other places are always in view too, so recognising the landmark
means reading its name among decoys. Signs are drawn whole in the one view that contains their
bearing (a sign is never cut between two views), and only with a clear line of sight.

Four views make the 2×2 grid: layout ``prompt`` puts front, right, back, left (what the prompt
says); ``diagonal`` puts heading −135, −45, +45, +135, which is what the official code renders.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .city import City
from .geometry import angle_diff
from .model import XY
from .styles import RGB, Style

LAYOUTS: dict[str, tuple[float, float, float, float]] = {
    "prompt": (0.0, 90.0, 180.0, 270.0),
    "diagonal": (-135.0, -45.0, 45.0, 135.0),
}
"""View headings relative to the walker, in grid order top-left, top-right, bottom-left, bottom-right."""

CAMERA_HEIGHT = 2.5
ROAD_HALF_WIDTH = 5.0
NEAR = 0.4
PLACE_RANGE = 55.0
SCENE_RANGE = 140.0
FLOOR_HEIGHT = 3.2

CATEGORY_COLOURS: dict[str, RGB] = {
    "bank": (30, 80, 150),
    "restaurant": (170, 40, 40),
    "supermarket": (40, 140, 60),
    "bakery": (200, 140, 60),
    "cafe": (110, 70, 40),
    "pharmacy": (30, 150, 90),
    "hospital": (200, 30, 40),
    "spa": (150, 110, 170),
    "convenience_store": (230, 120, 20),
    "school": (60, 90, 160),
    "library": (120, 80, 50),
    "park": (60, 130, 50),
    "lodging": (80, 50, 110),
    "laundry": (60, 150, 190),
    "movie_theater": (140, 20, 60),
    "book_store": (100, 60, 30),
    "clothing_store": (190, 60, 130),
    "jewelry_store": (180, 150, 40),
    "gym": (40, 40, 40),
    "bar": (120, 30, 30),
}

ICONS: dict[str, str] = {
    "bank": "columns",
    "library": "book",
    "book_store": "book",
    "school": "book",
    "hospital": "cross",
    "pharmacy": "cross",
    "cafe": "cup",
    "bakery": "cup",
    "restaurant": "fork",
    "bar": "glass",
    "gym": "dumbbell",
    "lodging": "bed",
    "jewelry_store": "gem",
    "park": "tree",
    "spa": "drop",
    "laundry": "drop",
}


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (Python's ``hash`` is salted per run)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Look:
    """Per-route appearance draws: which sub-palette, how bright, how hazy."""

    style: Style
    palette: int
    brightness: float
    haze: float

    @classmethod
    def draw(cls, style: Style, key: str) -> Look:
        """Deterministic look for a route key (route id) in ``style``."""
        rng = np.random.default_rng(stable_seed(style.name, key))
        return cls(
            style=style,
            palette=int(rng.integers(len(style.facades))),
            brightness=float(rng.uniform(*style.brightness)),
            haze=float(rng.uniform(*style.haze)),
        )


@dataclass
class _Scene:
    lots: np.ndarray  # (M, 4): x0, y0, x1, y1 along facade lines
    lot_attr: np.ndarray  # (M, 3): height fraction, colour draw, ornament draw
    road_a: np.ndarray
    road_b: np.ndarray
    trees: np.ndarray  # (T, 3): x, y, draw
    cars: np.ndarray  # (C, 5): x, y, bearing, colour draw, kind draw
    peds: np.ndarray  # (P, 3): x, y, colour draw
    lot_mid: np.ndarray  # (M, 2): the middle of each lot's facade line
    road_quads: np.ndarray  # (E, 4, 2): each road's surface, a quad on the ground
    marking_quads: np.ndarray  # (E, 4, 2): each road's centre marking


def _scene(city: City) -> _Scene:
    cached = city.cache.get("scene")
    if isinstance(cached, _Scene):
        return cached
    rng = np.random.default_rng([city.seed, 4242])
    setback = city.params.setback
    out_bearings: list[list[float]] = [[] for _ in range(len(city.nodes))]
    for a, b in city.edges:
        pa, pb = city.nodes[a], city.nodes[b]
        out_bearings[a].append(math.degrees(math.atan2(*(pb - pa))) % 360)
        out_bearings[b].append(math.degrees(math.atan2(*(pa - pb))) % 360)

    def trim(node: int, b: float, clockwise: bool) -> float:
        gaps = [((o - b) % 360 if clockwise else (b - o) % 360) for o in out_bearings[node]]
        gaps = [g for g in gaps if g > 1e-6]
        gap = min(gaps) if gaps else 360.0
        if gap >= 180.0:
            return 0.0
        return setback / math.tan(math.radians(gap / 2.0)) + 1.0

    lots, attrs, trees, cars, peds = [], [], [], [], []
    for a, b in city.edges:
        pa, pb = city.nodes[a], city.nodes[b]
        length = float(np.hypot(*(pb - pa)))
        u = (pb - pa) / length
        normal = np.array([u[1], -u[0]])  # right of a→b
        bab = math.degrees(math.atan2(*(pb - pa))) % 360
        bba = (bab + 180.0) % 360
        for side in (1.0, -1.0):
            right = side > 0
            t0 = trim(a, bab, clockwise=right)
            t1 = length - trim(b, bba, clockwise=not right)
            s = t0
            while s < t1 - 2.0:
                w = min(float(rng.uniform(8.0, 22.0)), t1 - s)
                p0 = pa + s * u + side * setback * normal
                p1 = pa + (s + w) * u + side * setback * normal
                lots.append((*p0, *p1))
                attrs.append(rng.random(3))
                s += w
            s = float(rng.uniform(4.0, 12.0))
            while s < length - 4.0:
                p = pa + s * u + side * (setback - 2.2) * normal
                trees.append((p[0], p[1], rng.random()))
                if rng.random() < 0.25:
                    q = p + u * rng.uniform(-3, 3) + side * 0.8 * normal
                    peds.append((q[0], q[1], rng.random()))
                s += float(rng.uniform(9.0, 18.0))
            s = float(rng.uniform(5.0, 20.0))
            while s < length - 8.0:
                if rng.random() < 0.35:
                    p = pa + s * u + side * (ROAD_HALF_WIDTH - 1.2) * normal
                    cars.append((p[0], p[1], bab, rng.random(), rng.random()))
                s += float(rng.uniform(6.0, 14.0))
    lot_array = np.array(lots, dtype=float).reshape(-1, 4)
    road_a = city.nodes[[a for a, _ in city.edges]]
    road_b = city.nodes[[b for _, b in city.edges]]
    scene = _Scene(
        lots=lot_array,
        lot_attr=np.array(attrs, dtype=float).reshape(-1, 3),
        road_a=road_a,
        road_b=road_b,
        trees=np.array(trees, dtype=float).reshape(-1, 3),
        cars=np.array(cars, dtype=float).reshape(-1, 5),
        peds=np.array(peds, dtype=float).reshape(-1, 3),
        lot_mid=(lot_array[:, :2] + lot_array[:, 2:]) / 2,
        **_road_quads(road_a, road_b),
    )
    city.cache["scene"] = scene
    return scene


def _road_quads(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """The ground quads of the roads from ``a`` to ``b``: each surface (extended by its half
    width past both ends, so crossings close) and its centre marking (8 m short of both ends)."""
    along = b - a
    u = along / np.maximum(np.hypot(*along.T), 1e-9)[:, None]
    n = np.stack([u[:, 1], -u[:, 0]], 1)
    ext_a, ext_b = a - u * ROAD_HALF_WIDTH, b + u * ROAD_HALF_WIDTH
    side = n * ROAD_HALF_WIDTH
    a2, b2, mark = a + u * 8, b - u * 8, n * 0.12
    return {
        "road_quads": np.stack([ext_a + side, ext_b + side, ext_b - side, ext_a - side], 1),
        "marking_quads": np.stack([a2 + mark, b2 + mark, b2 - mark, a2 - mark], 1),
    }


def _shade(c: RGB, k: float) -> RGB:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def _luma(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


class _Camera:
    def __init__(self, xy: XY, heading: float, size: int) -> None:
        h = math.radians(heading)
        self.pos = np.array(xy, dtype=float)
        self.fwd = np.array([math.sin(h), math.cos(h)])
        self.right = np.array([math.cos(h), -math.sin(h)])
        self.size = size
        self.f = size / 2.0
        self.cx = size / 2.0
        self.horizon = size / 2.0

    def to_cam(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = pts - self.pos
        return rel @ self.right, rel @ self.fwd

    def u(self, x: np.ndarray | float, z: np.ndarray | float) -> np.ndarray | float:
        return self.cx + self.f * x / z

    def v(self, height: np.ndarray | float, z: np.ndarray | float) -> np.ndarray | float:
        return self.horizon - self.f * (height - CAMERA_HEIGHT) / z

    def clip_segment(
        self, p0: np.ndarray, p1: np.ndarray
    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Camera (x, z) of a ground segment clipped to the near plane, or None if behind."""
        return self.clip(np.stack([p0, p1]))

    def clip(self, ends: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """:meth:`clip_segment` for the segment's two ends as the rows of one (2, 2) array."""
        (x0, x1), (z0, z1) = self.to_cam(ends)
        if z0 < NEAR and z1 < NEAR:
            return None
        if z0 < NEAR:
            t = (NEAR - z0) / (z1 - z0)
            x0, z0 = x0 + t * (x1 - x0), NEAR
        elif z1 < NEAR:
            t = (NEAR - z1) / (z0 - z1)
            x1, z1 = x1 + t * (x0 - x1), NEAR
        return (float(x0), float(z0)), (float(x1), float(z1))

    def hidden(self, xs: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Per row of camera points (x and z, shape (n, k)): True where nothing spanned by those
        points (a segment, polygon or car footprint between them) can reach the picture.

        All of a row behind the near plane, or all beyond one side edge by a pixel: a half-plane
        through the camera holds every convex combination of its points, so whatever clipping
        keeps of the shape projects off the picture too. Lets the renderer skip, in one vectorised
        test, what would have drawn no pixel.
        """
        left = (-1.0 - self.cx) / self.f
        right = (self.size + 1.0 - self.cx) / self.f
        return (zs < NEAR).all(1) | (xs < left * zs).all(1) | (xs > right * zs).all(1)

    def ground_polygon(self, pts: np.ndarray) -> list[tuple[float, float]]:
        """Project a ground polygon (world xy) after clipping it to the near plane."""
        xs, zs = self.to_cam(pts)
        poly: list[tuple[float, float]] = []
        n = len(xs)
        for i in range(n):
            xa, za, xb, zb = xs[i], zs[i], xs[(i + 1) % n], zs[(i + 1) % n]
            if za >= NEAR:
                poly.append((xa, za))
            if (za >= NEAR) != (zb >= NEAR):
                t = (NEAR - za) / (zb - za)
                poly.append((xa + t * (xb - xa), NEAR))
        return [(float(self.u(x, z)), float(self.v(0.0, z))) for x, z in poly]


def _background(style: Style, size: int, tilt: float) -> Image.Image:
    arr = np.empty((size, size, 3), dtype=np.float32)
    half = size // 2
    t = np.linspace(0.0, 1.0, half, dtype=np.float32)[:, None]
    top, bottom = np.array(style.sky[0], np.float32), np.array(style.sky[1], np.float32)
    arr[:half] = (top * (1 - t) + bottom * t)[:, None, :]
    arr[half:] = np.array(style.ground, np.float32)
    return Image.fromarray(arr.astype(np.uint8))


def _line_of_sight(cam: np.ndarray, pts: np.ndarray, lots: np.ndarray) -> np.ndarray:
    """True where the segment camera→point crosses no facade (point's own facade excepted)."""
    if len(pts) == 0 or len(lots) == 0:
        return np.ones(len(pts), dtype=bool)
    a, b = lots[None, :, :2], lots[None, :, 2:]
    c, p = cam[None, None, :], pts[:, None, :]
    # Shorten the sight line by 1.2 m so a sign in front of its own facade is not hidden by it.
    direction = p - c
    dist = np.linalg.norm(direction, axis=2, keepdims=True)
    p = c + direction * np.clip((dist - 1.2) / np.maximum(dist, 1e-9), 0.0, 1.0)

    def cross(o: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (q[..., 0] - o[..., 0]) * (r[..., 1] - o[..., 1]) - (q[..., 1] - o[..., 1]) * (
            r[..., 0] - o[..., 0]
        )

    d1, d2 = cross(a, b, c), cross(a, b, p)
    d3, d4 = cross(c, p, a), cross(c, p, b)
    hit = (d1 * d2 < 0) & (d3 * d4 < 0)
    return ~hit.any(axis=1)


def _glyph_blocks(
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    kind: str,
    colour: RGB,
    seed: int,
) -> None:
    """Pseudo-script decoration (no font needed): Devanagari-like bars or CJK-like squares."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    if h < 4 or x1 - x0 < 4:
        return
    rng = np.random.default_rng(seed)
    if kind == "cjk":
        step = h
        x = x0
        while x + step <= x1 + 0.5:
            for _ in range(3):
                gx, gy = x + rng.uniform(0.1, 0.6) * step, y0 + rng.uniform(0.1, 0.6) * h
                d.rectangle((gx, gy, gx + 0.3 * step, gy + 0.25 * h), fill=colour)
            x += step * 1.1
    else:
        d.line((x0, y0 + 0.2 * h, x1, y0 + 0.2 * h), fill=colour, width=max(1, int(h / 8)))
        x = x0
        while x < x1:
            w = rng.uniform(0.3, 0.7) * h
            d.arc((x, y0 + 0.2 * h, x + w, y1), 0, 300, fill=colour, width=max(1, int(h / 10)))
            x += w * 1.2


def _icon(
    d: ImageDraw.ImageDraw, kind: str, box: tuple[float, float, float, float], c: RGB
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    lw = max(1, int(w / 8))
    if kind == "cross":
        d.rectangle((x0 + 0.38 * w, y0 + 0.1 * h, x0 + 0.62 * w, y1 - 0.1 * h), fill=c)
        d.rectangle((x0 + 0.1 * w, y0 + 0.38 * h, x1 - 0.1 * w, y0 + 0.62 * h), fill=c)
    elif kind == "cup":
        d.rectangle((x0 + 0.15 * w, y0 + 0.35 * h, x0 + 0.7 * w, y1 - 0.1 * h), fill=c)
        d.arc(
            (x0 + 0.55 * w, y0 + 0.45 * h, x1 - 0.02 * w, y0 + 0.8 * h), 270, 90, fill=c, width=lw
        )
    elif kind == "columns":
        d.polygon([(x0, y0 + 0.35 * h), (x0 + w / 2, y0 + 0.05 * h), (x1, y0 + 0.35 * h)], fill=c)
        for k in range(3):
            cx = x0 + (0.2 + 0.3 * k) * w
            d.rectangle((cx - 0.07 * w, y0 + 0.4 * h, cx + 0.07 * w, y1 - 0.15 * h), fill=c)
        d.rectangle((x0, y1 - 0.12 * h, x1, y1), fill=c)
    elif kind == "book":
        d.rectangle((x0 + 0.1 * w, y0 + 0.2 * h, x0 + 0.48 * w, y1 - 0.15 * h), outline=c, width=lw)
        d.rectangle((x0 + 0.52 * w, y0 + 0.2 * h, x1 - 0.1 * w, y1 - 0.15 * h), outline=c, width=lw)
    elif kind == "dumbbell":
        d.rectangle((x0 + 0.1 * w, y0 + 0.25 * h, x0 + 0.28 * w, y1 - 0.25 * h), fill=c)
        d.rectangle((x1 - 0.28 * w, y0 + 0.25 * h, x1 - 0.1 * w, y1 - 0.25 * h), fill=c)
        d.rectangle((x0 + 0.28 * w, y0 + 0.45 * h, x1 - 0.28 * w, y0 + 0.55 * h), fill=c)
    elif kind == "glass":
        d.polygon(
            [
                (x0 + 0.15 * w, y0 + 0.1 * h),
                (x1 - 0.15 * w, y0 + 0.1 * h),
                (x0 + w / 2, y0 + 0.55 * h),
            ],
            fill=c,
        )
        d.line((x0 + w / 2, y0 + 0.55 * h, x0 + w / 2, y1 - 0.1 * h), fill=c, width=lw)
    elif kind == "bed":
        d.rectangle((x0 + 0.1 * w, y0 + 0.5 * h, x1 - 0.1 * w, y0 + 0.75 * h), fill=c)
        d.rectangle((x0 + 0.1 * w, y0 + 0.25 * h, x0 + 0.22 * w, y1 - 0.1 * h), fill=c)
    elif kind == "gem":
        d.polygon(
            [
                (x0 + 0.2 * w, y0 + 0.35 * h),
                (x0 + 0.5 * w, y1 - 0.1 * h),
                (x1 - 0.2 * w, y0 + 0.35 * h),
                (x0 + 0.5 * w, y0 + 0.1 * h),
            ],
            fill=c,
        )
    elif kind == "tree":
        d.ellipse((x0 + 0.15 * w, y0 + 0.05 * h, x1 - 0.15 * w, y0 + 0.65 * h), fill=c)
        d.rectangle((x0 + 0.44 * w, y0 + 0.6 * h, x0 + 0.56 * w, y1 - 0.05 * h), fill=c)
    elif kind == "drop":
        d.ellipse((x0 + 0.25 * w, y0 + 0.35 * h, x1 - 0.25 * w, y1 - 0.1 * h), fill=c)
        d.polygon(
            [
                (x0 + 0.5 * w, y0 + 0.05 * h),
                (x0 + 0.27 * w, y0 + 0.55 * h),
                (x1 - 0.27 * w, y0 + 0.55 * h),
            ],
            fill=c,
        )
    elif kind == "fork":
        for k in range(3):
            cx = x0 + (0.35 + 0.15 * k) * w
            d.line((cx, y0 + 0.1 * h, cx, y0 + 0.45 * h), fill=c, width=lw)
        d.rectangle((x0 + 0.33 * w, y0 + 0.42 * h, x0 + 0.67 * w, y0 + 0.52 * h), fill=c)
        d.rectangle((x0 + 0.45 * w, y0 + 0.5 * h, x0 + 0.55 * w, y1 - 0.1 * h), fill=c)
    else:  # bag: shops without a dedicated pictogram
        d.rectangle((x0 + 0.2 * w, y0 + 0.35 * h, x1 - 0.2 * w, y1 - 0.1 * h), fill=c)
        d.arc(
            (x0 + 0.33 * w, y0 + 0.1 * h, x1 - 0.33 * w, y0 + 0.6 * h), 180, 360, fill=c, width=lw
        )


def _facade(
    d: ImageDraw.ImageDraw, cam: _Camera, lot: np.ndarray, attr: np.ndarray, look: Look
) -> None:
    style = look.style
    clipped = cam.clip(lot.reshape(2, 2))
    if clipped is None:
        return
    (x0, z0), (x1, z1) = clipped
    u0, u1 = cam.u(x0, z0), cam.u(x1, z1)
    s = cam.size
    if max(u0, u1) < 0 or min(u0, u1) > s:
        return
    lo, hi = style.floors
    floors = lo + int(attr[0] * (hi - lo + 1))
    height = floors * FLOOR_HEIGHT + 1.0
    palette = style.facades[look.palette]
    colour = palette[int(attr[1] * len(palette))]
    quad = [
        (u0, cam.v(height, z0)),
        (u1, cam.v(height, z1)),
        (u1, cam.v(0, z1)),
        (u0, cam.v(0, z0)),
    ]
    d.polygon(quad, fill=colour)
    if style.ornament != "glass":
        d.line(quad[:2], fill=style.trim, width=max(1, int(cam.f * 0.4 / max(min(z0, z1), 1.0))))
    if abs(u1 - u0) < 10:
        return
    # Windows, projected corner by corner so they foreshorten with the wall.
    p0, p1 = lot[:2], lot[2:]
    length = float(np.hypot(*(p1 - p0)))
    cols = max(1, int(length / 3.2))
    glass = style.ornament == "glass"
    half = 1.45 if glass else 0.6
    centres = (np.arange(cols) + 0.5) * length / cols
    edges = np.stack([centres - half, centres + half], axis=1).ravel() / length
    pts = p0[None, :] + edges[:, None] * (p1 - p0)[None, :]
    xs, zs = cam.to_cam(pts)
    keep = (zs[0::2] >= NEAR) & (zs[1::2] >= NEAR)
    us = cam.u(xs, np.maximum(zs, NEAR))
    zmin = float(np.maximum(zs, NEAR).min())
    if cam.f * FLOOR_HEIGHT / max(zmin, NEAR) < 3:
        return
    win = _shade(style.window, 1.0)
    # The window columns in the picture, and their corners' image rows per floor, computed for all
    # at once (the same arithmetic, element by element, as one window at a time).
    shown = [
        c
        for c in np.nonzero(keep)[0]
        if not (max(us[2 * c], us[2 * c + 1]) < 0 or min(us[2 * c], us[2 * c + 1]) > s)
    ]
    zl, zr = zs[0::2][shown], zs[1::2][shown]
    ul, ur = us[0::2][shown].tolist(), us[1::2][shown].tolist()
    for f in range(1, floors):
        y_lo, y_hi = f * FLOOR_HEIGHT + 0.9, f * FLOOR_HEIGHT + (2.9 if glass else 2.5)
        rows = zip(
            ul,
            ur,
            cam.v(y_hi, zl).tolist(),
            cam.v(y_hi, zr).tolist(),
            cam.v(y_lo, zr).tolist(),
            cam.v(y_lo, zl).tolist(),
            strict=True,
        )
        for ul_c, ur_c, top_l, top_r, bottom_r, bottom_l in rows:
            poly = [(ul_c, top_l), (ur_c, top_r), (ur_c, bottom_r), (ul_c, bottom_l)]
            if style.ornament == "shutters":
                w = (ur_c - ul_c) * 0.45
                d.polygon(
                    [
                        (ul_c - w, top_l),
                        (ur_c + w, top_r),
                        (ur_c + w, bottom_r),
                        (ul_c - w, bottom_l),
                    ],
                    fill=(60, 110, 70),
                )
            d.polygon(poly, fill=win)
            if style.ornament in ("bay", "cast_iron"):
                d.polygon(poly, outline=style.trim)
            if style.ornament == "balconies":
                d.line(
                    (ul_c - 2, bottom_l, ur_c + 2, bottom_r),
                    fill=(30, 30, 30),
                    width=max(1, int(abs(ur_c - ul_c) / 6)),
                )
        if style.ornament == "fire_escape" and attr[2] < 0.5 and cols >= 3 and keep.all():
            c0, c1 = cols // 2 - 1, cols // 2 + 1
            z_from, z_to = zs[2 * c0], zs[2 * c1 + 1]
            pts2 = [
                (us[2 * c0], cam.v(f * FLOOR_HEIGHT + 0.9, z_from)),
                (us[2 * c1 + 1], cam.v(f * FLOOR_HEIGHT + 0.9, z_to)),
            ]
            d.line(pts2, fill=(28, 28, 30), width=2)
            d.line(
                (pts2[0], (us[2 * c1 + 1], cam.v((f + 1) * FLOOR_HEIGHT + 0.9, z_to))),
                fill=(28, 28, 30),
                width=1,
            )
    if style.ornament in ("hoardings", "neon") and attr[2] > 0.5:
        rng = np.random.default_rng(int(attr[2] * 1e9))
        colours = style.sign_bg
        fill = colours[int(rng.integers(len(colours)))]
        if style.ornament == "neon":
            t = rng.uniform(0.2, 0.7)
            xm = p0 + t * (p1 - p0)
            xc, zc = cam.to_cam(xm[None, :])
            if zc[0] > NEAR:
                uc = float(cam.u(xc[0], zc[0]))
                wpx = cam.f * 1.2 / zc[0]
                top, bot = cam.v(FLOOR_HEIGHT * 5, zc[0]), cam.v(FLOOR_HEIGHT * 1.3, zc[0])
                d.rectangle((uc - wpx / 2, top, uc + wpx / 2, bot), fill=fill)
                _glyph_blocks(
                    d,
                    (uc - wpx / 2 + 1, top + 1, uc + wpx / 2 - 1, top + wpx),
                    "cjk",
                    (255, 255, 220),
                    int(attr[2] * 1e6),
                )
        else:
            top_h, bot_h = FLOOR_HEIGHT * 2.6, FLOOR_HEIGHT * 1.4
            quad2 = [
                (u0, cam.v(top_h, z0)),
                (u1, cam.v(top_h, z1)),
                (u1, cam.v(bot_h, z1)),
                (u0, cam.v(bot_h, z0)),
            ]
            d.polygon(quad2, fill=fill)
            ys = [q[1] for q in quad2]
            mid, band = (min(ys) + max(ys)) / 2, (max(ys) - min(ys)) * 0.2
            _glyph_blocks(
                d,
                (min(u0, u1) + 4, mid - band, max(u0, u1) - 4, mid + band),
                "devanagari",
                (255, 255, 255),
                int(attr[2] * 1e6),
            )


def _sign(
    d: ImageDraw.ImageDraw,
    cam: _Camera,
    place_name: str,
    category: str,
    uc: float,
    z: float,
    look: Look,
    seed: int,
) -> None:
    style = look.style
    s = cam.size
    # Shopfront below the sign.
    wpx = cam.f * 6.0 / z
    ground, top = cam.v(0.0, z), cam.v(3.0, z)
    cat = CATEGORY_COLOURS.get(category, (120, 120, 120))
    x0 = max(-wpx, min(s, uc - wpx / 2))
    d.rectangle((x0, top, x0 + wpx, ground), fill=_shade(cat, 0.8))
    d.rectangle(
        (
            x0 + 0.08 * wpx,
            top + 0.3 * (ground - top),
            x0 + 0.62 * wpx,
            ground - 0.08 * (ground - top),
        ),
        fill=_shade(style.window, 1.3),
    )
    d.rectangle(
        (x0 + 0.7 * wpx, top + 0.3 * (ground - top), x0 + 0.92 * wpx, ground),
        fill=_shade(cat, 0.45),
    )
    d.rectangle((x0 - 0.03 * wpx, top, x0 + 1.03 * wpx, top + 0.2 * (ground - top)), fill=cat)
    # The sign: its text is the place name, sized by distance but never unreadable when close.
    sign_top, sign_bot = cam.v(4.6, z), cam.v(3.1, z)
    hs = sign_bot - sign_top
    text = place_name.upper() if style.upper else place_name
    size = int(max(9, min(72, hs * 0.58)))
    font = _font(size)
    tw = font.getlength(text)
    pad = 0.25 * size
    icon = 1.1 * size
    width = max(wpx, tw + icon + 3 * pad)
    if width > s - 4:
        size = max(8, int(size * (s - 4 - icon - 3 * pad) / max(tw, 1.0)))
        font = _font(size)
        tw = font.getlength(text)
        icon = 1.1 * size
        width = min(s - 4.0, tw + icon + 3 * pad)
    hs = max(hs, size * 1.5)
    sign_top = sign_bot - hs
    sx = min(max(2.0, uc - width / 2), s - 2 - width)
    rng = np.random.default_rng(seed)
    bg = style.sign_bg[int(rng.integers(len(style.sign_bg)))]
    box = (sx, sign_top, sx + width, sign_bot)
    shape = style.sign_shape
    if shape == "rounded":
        d.rounded_rectangle(box, radius=hs / 3, fill=bg)
    elif shape == "painted":
        j = rng.uniform(-0.08, 0.08, 4) * hs
        d.polygon(
            [
                (box[0], box[1] + j[0]),
                (box[2], box[1] + j[1]),
                (box[2], box[3] + j[2]),
                (box[0], box[3] + j[3]),
            ],
            fill=bg,
        )
    elif shape == "hanging":
        d.line(
            (sx + width * 0.2, sign_top - 0.4 * hs, sx + width * 0.2, sign_top),
            fill=(30, 30, 30),
            width=2,
        )
        d.line(
            (sx + width * 0.8, sign_top - 0.4 * hs, sx + width * 0.8, sign_top),
            fill=(30, 30, 30),
            width=2,
        )
        d.line(
            (sx, sign_top - 0.4 * hs, sx + width, sign_top - 0.4 * hs), fill=(30, 30, 30), width=3
        )
        d.rectangle(box, fill=bg, outline=style.sign_fg, width=max(1, int(hs / 14)))
    elif shape == "plaque":
        d.rectangle(box, fill=bg, outline=style.trim, width=max(2, int(hs / 10)))
        d.rectangle(
            (box[0] + 3, box[1] + 3, box[2] - 3, box[3] - 3), outline=style.sign_fg, width=1
        )
    elif shape == "vertical":
        d.rectangle(box, fill=(20, 20, 24), outline=bg, width=max(2, int(hs / 10)))
        vw = hs * 0.7
        vx = sx + width - vw if sx > s / 2 else sx
        d.rectangle((vx, sign_top - 3.2 * hs, vx + vw, sign_top), fill=bg)
        _glyph_blocks(
            d,
            (vx + 2, sign_top - 3.1 * hs, vx + vw - 2, sign_top - 3.1 * hs + vw),
            "cjk",
            (255, 255, 210),
            seed,
        )
        _glyph_blocks(
            d,
            (vx + 2, sign_top - 2.0 * hs, vx + vw - 2, sign_top - 2.0 * hs + vw),
            "cjk",
            (255, 255, 210),
            seed + 1,
        )
    else:
        d.rectangle(box, fill=bg)
    fg = style.sign_fg if shape != "vertical" else (255, 255, 220)
    if abs(_luma(bg) - _luma(fg)) < 110:  # keep every name readable on its board
        fg = (250, 250, 250) if _luma(bg) < 128 else (25, 25, 25)
    cy = (sign_top + sign_bot) / 2
    _icon(
        d, ICONS.get(category, "bag"), (sx + pad, cy - icon / 2, sx + pad + icon, cy + icon / 2), fg
    )
    d.text((sx + 2 * pad + icon, cy), text, font=font, fill=fg, anchor="lm")
    if style.glyphs == "devanagari" and width > tw + icon + 6 * pad:
        _glyph_blocks(
            d,
            (
                sx + 3 * pad + icon + tw,
                sign_top + 0.25 * hs,
                sx + width - pad,
                sign_bot - 0.25 * hs,
            ),
            "devanagari",
            fg,
            seed,
        )


def _billboard_tree(d: ImageDraw.ImageDraw, cam: _Camera, uc: float, z: float, colour: RGB) -> None:
    w = cam.f * 0.35 / z
    d.rectangle((uc - w / 2, cam.v(3.0, z), uc + w / 2, cam.v(0.0, z)), fill=(80, 60, 40))
    r = cam.f * 2.2 / z
    cy = cam.v(4.8, z)
    d.ellipse((uc - r, cy - r, uc + r, cy + r * 0.9), fill=colour)


def _person(d: ImageDraw.ImageDraw, cam: _Camera, uc: float, z: float, draw: float) -> None:
    w = cam.f * 0.5 / z
    body = ((60, 60, 120), (140, 40, 40), (40, 90, 60), (90, 80, 70), (200, 170, 60))[int(draw * 5)]
    d.rectangle((uc - w / 2, cam.v(1.45, z), uc + w / 2, cam.v(0.0, z)), fill=body)
    r = cam.f * 0.13 / z
    cy = cam.v(1.62, z)
    d.ellipse((uc - r, cy - r, uc + r, cy + r), fill=(190, 150, 120))


def _vehicle(d: ImageDraw.ImageDraw, cam: _Camera, car: np.ndarray, look: Look) -> None:
    style = look.style
    b = math.radians(car[2])
    axis = np.array([math.sin(b), math.cos(b)])
    side = np.array([axis[1], -axis[0]])
    tram = style.tram and car[4] < 0.15
    length, height = (18.0, 3.2) if tram else (4.4, 1.5)
    centre = car[:2] - side * (2.0 if tram else 0.0)
    colours = style.vehicle_colours
    colour = (40, 140, 80) if tram else colours[int(car[3] * len(colours))]
    for p0, p1, h in (
        (centre - axis * length / 2, centre + axis * length / 2, height),
        (centre - axis * length / 2 - side * 0.9, centre - axis * length / 2 + side * 0.9, height),
        (centre + axis * length / 2 - side * 0.9, centre + axis * length / 2 + side * 0.9, height),
    ):
        clipped = cam.clip_segment(p0, p1)
        if clipped is None:
            continue
        (x0, z0), (x1, z1) = clipped
        u0, u1 = cam.u(x0, z0), cam.u(x1, z1)
        d.polygon(
            [(u0, cam.v(h, z0)), (u1, cam.v(h, z1)), (u1, cam.v(0.3, z1)), (u0, cam.v(0.3, z0))],
            fill=colour,
        )
        d.polygon(
            [
                (u0, cam.v(h * 0.92, z0)),
                (u1, cam.v(h * 0.92, z1)),
                (u1, cam.v(h * 0.7, z1)),
                (u0, cam.v(h * 0.7, z0)),
            ],
            fill=(50, 60, 70),
        )


def _near_lots(scene: _Scene, pos: np.ndarray) -> np.ndarray:
    """The facades that can block a line of sight from ``pos`` (those within 90 m)."""
    if not len(scene.lots):
        return scene.lots
    return scene.lots[np.hypot(*(scene.lot_mid - pos).T) < 90.0]


def signs_in_view(city: City, xy: XY, heading: float) -> list[tuple[float, int]]:
    """The storefront signs a view at ``xy`` facing ``heading`` draws: (distance, place index).

    A place within 55 m with a clear line of sight, whose bearing lies in the view's 90° wedge
    (each sign is drawn whole, in one view) and not closer than 1.5 m in depth. The renderer and
    the tiny VLM's recognition targets both use this list, so a target is what the picture shows.
    """
    if len(city.place_xy) == 0:
        return []
    cam = _Camera(xy, heading, 2)
    dist = np.hypot(*(city.place_xy - cam.pos).T)
    cand = np.nonzero((dist < PLACE_RANGE) & (dist > 0.0))[0]
    if len(cand) == 0:
        return []
    visible = _line_of_sight(cam.pos, city.place_xy[cand], _near_lots(_scene(city), cam.pos))
    x, z = cam.to_cam(city.place_xy[cand])
    signs = []
    for k, ok, xk, zk in zip(cand, visible, x, z, strict=True):
        off = angle_diff(0.0, math.degrees(math.atan2(xk, zk)))
        if ok and -45.0 <= off < 45.0 and zk >= 1.5:
            signs.append((float(dist[k]), int(k)))
    return sorted(signs)


def _hidden_corners(cam: _Camera, corners: np.ndarray) -> np.ndarray:
    """``cam.hidden`` for shapes given by their world corners, shape (n, k, 2)."""
    n, k = corners.shape[:2]
    xs, zs = cam.to_cam(corners.reshape(n * k, 2))
    return cam.hidden(xs.reshape(n, k), zs.reshape(n, k))


def _cars_hidden(cam: _Camera, cars: np.ndarray, look: Look) -> np.ndarray:
    """Which cars (rows of ``scene.cars``) cannot show: their footprint's corners, as
    :func:`_vehicle` places them, all behind the camera or beyond one side of the picture."""
    b = np.radians(cars[:, 2])
    axis = np.stack([np.sin(b), np.cos(b)], 1)
    side = np.stack([axis[:, 1], -axis[:, 0]], 1)
    tram = (cars[:, 4] < 0.15) & bool(look.style.tram)
    half = np.where(tram, 18.0, 4.4)[:, None] / 2
    centre = cars[:, :2] - side * np.where(tram, 2.0, 0.0)[:, None]
    corners = [centre + s * axis * half + t * side * 0.9 for s in (-1, 1) for t in (-1, 1)]
    return _hidden_corners(cam, np.stack(corners, 1))


def render_view(city: City, xy: XY, heading: float, look: Look, size: int = 320) -> Image.Image:
    """One 90° perspective view at ``xy`` facing ``heading`` (compass degrees), ``size`` px square."""
    style = look.style
    scene = _scene(city)
    cam = _Camera(xy, heading, size)
    img = _background(style, size, style.tilt)
    d = ImageDraw.Draw(img)
    # Roads (and their centre marking), clipped to the near plane.
    mid = (scene.road_a + scene.road_b) / 2
    reach = np.hypot(*(mid - cam.pos).T) - np.hypot(*(scene.road_b - scene.road_a).T) / 2
    roads = np.nonzero(reach < SCENE_RANGE)[0]
    for quads, fill in ((scene.road_quads, style.road), (scene.marking_quads, style.marking)):
        near = quads[roads]
        for quad in near[~_hidden_corners(cam, near)]:
            poly = cam.ground_polygon(quad)
            if len(poly) >= 3:
                d.polygon(poly, fill=fill)
    # Facades, far to near.
    if len(scene.lots):
        ld = np.hypot(*(scene.lot_mid - cam.pos).T)
        lx, lz = cam.to_cam(np.concatenate([scene.lots[:, :2], scene.lots[:, 2:]]))
        n_lots = len(scene.lots)
        front = (lz[:n_lots] > NEAR) | (lz[n_lots:] > NEAR)
        seen = ~cam.hidden(
            np.stack([lx[:n_lots], lx[n_lots:]], 1), np.stack([lz[:n_lots], lz[n_lots:]], 1)
        )
        for k in sorted(np.nonzero((ld < SCENE_RANGE) & front & seen)[0], key=lambda i: -ld[i]):
            _facade(d, cam, scene.lots[k], scene.lot_attr[k], look)
    # Storefronts, trees, people and vehicles with a clear line of sight, far to near.
    items: list[tuple[float, str, int]] = [
        (dist, "place", k) for dist, k in signs_in_view(city, xy, heading)
    ]
    near_lots = _near_lots(scene, cam.pos)
    for kind, pts, rng_ in (
        ("tree", scene.trees[:, :2], 70.0),
        ("person", scene.peds[:, :2], 50.0),
        ("car", scene.cars[:, :2], 70.0),
    ):
        if len(pts) == 0:
            continue
        dist = np.hypot(*(pts - cam.pos).T)
        cand = np.nonzero((dist < rng_) & (dist > (8.0 if kind == "car" else 0.0)))[0]
        if kind == "tree":
            cand = cand[scene.trees[cand, 2] < style.trees]
        if kind == "car":
            cand = cand[~_cars_hidden(cam, scene.cars[cand], look)]
        if len(cand) == 0:
            continue
        visible = (
            _line_of_sight(cam.pos, pts[cand], near_lots)
            if kind != "car"
            else np.ones(len(cand), bool)
        )
        for k, ok in zip(cand, visible, strict=True):
            if ok:
                items.append((float(dist[k]), kind, int(k)))
    for _, kind, k in sorted(items, key=lambda t: -t[0]):
        if kind == "car":
            _vehicle(d, cam, scene.cars[k], look)
            continue
        pts = (
            city.place_xy
            if kind == "place"
            else (scene.trees[:, :2] if kind == "tree" else scene.peds[:, :2])
        )
        x, z = cam.to_cam(pts[k][None, :])
        x, z = float(x[0]), float(z[0])
        if kind == "place":
            p = city.places[k]
            _sign(d, cam, p.name, p.category, float(cam.u(x, z)), z, look, p.look)
        elif z > 1.0:
            uc = float(cam.u(x, z))
            if kind == "tree":
                _billboard_tree(d, cam, uc, z, style.tree_colour)
            else:
                _person(d, cam, uc, z, float(scene.peds[k, 2]))
    return _finish(img, look)


def _finish(img: Image.Image, look: Look) -> Image.Image:
    style = look.style
    arr = np.asarray(img, dtype=np.float32)
    tint = np.array(style.tint, np.float32) / 255.0
    arr = arr * look.brightness * tint
    sky = np.array(style.sky[1], np.float32)
    arr = arr * (1.0 - look.haze) + sky * look.haze
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if style.tilt:
        fill = tuple(int(c) for c in np.clip(sky * look.brightness * tint, 0, 255))
        out = out.rotate(style.tilt, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    return out


def compose_grid(views: list[Image.Image] | list[np.ndarray], sep: int = 5) -> np.ndarray:
    """Paste four square views into a 2×2 uint8 grid with black separators (row-major order)."""
    if len(views) != 4:
        raise ValueError(f"a view grid needs 4 views, got {len(views)}")
    arrays = [np.asarray(v, dtype=np.uint8) for v in views]
    size = arrays[0].shape[0]
    grid = np.zeros((2 * size + sep, 2 * size + sep, 3), dtype=np.uint8)
    for k, a in enumerate(arrays):
        r, c = divmod(k, 2)
        grid[
            r * (size + sep) : r * (size + sep) + size, c * (size + sep) : c * (size + sep) + size
        ] = a[:, :, :3]
    return grid


def view_headings(heading: float, layout: str) -> list[float]:
    """Compass headings of the four views, in grid order, for ``layout``."""
    try:
        offsets = LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown view layout {layout!r}; use one of {sorted(LAYOUTS)}") from None
    return [(heading + o) % 360.0 for o in offsets]


GRID_CACHE_BYTES = 256 * 2**20
"""Memory the rendered grids of a process may keep (least recently used dropped first)."""


class _GridCache:
    """Recently drawn grids, least recently used dropped first beyond ``GRID_CACHE_BYTES``.

    Keys start with the city's id; each entry holds its city, so that id cannot be reused by
    another city while the entry lives.
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple, tuple[City, np.ndarray]] = OrderedDict()
        self.nbytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key][1]

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def put(self, key: tuple, city: City, grid: np.ndarray) -> None:
        self.entries[key] = (city, grid)
        self.nbytes += grid.nbytes
        while self.nbytes > GRID_CACHE_BYTES:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.nbytes -= dropped.nbytes


_GRIDS = _GridCache()


def clear_grid_cache() -> None:
    """Forget every kept grid, so the next :func:`render_grid` draws (benchmarks time drawing)."""
    _GRIDS.clear()


def render_grid(
    city: City, xy: XY, heading: float, look: Look, *, size: int = 320, layout: str = "prompt"
) -> np.ndarray:
    """The V-IRL-VL observation: four synthetic views around ``xy`` as one uint8 grid.

    Recent grids are kept (up to ``GRID_CACHE_BYTES``): an agent only ever stands on a route's
    rail, so every evaluation of a study revisits the same points, and a 112-px grid takes about
    16 ms of CPU to draw. The returned array is read-only (it is shared).
    """
    key = (id(city), tuple(map(float, xy)), float(heading), look, size, layout)
    cached = _GRIDS.get(key)
    if cached is not None:
        return cached
    grid = compose_grid(
        [render_view(city, xy, h, look, size) for h in view_headings(heading, layout)]
    )
    grid.flags.writeable = False
    _GRIDS.put(key, city, grid)
    return grid

"""Seeded procedural cities: a street graph, panorama-like viewpoints and named places.

The recipe follows VIRL.md §5.4–5.5: a rotated rectangular lattice (short and long blocks, node
jitter), 1–3 diagonal avenues that create 3- to 5-way junctions and non-right-angle turns (without
them "slightly left/right" would almost never occur), random edge removal that keeps the graph
connected, viewpoints every 8–12 m along streets (as sparse as real panoramas), corner places on
the bisector of adjacent streets (the landmark candidates) and mid-block places (destinations and
decoys). Everything comes from one seed; geometry never depends on the visual style.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from .geometry import bearing, compass_word, to_latlng
from .model import XY, Place
from .names import CATEGORIES, NamePool

SNAP_RADIUS_M = 20.0
"""Nearest-viewpoint radius, as the official panorama mapping uses."""


@dataclass(frozen=True)
class CityParams:
    """Knobs of the generator; ``nyc_like`` trains, ``mini_like`` builds the mini benchmark."""

    n_avenues: int = 6
    n_streets: int = 14
    avenue_gap: tuple[float, float] = (200.0, 270.0)
    street_gap: tuple[float, float] = (75.0, 85.0)
    rotation: float | None = 29.0
    """District angle in degrees; None draws one per city."""
    jitter: float = 3.0
    diagonals: tuple[int, int] = (2, 3)
    edge_removal: tuple[float, float] = (0.05, 0.12)
    setback: float = 9.0
    """Distance from a street's centreline to its facades."""
    viewpoint_gap: tuple[float, float] = (8.0, 12.0)
    corner_place_p: float = 0.3
    midblock_gap: tuple[float, float] = (25.0, 45.0)
    midblock_p: float = 0.6
    name_pool: str = "train"

    @classmethod
    def nyc_like(cls) -> CityParams:
        """The training city: Manhattan-like 29° grid with diagonal avenues."""
        return cls()

    @classmethod
    def mini_like(cls) -> CityParams:
        """A small district for the mini benchmark: random angle, shorter blocks, test names."""
        return cls(
            n_avenues=4,
            n_streets=5,
            avenue_gap=(90.0, 140.0),
            street_gap=(60.0, 90.0),
            rotation=None,
            diagonals=(1, 2),
            name_pool="test",
        )


@dataclass
class City:
    """A generated city: street graph, viewpoints and places in local metres."""

    name: str
    seed: int
    params: CityParams
    nodes: np.ndarray
    edges: list[tuple[int, int]]
    places: tuple[Place, ...]
    vp_xy: np.ndarray
    vp_ids: list[str]
    vp_edge: np.ndarray
    """Edge of each viewpoint, −1 for a viewpoint at a node."""
    vp_offset: np.ndarray
    origin: tuple[float, float] = (40.7128, -74.0060)
    adjacency: list[list[tuple[int, int]]] = field(default_factory=list)
    cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    """Derived data of other modules (e.g. the renderer's scene), built once per city."""

    def __post_init__(self) -> None:
        self.adjacency = [[] for _ in range(len(self.nodes))]
        for k, (a, b) in enumerate(self.edges):
            self.adjacency[a].append((b, k))
            self.adjacency[b].append((a, k))
        self.edge_len = np.array(
            [float(np.hypot(*(self.nodes[b] - self.nodes[a]))) for a, b in self.edges]
        )
        self.place_xy = np.array([p.xy for p in self.places], dtype=float).reshape(-1, 2)
        self.place_reviews = np.array([p.reviews for p in self.places], dtype=int)

    def node_xy(self, n: int) -> XY:
        """A node's position as a tuple."""
        return (float(self.nodes[n, 0]), float(self.nodes[n, 1]))

    def snap(self, xy: XY, radius: float = SNAP_RADIUS_M) -> tuple[str, XY] | None:
        """Nearest viewpoint within ``radius`` metres, or None (as relocation does)."""
        d2 = (self.vp_xy[:, 0] - xy[0]) ** 2 + (self.vp_xy[:, 1] - xy[1]) ** 2
        k = int(np.argmin(d2))
        if d2[k] > radius * radius:
            return None
        return self.vp_ids[k], (float(self.vp_xy[k, 0]), float(self.vp_xy[k, 1]))

    def places_near(self, xy: XY, radius: float) -> list[Place]:
        """Places within ``radius`` metres of ``xy``, nearest first."""
        d = np.hypot(self.place_xy[:, 0] - xy[0], self.place_xy[:, 1] - xy[1])
        idx = np.nonzero(d <= radius)[0]
        return [self.places[int(i)] for i in idx[np.argsort(d[idx], kind="stable")]]

    def latlng(self, xy: XY) -> tuple[float, float]:
        """Fake geographic coordinates of a local position (for the V-IRL JSON export)."""
        return to_latlng(xy, self.origin)


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _connected(n_nodes: int, edges: set[tuple[int, int]]) -> bool:
    adj: list[list[int]] = [[] for _ in range(n_nodes)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    used = [v for v in range(n_nodes) if adj[v]]
    if not used:
        return False
    seen = {used[0]}
    queue = deque([used[0]])
    while queue:
        v = queue.popleft()
        for w in adj[v]:
            if w not in seen:
                seen.add(w)
                queue.append(w)
    return len(seen) == len(used)


def _add_diagonal(
    nodes: list[np.ndarray], edges: set[tuple[int, int]], p0: np.ndarray, d: np.ndarray
) -> None:
    """Cut a straight avenue through the graph, splitting every edge it crosses."""
    snap = 8.0
    hits: list[tuple[float, int]] = []
    for a, b in sorted(edges):
        pa, pb = nodes[a], nodes[b]
        e = pb - pa
        den = _cross(d, e)
        if abs(den) < 1e-9:
            continue
        w = pa - p0
        t = _cross(w, e) / den
        s = _cross(w, d) / den
        if s < 0.0 or s > 1.0:
            continue
        length = float(np.hypot(*e))
        if s * length <= snap:
            nid = a
        elif (1.0 - s) * length <= snap:
            nid = b
        else:
            nodes.append(pa + s * e)
            nid = len(nodes) - 1
            edges.discard((a, b))
            edges.add((min(a, nid), max(a, nid)))
            edges.add((min(b, nid), max(b, nid)))
        hits.append((t, nid))
    hits.sort()
    chain = [n for k, (_, n) in enumerate(hits) if k == 0 or n != hits[k - 1][1]]
    for a, b in pairwise(chain):
        if a != b:
            edges.add((min(a, b), max(a, b)))


def _diagonal_bearing(angle: float, covered: set[str], rng: np.random.Generator) -> float:
    """A diagonal 20-60° off the grid, preferring compass bins the streets do not cover yet.

    A rotated lattice alone gives four compass words; diagonals must supply the rest so that all
    eight occur (VIRL.md §5.13, property 4).
    """
    cands = np.arange(0.0, 180.0, 1.0)
    off = np.abs((cands - angle + 45.0) % 90.0 - 45.0)
    valid = cands[off >= 20.0]
    fresh = [
        b for b in valid if compass_word(b) not in covered or compass_word(b + 180.0) not in covered
    ]
    pool = fresh or list(valid)
    b = float(pool[int(rng.integers(len(pool)))])
    covered.update({compass_word(b), compass_word(b + 180.0)})
    return b


def _street_graph(
    params: CityParams, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(*params.avenue_gap, params.n_avenues - 1))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(*params.street_gap, params.n_streets - 1))])
    xs -= xs.mean()
    ys -= ys.mean()
    angle = params.rotation if params.rotation is not None else float(rng.uniform(0.0, 90.0))
    rad = math.radians(angle)
    # Rotate the lattice clockwise by ``angle``: its "north" axis then points at bearing angle.
    rot = np.array([[math.cos(rad), math.sin(rad)], [-math.sin(rad), math.cos(rad)]])
    nodes: list[np.ndarray] = []
    index: dict[tuple[int, int], int] = {}
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            local = np.array([x, y]) + rng.uniform(-params.jitter, params.jitter, 2)
            index[(i, j)] = len(nodes)
            nodes.append(rot @ local)
    edges: set[tuple[int, int]] = set()
    for (i, j), n in index.items():
        for di, dj in ((1, 0), (0, 1)):
            m = index.get((i + di, j + dj))
            if m is not None:
                edges.add((min(n, m), max(n, m)))
    extent = 0.3 * min(xs.max() - xs.min(), ys.max() - ys.min())
    covered = {compass_word(angle + 90.0 * k) for k in range(4)}
    for _ in range(int(rng.integers(params.diagonals[0], params.diagonals[1] + 1))):
        phi = math.radians(_diagonal_bearing(angle, covered, rng))
        p0 = rot @ rng.uniform(-extent, extent, 2)
        _add_diagonal(nodes, edges, p0, np.array([math.sin(phi), math.cos(phi)]))
    n_remove = int(len(edges) * rng.uniform(*params.edge_removal))
    for e in [sorted(edges)[int(k)] for k in rng.permutation(len(edges))]:
        if n_remove <= 0:
            break
        trial = edges - {e}
        if _connected(len(nodes), trial):
            edges = trial
            n_remove -= 1
    used = sorted({v for e in edges for v in e})
    remap = {v: k for k, v in enumerate(used)}
    arr = np.array([nodes[v] for v in used], dtype=float)
    return arr, sorted((remap[a], remap[b]) for a, b in edges)


def _segment_distances(pt: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(
        np.einsum("ij,ij->i", pt - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-9), 0, 1
    )
    proj = a + t[:, None] * ab
    return np.hypot(*(pt - proj).T)


def generate_city(seed: int, params: CityParams | None = None, name: str = "metro") -> City:
    """Build a city from ``seed``; the same seed and params always give the same city."""
    params = params or CityParams.nyc_like()
    rng = np.random.default_rng([seed, 7919])
    nodes, edges = _street_graph(params, rng)
    seg_a = nodes[[a for a, _ in edges]]
    seg_b = nodes[[b for _, b in edges]]

    # Viewpoints: every node, and every 8-12 m along each edge.
    vp_xy: list[XY] = []
    vp_ids: list[str] = []
    vp_edge: list[int] = []
    vp_offset: list[float] = []
    for n in range(len(nodes)):
        vp_xy.append((float(nodes[n, 0]), float(nodes[n, 1])))
        vp_ids.append(f"{name}-n{n}")
        vp_edge.append(-1)
        vp_offset.append(0.0)
    for k, (a, b) in enumerate(edges):
        length = float(np.hypot(*(nodes[b] - nodes[a])))
        count = max(1, round(length / rng.uniform(*params.viewpoint_gap)))
        for j in range(1, count):
            t = j / count
            p = nodes[a] + t * (nodes[b] - nodes[a])
            vp_xy.append((float(p[0]), float(p[1])))
            vp_ids.append(f"{name}-e{k}-{j}")
            vp_edge.append(k)
            vp_offset.append(t * length)

    # Places: corner candidates on street bisectors, then mid-block storefronts.
    names = NamePool(params.name_pool, rng)
    categories = sorted(CATEGORIES)
    spots: list[tuple[XY, bool]] = []
    front = params.setback - 0.5
    for n in range(len(nodes)):
        out = sorted(
            bearing(tuple(nodes[n]), tuple(nodes[b if a == n else a]))
            for a, b in edges
            if n in (a, b)
        )
        if len(out) < 2:
            continue
        for k, b1 in enumerate(out):
            gap = (out[(k + 1) % len(out)] - b1) % 360.0
            if rng.random() >= params.corner_place_p or gap < 40.0:
                continue
            dist = front / math.sin(math.radians(gap / 2.0))
            if dist > 16.0:
                continue
            phi = math.radians(b1 + gap / 2.0)
            spots.append(
                ((nodes[n, 0] + dist * math.sin(phi), nodes[n, 1] + dist * math.cos(phi)), True)
            )
    for a, b in edges:
        pa, pb = nodes[a], nodes[b]
        length = float(np.hypot(*(pb - pa)))
        u = (pb - pa) / length
        normal = np.array([u[1], -u[0]])
        for side in (1.0, -1.0):
            s = 20.0 + rng.uniform(0.0, 10.0)
            while s < length - 20.0:
                if rng.random() < params.midblock_p:
                    p = pa + s * u + side * front * normal
                    spots.append(((float(p[0]), float(p[1])), False))
                s += rng.uniform(*params.midblock_gap)
    places: list[Place] = []
    kept: list[XY] = []
    for xy, corner in spots:
        pt = np.array(xy)
        if _segment_distances(np.broadcast_to(pt, seg_a.shape), seg_a, seg_b).min() < front - 1.5:
            continue
        if kept and np.hypot(*(np.array(kept) - pt).T).min() < 6.0:
            continue
        category = categories[int(rng.integers(len(categories)))]
        reviews = int(math.exp(rng.normal(3.5, 1.3)))
        places.append(
            Place(
                id=len(places),
                name=names.draw(category),
                category=category,
                reviews=reviews,
                xy=(float(xy[0]), float(xy[1])),
                corner=corner,
                look=int(rng.integers(2**31)),
            )
        )
        kept.append((float(xy[0]), float(xy[1])))
    return City(
        name=name,
        seed=seed,
        params=params,
        nodes=nodes,
        edges=edges,
        places=tuple(places),
        vp_xy=np.array(vp_xy, dtype=float),
        vp_ids=vp_ids,
        vp_edge=np.array(vp_edge, dtype=int),
        vp_offset=np.array(vp_offset, dtype=float),
    )

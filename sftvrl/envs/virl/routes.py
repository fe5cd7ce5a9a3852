"""Route sampler: destination, start, shortest path, manoeuvre points and landmarks (VIRL.md §5.6).

Milestones are manoeuvre points only (the path bends by more than 15°) plus the destination,
as Google Directions steps are; straight-through intersections are neither milestones nor
flagged. A turn point's landmark follows V-IRL's rule: among places within 18 m with at least 10
reviews, the one with the most reviews, or none.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from .city import City, CityParams, generate_city
from .geometry import angle_diff, compass_word, distance, int_bearing, relation_word
from .instructions import destination_expression, landmark_expression
from .model import XY, Milestone, Place, RouteSpec

LANDMARK_RADIUS_M = 18.0
MIN_REVIEWS = 10
TURN_THRESHOLD_DEG = 15.0


@dataclass(frozen=True)
class RouteFilter:
    """Accepted route shapes: number of milestones (turns + destination) and path length."""

    min_milestones: int
    max_milestones: int
    min_length: float
    max_length: float
    min_leg: float = 12.0


NYC_FILTER = RouteFilter(2, 9, 150.0, 900.0)
"""Training routes: 1–8 turns, 150–900 m (the NYC routes are long, paper Fig. 21)."""
MINI_FILTER = RouteFilter(2, 3, 40.0, 150.0)
"""Mini-benchmark routes: 1–2 turns, at most 150 m, as V-IRL's benchmark collector allows."""


def landmark_at(city: City, xy: XY) -> Place | None:
    """V-IRL's landmark rule at a turn point: most-reviewed place within 18 m with ≥10 reviews."""
    best: Place | None = None
    for p in city.places_near(xy, LANDMARK_RADIUS_M):
        if p.reviews >= MIN_REVIEWS and (best is None or p.reviews > best.reviews):
            best = p
    return best


def _dijkstra(
    city: City, sources: list[tuple[int, float]], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    dist = np.full(len(city.nodes), np.inf)
    nxt = np.full(len(city.nodes), -1, dtype=int)
    heap: list[tuple[float, int]] = []
    for node, d in sources:
        if d < dist[node]:
            dist[node] = d
            heapq.heappush(heap, (d, node))
    while heap:
        d, v = heapq.heappop(heap)
        if d > dist[v]:
            continue
        for w, k in city.adjacency[v]:
            nd = d + weights[k]
            if nd < dist[w]:
                dist[w] = nd
                nxt[w] = v
                heapq.heappush(heap, (nd, w))
    return dist, nxt


def _milestones(city: City, path: list[XY], dest: Place) -> tuple[list[Milestone], list[float]]:
    turns: list[XY] = []
    for i in range(1, len(path) - 1):
        before = math.degrees(math.atan2(path[i][0] - path[i - 1][0], path[i][1] - path[i - 1][1]))
        after = math.degrees(math.atan2(path[i + 1][0] - path[i][0], path[i + 1][1] - path[i][1]))
        if abs(angle_diff(before, after)) > TURN_THRESHOLD_DEG:
            turns.append(path[i])
    points = [*turns, path[-1]]
    milestones: list[Milestone] = []
    legs: list[float] = []
    prev = path[0]
    for k, xy in enumerate(points):
        head = int_bearing(prev, xy)
        legs.append(distance(prev, xy))
        last = k == len(points) - 1
        if last:
            rel = relation_word(head, _bearing_to(xy, dest.xy))
            expr, name = destination_expression(dest.name, rel), dest.name
        else:
            mark = landmark_at(city, xy)
            name = mark.name if mark else None
            rel = relation_word(head, _bearing_to(xy, mark.xy)) if mark else None
            expr = landmark_expression(name, rel)
        milestones.append(
            Milestone(
                index=k + 1,
                xy=xy,
                bearing=head,
                compass=compass_word(head),
                expression=expr,
                landmark=name,
                is_destination=last,
            )
        )
        prev = xy
    return milestones, legs


def _bearing_to(a: XY, b: XY) -> float:
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360.0


def sample_routes(
    city: City, n: int, seed: int, filt: RouteFilter, *, prefix: str | None = None
) -> list[RouteSpec]:
    """``n`` distinct routes in ``city``, deterministic in ``seed``; raises if they are too rare."""
    rng = np.random.default_rng([seed, 104729])
    prefix = prefix or city.name
    midblock = np.nonzero(city.vp_edge >= 0)[0]
    mid_xy = city.vp_xy[midblock]
    # Destinations: places whose nearest mid-block viewpoint is within the landmark radius.
    dest_vp: dict[int, int] = {}
    for p in city.places:
        d = np.hypot(mid_xy[:, 0] - p.xy[0], mid_xy[:, 1] - p.xy[1])
        k = int(np.argmin(d))
        if d[k] <= LANDMARK_RADIUS_M:
            dest_vp[p.id] = int(midblock[k])
    dest_ids = np.array(sorted(dest_vp))
    weights = np.sqrt(np.array([city.places[i].reviews for i in dest_ids], dtype=float) + 1.0)
    weights /= weights.sum()
    seen: set[tuple[int, int]] = set()
    routes: list[RouteSpec] = []
    tries = 0
    while len(routes) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(
                f"could only sample {len(routes)} of {n} routes in city {city.name!r}; "
                "enlarge the city or relax the route filter"
            )
        dest = city.places[int(rng.choice(dest_ids, p=weights))]
        dvp = dest_vp[dest.id]
        noisy = city.edge_len * rng.uniform(0.9, 1.1, len(city.edge_len))
        de = int(city.vp_edge[dvp])
        da, db = city.edges[de]
        off = float(city.vp_offset[dvp])
        scale = noisy[de] / city.edge_len[de]
        dist, nxt = _dijkstra(
            city, [(da, off * scale), (db, (city.edge_len[de] - off) * scale)], noisy
        )
        # Cost of every mid-block viewpoint (not on the destination's edge) to the destination.
        edges = city.vp_edge[midblock]
        ea = np.array([city.edges[k][0] for k in edges])
        eb = np.array([city.edges[k][1] for k in edges])
        t = city.vp_offset[midblock] * noisy[edges] / city.edge_len[edges]
        via_a = t + dist[ea]
        via_b = noisy[edges] - t + dist[eb]
        cost = np.minimum(via_a, via_b)
        ok = np.nonzero(
            (edges != de) & (cost >= filt.min_length) & (cost <= filt.max_length * 1.05)
        )[0]
        if len(ok) == 0:
            continue
        j = int(ok[int(rng.integers(len(ok)))])
        svp = int(midblock[j])
        if (svp, dvp) in seen:
            continue
        node = int(ea[j]) if via_a[j] <= via_b[j] else int(eb[j])
        start = (float(city.vp_xy[svp, 0]), float(city.vp_xy[svp, 1]))
        path: list[XY] = [start]
        while node != -1:
            path.append(city.node_xy(node))
            node = int(nxt[node])
        path.append((float(city.vp_xy[dvp, 0]), float(city.vp_xy[dvp, 1])))
        length = sum(distance(a, b) for a, b in pairwise(path))
        if not filt.min_length <= length <= filt.max_length:
            continue
        milestones, legs = _milestones(city, path, dest)
        if not filt.min_milestones <= len(milestones) <= filt.max_milestones:
            continue
        if min(legs) < filt.min_leg:
            continue
        seen.add((svp, dvp))
        routes.append(
            RouteSpec(
                route_id=f"{prefix}/{len(routes):04d}",
                start=start,
                milestones=tuple(milestones),
                init_heading=0,
                city=city.name,
                length_m=length,
                destination=dest.name,
            )
        )
    return routes


@lru_cache(maxsize=32)
def city_and_routes(
    seed: int, params: CityParams, name: str, n: int, filt: RouteFilter
) -> tuple[City, tuple[RouteSpec, ...]]:
    """Cached (city, routes) for a seed; envs of one process share their cities."""
    city = generate_city(seed, params, name)
    return city, tuple(sample_routes(city, n, seed, filt))

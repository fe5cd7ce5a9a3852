"""Procedural cities and route sampling: determinism, connectivity, label diversity."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np
import pytest

from sftvrl.envs.virl.city import CityParams, generate_city
from sftvrl.envs.virl.geometry import COMPASS, RELATIVE, distance
from sftvrl.envs.virl.instructions import relative_words
from sftvrl.envs.virl.names import pool_words
from sftvrl.envs.virl.routes import MINI_FILTER, NYC_FILTER, city_and_routes, landmark_at
from sftvrl.envs.virl.sources import SyntheticSource


@pytest.fixture(scope="module")
def metro():
    return city_and_routes(0, CityParams.nyc_like(), "metro", 1200, NYC_FILTER)


def test_city_is_deterministic_and_seed_dependent():
    a = generate_city(5, CityParams.mini_like(), "x")
    b = generate_city(5, CityParams.mini_like(), "x")
    c = generate_city(6, CityParams.mini_like(), "x")
    assert np.array_equal(a.nodes, b.nodes) and a.edges == b.edges and a.places == b.places
    assert not (len(a.nodes) == len(c.nodes) and np.allclose(a.nodes, c.nodes))


def test_street_graph_is_connected(metro):
    city, _ = metro
    seen, queue = {0}, deque([0])
    while queue:
        for w, _ in city.adjacency[queue.popleft()]:
            if w not in seen:
                seen.add(w)
                queue.append(w)
    assert len(seen) == len(city.nodes)
    degrees = Counter(len(a) for a in city.adjacency)
    assert degrees[3] > 0 and degrees[4] > 0  # T-junctions and crossings


def test_place_names_unique_and_pools_disjoint(metro):
    city, _ = metro
    names = [p.name for p in city.places]
    assert len(names) == len(set(names))
    assert not pool_words("train") & pool_words("test")
    mini = SyntheticSource("mini")
    train_words = pool_words("train")
    for i in range(len(mini)):
        for p in mini.city(i).places:
            assert not set(p.name.split()[:2]) & train_words  # descriptor, noun


def test_route_filters_hold(metro):
    city, routes = metro
    for r in routes:
        assert NYC_FILTER.min_milestones <= len(r.milestones) <= NYC_FILTER.max_milestones
        assert NYC_FILTER.min_length <= r.length_m <= NYC_FILTER.max_length
        assert r.milestones[-1].is_destination and not any(
            m.is_destination for m in r.milestones[:-1]
        )
        assert city.snap(r.start) is not None
    mini = SyntheticSource("mini")
    assert len(mini) == 18
    for i in range(18):
        r = mini.route(i)
        assert MINI_FILTER.min_milestones <= len(r.milestones) <= MINI_FILTER.max_milestones
        assert r.length_m <= 150.0


def test_routes_are_distinct(metro):
    _, routes = metro
    pairs = {(r.start, r.milestones[-1].xy) for r in routes}
    assert len(pairs) == len(routes)


def test_label_distributions_are_not_degenerate(metro):
    """VIRL.md §5.13 property 4: all 8 compass and all 4 relative words occur often."""
    _, routes = metro
    compass = Counter(m.compass for r in routes for m in r.milestones)
    rng = np.random.default_rng(0)
    relative = Counter()
    pairs = Counter()
    for r in routes:
        words = relative_words(r.milestones, int(rng.integers(360)), wrap=True)
        relative.update(words)
        pairs.update(zip((m.compass for m in r.milestones), words, strict=True))
    total = sum(compass.values())
    assert set(compass) == set(COMPASS)
    assert min(compass.values()) / total > 0.02
    assert set(relative) == set(RELATIVE)
    assert min(relative.values()) / sum(relative.values()) > 0.05
    # Relative labels are not a function of the compass label.
    for word in COMPASS:
        assert len({rel for (c, rel) in pairs if c == word}) >= 3


def test_landmark_rule_and_rate(metro):
    city, routes = metro
    turns = [m for r in routes for m in r.milestones if not m.is_destination]
    rate = sum(m.landmark is not None for m in turns) / len(turns)
    assert 0.4 <= rate <= 0.75
    for m in turns[:200]:
        mark = landmark_at(city, m.xy)
        assert (mark.name if mark else None) == m.landmark
        if mark:
            assert distance(mark.xy, m.xy) <= 18.0 and mark.reviews >= 10
            assert m.expression.startswith(f"{mark.name} is on your ")
        else:
            assert m.expression == "No landmark nearby"


def test_destination_expression(metro):
    _, routes = metro
    for r in routes[:100]:
        last = r.milestones[-1]
        assert last.expression.startswith(f"The destination {r.destination} is on your ")

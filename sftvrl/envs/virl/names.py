"""Compositional place names: "<descriptor> <noun> <category word>", unique within a city.

Two disjoint pools: ``train`` (the training city and its routes) and ``test`` (the mini-benchmark
cities), so a visual-OOD landmark name is never one seen in training (VIRL.md §5.13).
Names stay in Latin script so they match the English instruction text.
"""

from __future__ import annotations

import numpy as np

CATEGORIES: dict[str, tuple[str, ...]] = {
    "bank": ("Bank", "Savings", "Credit Union"),
    "restaurant": ("Grill", "Kitchen", "Bistro", "Diner"),
    "supermarket": ("Market", "Grocers", "Foods"),
    "bakery": ("Bakery", "Bakehouse"),
    "cafe": ("Cafe", "Coffee", "Espresso Bar"),
    "pharmacy": ("Pharmacy", "Drugstore"),
    "hospital": ("Hospital", "Clinic"),
    "spa": ("Spa", "Wellness"),
    "convenience_store": ("Deli", "Corner Store"),
    "school": ("School", "Academy"),
    "library": ("Library", "Reading Room"),
    "park": ("Park", "Gardens"),
    "lodging": ("Hotel", "Inn", "Suites"),
    "laundry": ("Laundry", "Cleaners"),
    "movie_theater": ("Cinema", "Theater"),
    "book_store": ("Books", "Bookshop"),
    "clothing_store": ("Outfitters", "Boutique"),
    "jewelry_store": ("Jewelers", "Gems"),
    "gym": ("Gym", "Fitness"),
    "bar": ("Tavern", "Bar", "Pub"),
}
"""The 20 destination types of V-IRL's collector, with words that name them on a sign."""

_POOLS: dict[str, tuple[list[str], list[str]]] = {
    "train": (
        [
            "Blue",
            "Golden",
            "Silver",
            "Crimson",
            "Emerald",
            "Amber",
            "Ivory",
            "Copper",
            "Union",
            "Empire",
            "Harbor",
            "Liberty",
            "Hudson",
            "Gotham",
            "Bowery",
            "Mercer",
            "Grand",
            "Royal",
            "Little",
            "Old",
            "Lucky",
            "Happy",
            "Urban",
            "Metro",
            "Iron",
            "Maple",
            "Cedar",
            "Willow",
            "Bright",
            "Quiet",
            "Swift",
            "Noble",
            "Sunny",
            "Bold",
            "Velvet",
            "Marble",
            "Brick",
            "Stone",
            "Pearl",
            "Rose",
        ],
        [
            "Heron",
            "Oak",
            "Lantern",
            "Anchor",
            "Falcon",
            "Compass",
            "Bridge",
            "Tower",
            "Garden",
            "River",
            "Harvest",
            "Crown",
            "Arrow",
            "Beacon",
            "Orchard",
            "Meadow",
            "Fox",
            "Bear",
            "Owl",
            "Lion",
            "Star",
            "Moon",
            "Sparrow",
            "Wolf",
            "Mill",
            "Gate",
            "Square",
            "Corner",
            "Avenue",
            "Pier",
            "Dock",
            "Lark",
            "Ember",
            "Comet",
            "Atlas",
            "Summit",
            "Canyon",
            "Spruce",
            "Birch",
            "Elm",
        ],
    ),
    "test": (
        [
            "Azure",
            "Scarlet",
            "Jade",
            "Saffron",
            "Cobalt",
            "Indigo",
            "Coral",
            "Onyx",
            "Vista",
            "Solar",
            "Lunar",
            "Nova",
            "Alpine",
            "Coastal",
            "Tidal",
            "Polar",
            "Rustic",
            "Vivid",
            "Gentle",
            "Mellow",
            "Radiant",
            "Hidden",
            "Secret",
            "Wild",
            "Ancient",
            "Modern",
            "Vintage",
            "Prime",
            "Zen",
            "Cosmo",
            "Orbit",
            "Echo",
        ],
        [
            "Lotus",
            "Palm",
            "Jasmine",
            "Peacock",
            "Dragon",
            "Tiger",
            "Panda",
            "Koala",
            "Lagoon",
            "Harbour",
            "Terrace",
            "Plaza",
            "Piazza",
            "Bazaar",
            "Pagoda",
            "Temple",
            "Cypress",
            "Olive",
            "Mango",
            "Tulip",
            "Orchid",
            "Cactus",
            "Bamboo",
            "Lemon",
            "Kite",
            "Drum",
            "Flute",
            "Sail",
            "Wave",
            "Reef",
            "Dune",
            "Mesa",
        ],
    ),
}


class NamePool:
    """Draws unique place names for one city from the ``train`` or ``test`` pool."""

    def __init__(self, pool: str, rng: np.random.Generator) -> None:
        if pool not in _POOLS:
            raise ValueError(f"unknown name pool {pool!r}; use one of {sorted(_POOLS)}")
        descriptors, nouns = _POOLS[pool]
        self._descriptors, self._nouns = descriptors, nouns
        order = rng.permutation(len(descriptors) * len(nouns))
        self._order = [int(k) for k in order]
        self._next = 0
        self._rng = rng
        self._used: set[str] = set()

    def draw(self, category: str) -> str:
        """A fresh name for a place of ``category``; raises when the pool is exhausted."""
        words = CATEGORIES[category]
        while self._next < len(self._order):
            k = self._order[self._next]
            self._next += 1
            d, n = divmod(k, len(self._nouns))
            word = words[int(self._rng.integers(len(words)))]
            name = f"{self._descriptors[d]} {self._nouns[n]} {word}"
            if name not in self._used:
                self._used.add(name)
                return name
        raise RuntimeError("name pool exhausted; make the city smaller or lower place density")


def pool_words(pool: str) -> set[str]:
    """All descriptor and noun words of a pool (tests use it to check disjointness)."""
    descriptors, nouns = _POOLS[pool]
    return set(descriptors) | set(nouns)

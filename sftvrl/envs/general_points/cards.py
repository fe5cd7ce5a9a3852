"""Hands of cards: the ``Hand`` value, dealing under a rule, and every hand of a split.

Dealing rejects unsolvable hands, as the paper requires, but checks them against a solvability
table built once, so a deal costs microseconds rather than a solver run per attempt.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sftvrl.envs.general_points.rules import FACE_RANKS, RANKS, SUITS, Rules
from sftvrl.envs.general_points.solver import is_solvable

MAX_DEAL_ATTEMPTS = 10_000


def parse_card(card: str) -> tuple[str, str]:
    """Split a card code ('SK', 'H10', 'DA') into (suit, rank); 'T' is accepted for ten."""
    if not isinstance(card, str) or len(card) < 2:
        raise ValueError(f"bad card code {card!r}; expected suit + rank such as 'SK' or 'H10'")
    suit, rank = card[0].upper(), card[1:].upper()
    if rank == "T":
        rank = "10"
    if suit not in SUITS["all"] or rank not in RANKS:
        raise ValueError(f"bad card code {card!r}; expected suit in S/H/D/C and rank in {RANKS}")
    return suit, rank


@dataclass(frozen=True)
class Hand:
    """The cards on the table and what they mean under a rule.

    ``cards`` are codes (suit + rank, e.g. 'SK', 'H10'); ``ranks`` the plain ranks a text prompt
    shows ('K', '10'); ``numbers`` the values the formula must use under ``rules``.
    """

    cards: tuple[str, ...]
    ranks: tuple[str, ...]
    numbers: tuple[int, ...]
    rules: Rules

    @classmethod
    def from_cards(cls, cards: Sequence[str], rules: Rules | None = None) -> Hand:
        """Build a hand from card codes, valued under ``rules`` (default: the training rule)."""
        rules = rules or Rules()
        parsed = [parse_card(card) for card in cards]
        codes = tuple(suit + rank for suit, rank in parsed)
        ranks = tuple(rank for _, rank in parsed)
        return cls(codes, ranks, tuple(rules.value(rank) for rank in ranks), rules)

    @property
    def suits(self) -> tuple[str, ...]:
        return tuple(card[0] for card in self.cards)

    @property
    def solvable(self) -> bool:
        return is_solvable(self.numbers, self.rules.target)

    def __str__(self) -> str:
        return " ".join(self.cards)


def _draw_with_replacement(rules: Rules, rng: random.Random) -> list[str]:
    """Each card drawn independently, as the official environment does.

    With ``require_face`` the official code draws n-1 ranks from all 13 and one from J/Q/K, then
    shuffles; we do the same so the statistics match.
    """
    ranks = [rng.choice(RANKS) for _ in range(rules.n_cards - int(rules.require_face))]
    if rules.require_face:
        ranks.append(rng.choice(("J", "Q", "K")))
        rng.shuffle(ranks)
    suits = SUITS[rules.suits]
    return [rng.choice(suits) + rank for rank in ranks]


def _draw_from_deck(rules: Rules, rng: random.Random) -> list[str]:
    """Distinct cards from a real deck restricted to the rule's suits (the paper's wording)."""
    deck = [suit + rank for suit in SUITS[rules.suits] for rank in RANKS]
    while True:
        cards = rng.sample(deck, rules.n_cards)
        if not rules.require_face or any(card[1:] in FACE_RANKS for card in cards):
            return cards


def deal(rules: Rules, rng: random.Random | int | None = None) -> Hand:
    """Deal a solvable hand under ``rules``; ``rng`` is a ``random.Random`` or a seed."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    if not rules.with_replacement and rules.n_cards > 13 * len(SUITS[rules.suits]):
        raise ValueError("not enough cards in the deck for this rule")
    draw = _draw_with_replacement if rules.with_replacement else _draw_from_deck
    for _ in range(MAX_DEAL_ATTEMPTS):
        hand = Hand.from_cards(draw(rules, rng), rules)
        if hand.solvable:
            return hand
    raise RuntimeError(f"no solvable hand after {MAX_DEAL_ATTEMPTS} deals under {rules}")


def number_multisets(rules: Rules, *, solvable_only: bool = True) -> list[tuple[int, ...]]:
    """Every multiset of card values a split can deal (sorted tuples, in order).

    With J/Q/K = 10 there are 715 value multisets of four cards (566 solvable for 24); with
    11/12/13 there are 1,820 (1,362 solvable). ``require_face`` keeps those with a value above 10;
    dealing from a deck drops multisets the deck cannot hold (three aces from two suits).
    """
    faces = set(rules.face_values)
    result = []
    for combo in itertools.combinations_with_replacement(rules.values, rules.n_cards):
        if rules.require_face and not faces.intersection(combo):
            continue
        if not rules.with_replacement and not _fits_deck(combo, rules):
            continue
        if solvable_only and not is_solvable(combo, rules.target):
            continue
        result.append(combo)
    return result


def _fits_deck(combo: tuple[int, ...], rules: Rules) -> bool:
    """Whether a real deck with the rule's suits holds enough cards of each value."""
    n_suits = len(SUITS[rules.suits])
    return all(
        count <= n_suits * len(_ranks_for_value(value, rules))
        for value, count in Counter(combo).items()
    )


def _ranks_for_value(value: int, rules: Rules) -> tuple[str, ...]:
    """The ranks worth ``value`` (under J/Q/K = 10, a 10 is any of 10, J, Q, K)."""
    return tuple(rank for rank in RANKS if rules.value(rank) == value)


def enumerate_hands(rules: Rules, *, seed: int = 0) -> Iterator[Hand]:
    """One hand per solvable value multiset of the split: an exhaustive, fixed evaluation set.

    Which rank shows a 10 under J/Q/K = 10 (10, J, Q or K) and which suits are drawn are chosen
    by ``seed``, respecting the deck (no duplicate card when dealing without replacement); the
    order of the cards is shuffled too, so position carries no information.
    """
    rng = random.Random(seed)
    suits = SUITS[rules.suits]
    for combo in number_multisets(rules):
        for _ in range(1000):
            ranks = [rng.choice(_ranks_for_value(v, rules)) for v in combo]
            if rules.require_face and not any(r in FACE_RANKS for r in ranks):
                continue
            copies = Counter(ranks)
            if not rules.with_replacement and max(copies.values()) > len(suits):
                continue
            break
        else:  # pragma: no cover - every multiset has a valid realisation
            raise RuntimeError(f"cannot realise {combo} under {rules}")
        cards: list[str] = []
        used: set[str] = set()
        for rank in ranks:
            choices = [s + rank for s in suits if rules.with_replacement or s + rank not in used]
            card = rng.choice(choices)
            used.add(card)
            cards.append(card)
        rng.shuffle(cards)
        yield Hand.from_cards(cards, rules)

"""Rules, hands, dealing statistics and the exhaustive evaluation sets."""

import random
from collections import Counter

import pytest

from sftvrl.envs.general_points import (
    FACE_RANKS,
    Hand,
    Rules,
    deal,
    enumerate_hands,
    is_solvable,
    parse_card,
)


def test_presets():
    assert Rules.id() == Rules(face="10", suits="all")
    assert Rules.id(vision=True).suits == "black"
    assert Rules.rule_ood() == Rules(face="jqk", require_face=True)
    assert Rules.rule_ood(vision=True).suits == "black"
    assert Rules.visual_ood() == Rules(face="10", suits="red")
    assert Rules.for_split("rule_ood", vision=True) == Rules.rule_ood(vision=True)
    with pytest.raises(ValueError, match="unknown split"):
        Rules.for_split("test")
    with pytest.raises(ValueError, match="face"):
        Rules(face="11")  # type: ignore[arg-type]


def test_values_under_each_rule():
    assert [Rules.id().value(r) for r in ("A", "7", "10", "J", "Q", "K")] == [1, 7, 10, 10, 10, 10]
    assert [Rules.rule_ood().value(r) for r in ("A", "J", "Q", "K")] == [1, 11, 12, 13]
    with pytest.raises(ValueError, match="unknown rank"):
        Rules().value("Z")


def test_hand_from_cards():
    hand = Hand.from_cards(["SA", "h3", "DK", "CT"], Rules.rule_ood())
    assert hand.cards == ("SA", "H3", "DK", "C10")
    assert hand.ranks == ("A", "3", "K", "10")
    assert hand.numbers == (1, 3, 13, 10)
    assert hand.suits == ("S", "H", "D", "C")
    assert Hand.from_cards(["SK"], Rules()).numbers == (10,)
    for bad in ("X5", "S11", "S", "", None):
        with pytest.raises(ValueError, match="card"):
            parse_card(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rules",
    [Rules.id(), Rules.rule_ood(), Rules.visual_ood(), Rules.id(vision=True), Rules(target=10)],
)
def test_dealt_hands_are_solvable_and_follow_the_rule(rules):
    rng = random.Random(0)
    for _ in range(300):
        hand = deal(rules, rng)
        assert len(hand.cards) == rules.n_cards
        assert is_solvable(hand.numbers, rules.target)
        assert {card[0] for card in hand.cards} <= set(
            {"all": "SHDC", "black": "SC", "red": "HD"}[rules.suits]
        )
        if rules.require_face:
            assert set(hand.ranks) & FACE_RANKS


def test_dealing_is_deterministic_per_seed():
    assert deal(Rules(), 7) == deal(Rules(), 7)
    assert deal(Rules(), random.Random(3)) == deal(Rules(), random.Random(3))


def test_with_and_without_replacement():
    rng = random.Random(1)
    with_replacement = [deal(Rules(suits="black"), rng) for _ in range(2000)]
    assert any(len(set(h.cards)) < 4 for h in with_replacement)  # the official code repeats cards
    deck = Rules(suits="black", with_replacement=False)
    assert all(len(set(deal(deck, rng).cards)) == 4 for _ in range(2000))


def test_rank_frequencies_are_roughly_uniform():
    """Solvability filtering skews ranks a little; no rank should be rare or dominant."""
    rng = random.Random(2)
    counts = Counter(rank for _ in range(4000) for rank in deal(Rules(), rng).ranks)
    share = {rank: n / 16000 for rank, n in counts.items()}
    assert len(share) == 13
    assert all(0.03 < s < 0.13 for s in share.values()), share


def test_rule_ood_dealing_matches_the_official_scheme():
    """n-1 ranks uniform plus one J/Q/K: face cards are over-represented, every hand has one."""
    rng = random.Random(4)
    hands = [deal(Rules.rule_ood(), rng) for _ in range(3000)]
    faces = sum(r in FACE_RANKS for h in hands for r in h.ranks) / (4 * len(hands))
    assert 0.3 < faces < 0.5


@pytest.mark.parametrize(
    ("rules", "count"),
    [
        (Rules.id(), 566),
        (Rules.visual_ood(), 566),
        (Rules.rule_ood(), 796),
        (Rules(face="jqk"), 1362),
    ],
)
def test_exhaustive_evaluation_sets(rules, count):
    hands = list(enumerate_hands(rules, seed=0))
    assert len(hands) == count
    assert len({tuple(sorted(h.numbers)) for h in hands}) == count
    assert all(h.solvable for h in hands)
    assert hands == list(enumerate_hands(rules, seed=0))
    if rules.require_face:
        assert all(set(h.ranks) & FACE_RANKS for h in hands)


def test_exhaustive_set_from_a_two_suit_deck_respects_the_deck():
    rules = Rules.rule_ood(vision=True, with_replacement=False)
    hands = list(enumerate_hands(rules))
    assert hands and all(len(set(h.cards)) == 4 for h in hands)
    assert all(max(Counter(h.ranks).values()) <= 2 for h in hands)

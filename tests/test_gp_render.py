"""Card and hand images for GP-VL: sizes, determinism, colours, distinctness, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sftvrl.envs.general_points.render import (
    TABLE_GREEN,
    card_codes,
    hand_to_array,
    render_card,
    render_hand,
)

HAND = ["SA", "H10", "DK", "C7"]
GREEN = np.array([0x35, 0x65, 0x4D], dtype=np.uint8)


def _red_pixels(img: np.ndarray) -> int:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(((r > 150) & (g < 80) & (b < 80)).sum())


def _card_area(card: np.ndarray) -> np.ndarray:
    """Pixels that are not table green: the card itself."""
    return card[~np.all(card == GREEN, axis=-1)]


def test_card_codes_are_52_distinct() -> None:
    codes = card_codes()
    assert len(codes) == 52 == len(set(codes))
    assert {"SA", "H10", "DK", "C7", "SK", "CA"} <= set(codes)


@pytest.mark.parametrize("height", [8, 34, 84, 210, 600])
def test_card_size_and_mode(height: int) -> None:
    img = render_card("H10", height)
    assert img.mode == "RGB"
    assert img.size == (round(height * 5 / 7), height)


def test_card_default_height() -> None:
    assert render_card("SK").size == (150, 210)


@pytest.mark.parametrize("n", range(1, 7))
@pytest.mark.parametrize(("width", "height"), [(112, None), (448, None), (1200, None), (448, 448)])
def test_hand_size_and_mode(n: int, width: int, height: int | None) -> None:
    cards = card_codes()[n * 7 : n * 8]
    img = render_hand(cards, width=width, height=height)
    assert img.mode == "RGB"
    assert img.size == (width, width * 3 // 8 if height is None else height)
    arr = hand_to_array(cards, width=width, height=height)
    assert arr.dtype == np.uint8
    assert arr.shape == (img.height, img.width, 3)
    assert np.array_equal(arr, np.asarray(img))


def test_hand_layout_is_centred_with_table_margins() -> None:
    arr = hand_to_array(HAND, width=448)
    # The border of the image is table; the cards sit in the middle row, four of them.
    for edge in (arr[0], arr[-1], arr[:, 0], arr[:, -1]):
        assert np.all(edge == GREEN)
    middle = ~np.all(arr[arr.shape[0] // 2] == GREEN, axis=-1)
    starts = np.flatnonzero(middle[1:] & ~middle[:-1])
    assert len(starts) == 4
    rows = np.flatnonzero(~np.all(arr == GREEN, axis=-1).all(axis=1))
    top, bottom = rows[0], arr.shape[0] - 1 - rows[-1]
    assert abs(top - bottom) <= 1


def test_hand_background_is_configurable() -> None:
    arr = hand_to_array(["SA"], width=224, background="#000000")
    assert np.all(arr[0, 0] == 0)
    with pytest.raises(ValueError, match="colour"):
        render_hand(["SA"], background="not-a-colour")


def test_deterministic() -> None:
    for width in (112, 448, 1200):
        a = np.asarray(render_hand(HAND, width=width))
        b = np.asarray(render_hand(list(HAND), width=width))
        assert a.tobytes() == b.tobytes()
    assert (
        np.asarray(render_card("DQ", 99)).tobytes() == np.asarray(render_card("DQ", 99)).tobytes()
    )


def test_deterministic_across_cache_clears() -> None:
    from sftvrl.envs.general_points import render

    before = hand_to_array(HAND, width=448)
    render._card_rgba.cache_clear()
    render._card_on.cache_clear()
    render._glyph.cache_clear()
    assert np.array_equal(before, hand_to_array(HAND, width=448))


def test_copies_are_independent_of_the_cache() -> None:
    original = np.asarray(render_card("SA", 84)).copy()
    img = render_card("SA", 84)
    img.paste((255, 0, 0), (0, 0, img.width, img.height))
    assert np.array_equal(np.asarray(render_card("SA", 84)), original)

    hand = render_hand(HAND, width=448)
    expected = np.asarray(hand).copy()
    hand.paste((0, 0, 0), (0, 0, hand.width, hand.height))
    assert np.array_equal(np.asarray(render_hand(HAND, width=448)), expected)

    arr = hand_to_array(HAND, width=448)
    arr[:] = 0
    assert np.array_equal(hand_to_array(HAND, width=448), expected)


@pytest.mark.parametrize("height", [34, 84, 210])
def test_red_suits_are_red_and_black_suits_are_not(height: int) -> None:
    for card in card_codes():
        red = _red_pixels(_card_area(np.asarray(render_card(card, height))))
        if card[0] in "HD":
            assert red > 0.005 * height * height, card
        else:
            assert red == 0, card


def test_red_pixels_in_hand() -> None:
    assert _red_pixels(hand_to_array(["SA", "SK", "C7", "C10"], width=448)) == 0
    assert _red_pixels(hand_to_array(["SA", "H10", "SK", "C7"], width=448)) > 100


def test_all_cards_pairwise_distinct() -> None:
    images = {c: np.asarray(render_card(c, 84)).tobytes() for c in card_codes()}
    for a, b in itertools.combinations(images, 2):
        assert images[a] != images[b], (a, b)


def test_cards_differ_substantially() -> None:
    """Not just a stray pixel: every pair differs in a visible number of pixels."""
    arrays = {c: np.asarray(render_card(c, 84)).astype(int) for c in card_codes()}
    for a, b in itertools.combinations(arrays, 2):
        changed = (np.abs(arrays[a] - arrays[b]).max(axis=-1) > 64).sum()
        assert changed >= 20, (a, b, changed)


def test_card_corners_show_the_table() -> None:
    arr = np.asarray(render_card("SA", 210))
    assert np.array_equal(arr[0, 0], GREEN)
    assert np.array_equal(arr[-1, -1], GREEN)
    assert np.all(arr[105, 75] < 60)  # centre of the big spade is black
    assert TABLE_GREEN.lower() == "#35654d"


@pytest.mark.parametrize("bad", ["X5", "S11", "ST", "S1", "s10", "", "S", "10S", "H 10", None, 5])
def test_invalid_card_raises(bad: object) -> None:
    with pytest.raises(ValueError, match="card code"):
        render_card(bad, 84)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="card code"):
        render_hand(["SA", bad])  # type: ignore[list-item]


def test_invalid_hand_and_sizes_raise() -> None:
    with pytest.raises(ValueError, match="sequence"):
        render_hand("SA")
    with pytest.raises(ValueError, match="empty"):
        render_hand([])
    with pytest.raises(ValueError, match="at least"):
        render_card("SA", 4)
    with pytest.raises(ValueError, match="px"):
        render_hand(HAND, width=20)
    with pytest.raises(TypeError):
        render_hand(HAND, width=448.0)  # type: ignore[arg-type]

"""Playing-card images for the vision variant of GeneralPoints (GP-VL).

The official code renders a hand by pasting 52 card PNGs (750x1050 each) that it ships; those are
third-party artwork we must not copy, and they would tie every image to one fixed resolution. So we
draw our own cards with PIL only: a white rounded card on a casino-green table, a large rank in
the top-left corner and (turned 180°) in the bottom-right, a suit under each corner rank, and a
big suit (or, for J/Q/K, the letter) in the centre. Suits are vector shapes, text uses the
scalable font that ships inside Pillow, so nothing is downloaded and the same cards and size give
the same pixels everywhere the same Pillow runs.

Cards are drawn supersampled and downscaled for anti-aliasing, once per (card, height): a hand is
then only a few pastes of cached images, cheap enough to render inside an environment's ``step``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from sftvrl.envs.general_points.rules import RANKS
from sftvrl.envs.general_points.rules import SUITS as SUITS_BY_COLOUR

__all__ = [
    "CARD_ASPECT",
    "RANKS",
    "SUITS",
    "TABLE_GREEN",
    "card_codes",
    "hand_to_array",
    "render_card",
    "render_hand",
]

SUITS: tuple[str, ...] = SUITS_BY_COLOUR["all"]
"""Suit letters: S spades, C clubs (black); H hearts, D diamonds (red)."""

TABLE_GREEN = "#35654d"
"""The table colour behind the cards."""

CARD_ASPECT = 5 / 7
"""Card width / height, the proportions of a poker-size card (63 x 88 mm)."""

MIN_CARD_HEIGHT = 8
"""Below this a card is a smudge; refusing is clearer than returning one."""

_RED = (200, 16, 46)
_BLACK = (20, 20, 20)
_WHITE = (255, 255, 255, 255)
_EDGE = (165, 165, 165, 255)
_FACE_RANKS = frozenset({"J", "Q", "K"})

# Layout of a card, as fractions of its width (x) or height (y).
_MARGIN_X = 0.055
_MARGIN_Y = 0.045
_INDEX_COL_W = 0.30  # corner column that holds the rank and the suit under it
_RANK_CAP_H = 0.165  # height of a corner rank's capitals
_INDEX_GAP = 0.018
_INDEX_SUIT_H = 0.105
_CENTRE_SUIT_H = 0.30
_ACE_SUIT_H = 0.40
_FACE_LETTER_H = 0.25
_FACE_SUIT_H = 0.15

_GLYPH_FONT_SIZE = 320  # glyphs are rasterised once at this size, then scaled
_SUPERSAMPLED_HEIGHT = 840  # draw at least this tall (capped by _MAX_SUPERSAMPLE)
_MAX_SUPERSAMPLE = 8


def card_codes() -> list[str]:
    """All 52 card codes, suit-major (``SA, S2, ... CK``), for tests and dataset builders."""
    return [s + r for s in SUITS for r in RANKS]


def _parse(card: object) -> tuple[str, str]:
    """Split a card code into (suit, rank); raise ``ValueError`` naming the bad code."""
    if isinstance(card, str) and len(card) >= 2 and card[0] in SUITS and card[1:] in RANKS:
        return card[0], card[1:]
    raise ValueError(
        f"unknown card code {card!r}: expected a suit letter from {''.join(SUITS)} followed by a "
        f"rank from {', '.join(RANKS)} (e.g. 'SK', 'H10', 'DA', 'C7')"
    )


def _check_size(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


# -- suit shapes ---------------------------------------------------------------------------------


def _tangent_point(
    centre: tuple[float, float], r: float, point: tuple[float, float], sign: float
) -> tuple[float, float]:
    """Where a line from ``point`` touches the circle; ``sign`` picks which of the two sides."""
    dx, dy = centre[0] - point[0], centre[1] - point[1]
    d = math.hypot(dx, dy)
    base = math.atan2(-dy, -dx)  # direction from the centre towards the point
    a = base + sign * math.acos(r / d)
    return centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)


def _heart_parts(
    x0: float, y0: float, w: float, h: float, flip: bool
) -> tuple[list[tuple[float, float, float]], list[tuple[float, float]]]:
    """Two lobes (circles) and the polygon that joins them to the point, in a w x h box.

    ``flip`` turns the heart upside down, which is the body of a spade.
    """
    r = 0.26 * w
    lobe_y = r + 0.01 * h
    tip_y = 0.98 * h
    lobes = [(0.5 * w - r * 0.98, lobe_y), (0.5 * w + r * 0.98, lobe_y)]
    tip = (0.5 * w, tip_y)
    left = _tangent_point(lobes[0], r, tip, 1.0)
    right = _tangent_point(lobes[1], r, tip, -1.0)
    poly = [left, lobes[0], (0.5 * w, lobe_y + 0.1 * r), lobes[1], right, tip]

    def place(x: float, y: float) -> tuple[float, float]:
        return x0 + x, y0 + (h - y if flip else y)

    circles = [(*place(cx, cy), r) for cx, cy in lobes]
    return circles, [place(x, y) for x, y in poly]


def _circle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: tuple) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def _suit_aspect(suit: str) -> float:
    """Width / height of a suit symbol."""
    return {"H": 1.0, "D": 0.78, "S": 0.92, "C": 1.0}[suit]


def _draw_suit(
    draw: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, h: float, fill: tuple
) -> None:
    """Draw a suit symbol of height ``h`` centred on (cx, cy), upright."""
    w = _suit_aspect(suit) * h
    x0, y0 = cx - w / 2, cy - h / 2
    if suit == "D":
        draw.polygon([(cx, y0), (x0 + w, cy), (cx, y0 + h), (x0, cy)], fill=fill)
    elif suit == "H":
        circles, poly = _heart_parts(x0, y0, w, h * 0.92, flip=False)
        for c in circles:
            _circle(draw, *c, fill)
        draw.polygon(poly, fill=fill)
    elif suit == "S":
        body_h = 0.80 * h
        circles, poly = _heart_parts(x0, y0, w, body_h, flip=True)
        for c in circles:
            _circle(draw, *c, fill)
        draw.polygon(poly, fill=fill)
        _draw_stem(draw, cx, y0 + 0.55 * h, y0 + h, w, fill)
    elif suit == "C":
        r = 0.235 * w
        _circle(draw, cx, y0 + r, r, fill)
        _circle(draw, x0 + r, y0 + 0.58 * h, r, fill)
        _circle(draw, x0 + w - r, y0 + 0.58 * h, r, fill)
        _circle(draw, cx, y0 + 0.5 * h, 0.16 * w, fill)
        _draw_stem(draw, cx, y0 + 0.5 * h, y0 + h, w, fill)
    else:  # pragma: no cover - _parse rejects other suits
        raise ValueError(f"unknown suit {suit!r}")


def _draw_stem(
    draw: ImageDraw.ImageDraw, cx: float, top: float, bottom: float, w: float, fill: tuple
) -> None:
    """A flared stem: narrow where it meets the symbol, widening towards the base."""
    half_top, half_base = 0.03 * w, 0.17 * w
    n = 12
    left, right = [], []
    for i in range(n + 1):
        t = i / n
        half = half_top + (half_base - half_top) * t**2.2  # concave sides
        y = top + (bottom - top) * t
        left.append((cx - half, y))
        right.append((cx + half, y))
    draw.polygon(left + right[::-1], fill=fill)


# -- glyphs --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=_GLYPH_FONT_SIZE)


@lru_cache(maxsize=32)
def _glyph(text: str) -> tuple[Image.Image, int]:
    """A bold mask of ``text`` cropped to its ink, and the height of its capitals in that mask.

    Cropping from the top of the capitals (not the font's ascent) lets callers size every rank by
    the same cap height, so 'Q' with its tail is no smaller than 'K'.
    """
    font = _font()
    stroke = round(_GLYPH_FONT_SIZE * 0.036)  # Pillow's font is a regular weight; embolden it

    def ink(s: str) -> tuple[Image.Image, tuple[int, int, int, int]]:
        size = (_GLYPH_FONT_SIZE * (len(s) + 1), _GLYPH_FONT_SIZE * 2)
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).text(
            (_GLYPH_FONT_SIZE // 2, _GLYPH_FONT_SIZE // 2),
            s,
            font=font,
            fill=255,
            stroke_width=stroke,
            stroke_fill=255,
        )
        bbox = mask.getbbox()
        assert bbox is not None
        return mask, bbox

    _, cap = ink("H")
    mask, bbox = ink(text)
    cropped = mask.crop((bbox[0], cap[1], bbox[2], max(bbox[3], cap[3])))
    return cropped, cap[3] - cap[1]


def _paste_text(
    img: Image.Image,
    text: str,
    cx: float,
    top: float,
    cap_h: float,
    max_w: float,
    fill: tuple,
) -> None:
    """Paste ``text`` with capitals ``cap_h`` tall, centred on ``cx``, squeezed to ``max_w``."""
    mask, glyph_cap = _glyph(text)
    k = cap_h / glyph_cap
    w = min(mask.width * k, max_w)
    h = mask.height * k
    mask = mask.resize((max(1, round(w)), max(1, round(h))), Image.Resampling.LANCZOS)
    img.paste((*fill, 255), (round(cx - mask.width / 2), round(top)), mask)


# -- cards ---------------------------------------------------------------------------------------


def _card_width(height: int) -> int:
    return max(1, round(height * CARD_ASPECT))


@lru_cache(maxsize=512)
def _card_rgba(card: str, height: int) -> Image.Image:
    """The card with transparent rounded corners; drawn supersampled, then downscaled."""
    suit, rank = _parse(card)
    width = _card_width(height)
    s = min(_MAX_SUPERSAMPLE, max(2, math.ceil(_SUPERSAMPLED_HEIGHT / height)))
    W, H = width * s, height * s
    colour = _RED if suit in ("H", "D") else _BLACK

    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    edge = max(s, round(0.011 * W))
    draw.rounded_rectangle(
        (0, 0, W - 1, H - 1), radius=round(0.075 * W), fill=_WHITE, outline=_EDGE, width=edge
    )

    # Top-left index: rank, and the suit under it, centred in one column.
    col_x = _MARGIN_X * W + _INDEX_COL_W * W / 2
    rank_top = _MARGIN_Y * H
    _paste_text(img, rank, col_x, rank_top, _RANK_CAP_H * H, 0.92 * _INDEX_COL_W * W, colour)
    suit_top = rank_top + (_RANK_CAP_H + _INDEX_GAP) * H
    _draw_suit(draw, suit, col_x, suit_top + _INDEX_SUIT_H * H / 2, _INDEX_SUIT_H * H, colour)

    # Bottom-right index: the same corner turned 180° (the blank card is symmetric).
    box_w = round((_MARGIN_X + _INDEX_COL_W + 0.01) * W)
    box_h = round((_MARGIN_Y + _RANK_CAP_H + _INDEX_GAP + _INDEX_SUIT_H + 0.02) * H)
    corner = img.crop((0, 0, box_w, box_h)).transpose(Image.Transpose.ROTATE_180)
    img.paste(corner, (W - box_w, H - box_h))

    # Centre: a big suit, bigger for an ace; for J/Q/K the letter over a suit.
    if rank in _FACE_RANKS:
        gap = 0.03 * H
        total = _FACE_LETTER_H * H + gap + _FACE_SUIT_H * H
        top = (H - total) / 2
        _paste_text(img, rank, W / 2, top, _FACE_LETTER_H * H, 0.6 * W, colour)
        suit_cy = top + _FACE_LETTER_H * H + gap + _FACE_SUIT_H * H / 2
        _draw_suit(draw, suit, W / 2, suit_cy, _FACE_SUIT_H * H, colour)
    else:
        h = (_ACE_SUIT_H if rank == "A" else _CENTRE_SUIT_H) * H
        _draw_suit(draw, suit, W / 2, H / 2, h, colour)

    return img.resize((width, height), Image.Resampling.LANCZOS)


def _rgb(colour: str) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(colour)
    except (ValueError, AttributeError) as err:
        raise ValueError(f"unknown colour {colour!r}") from err
    return rgb[0], rgb[1], rgb[2]


@lru_cache(maxsize=512)
def _card_on(card: str, height: int, background: tuple[int, int, int]) -> Image.Image:
    """The card flattened onto the table colour, so a hand is plain RGB pastes."""
    rgba = _card_rgba(card, height)
    out = Image.new("RGB", rgba.size, background)
    out.paste(rgba, (0, 0), rgba)
    return out


def render_card(card: str, height: int = 210) -> Image.Image:
    """One card as an RGB image ``round(height * 5 / 7)`` wide, its corners on table green.

    Rendering is cached per (card, height); the caller gets a copy so it may draw on it freely.
    """
    _parse(card)
    _check_size("height", height, MIN_CARD_HEIGHT)
    return _card_on(card, height, _rgb(TABLE_GREEN)).copy()


# -- hands ---------------------------------------------------------------------------------------

_GAP = 0.12  # space between cards (and at the edges), as a fraction of a card's width


def _default_height(width: int) -> int:
    """Tall enough that four cards fill the width with even margins all round."""
    return max(1, width * 3 // 8)


@lru_cache(maxsize=256)
def _layout(n: int, width: int, height: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Card height and the top-left corner of each card for ``n`` cards on a width x height table.

    Cards are sized as if there were at least four, so a short hand has the same card size as a
    full one (a vision model sees the same scale); leftover room becomes even spacing.
    """
    slots = max(n, 4)
    by_width = width / (slots + (slots + 1) * _GAP) / CARD_ASPECT
    by_height = height / (1 + 2 * _GAP * CARD_ASPECT)
    card_h = math.floor(min(by_width, by_height))
    if card_h < MIN_CARD_HEIGHT:
        raise ValueError(
            f"a {width}x{height} image leaves {n} card(s) only {card_h} px tall; "
            f"make it bigger (cards need at least {MIN_CARD_HEIGHT} px)"
        )
    card_w = _card_width(card_h)
    gap = (width - n * card_w) / (n + 1)
    y = (height - card_h) // 2
    xs = tuple((round(gap * (i + 1) + card_w * i), y) for i in range(n))
    return card_h, xs


def render_hand(
    cards: Sequence[str],
    *,
    width: int = 448,
    height: int | None = None,
    background: str = TABLE_GREEN,
) -> Image.Image:
    """The table image of a hand: cards left to right, evenly spaced, vertically centred.

    ``height`` defaults to ``width * 3 // 8``, where four cards fill the width with the same margin
    on every side. Same cards and size give byte-identical pixels, so images can be regenerated
    instead of stored.
    """
    if isinstance(cards, str) or not isinstance(cards, Sequence):
        raise ValueError(
            f"cards must be a sequence of card codes such as ['SA', 'H10'], got {cards!r}"
        )
    if len(cards) == 0:
        raise ValueError("cannot render an empty hand")
    for card in cards:
        _parse(card)
    _check_size("width", width, 1)
    height = _default_height(width) if height is None else _check_size("height", height, 1)
    bg = _rgb(background)

    card_h, positions = _layout(len(cards), width, height)
    table = Image.new("RGB", (width, height), bg)
    for card, xy in zip(cards, positions, strict=True):
        table.paste(_card_on(card, card_h, bg), xy)
    return table


def hand_to_array(
    cards: Sequence[str],
    *,
    width: int = 448,
    height: int | None = None,
    background: str = TABLE_GREEN,
) -> np.ndarray:
    """``render_hand`` as a writable uint8 array of shape (height, width, 3), for observations."""
    img = render_hand(cards, width=width, height=height, background=background)
    return np.array(img, dtype=np.uint8)

"""City looks for the street-view renderer: one training style and nine out-of-distribution ones.

A style changes appearance only (palette, building heights and ornament, sign design, lighting,
clutter); it never changes streets, places, routes or text (VIRL.md §5.9). ``metro_ny`` is the
training look, with sub-palettes for within-style variety; ``WORLD_STYLES`` are the nine
visual-OOD looks, in the order of V-IRL's VLN-mini cities.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """Everything the renderer needs to know about a look."""

    name: str
    title: str
    sky: tuple[RGB, RGB]
    ground: RGB
    road: RGB
    marking: RGB
    facades: tuple[tuple[RGB, ...], ...]
    """Sub-palettes; a route picks one, so the same style varies between routes."""
    window: RGB
    trim: RGB
    floors: tuple[int, int]
    sign_bg: tuple[RGB, ...]
    sign_fg: RGB
    sign_shape: str
    """rect | rounded | hanging | vertical | painted | plaque."""
    upper: bool = False
    ornament: str = ""
    """fire_escape | shutters | balconies | cast_iron | glass | bay | hoardings | neon | plain."""
    glyphs: str = ""
    """Pseudo-script for decoration blocks: devanagari | cjk | ''."""
    trees: float = 0.0
    tree_colour: RGB = (70, 110, 60)
    vehicle_colours: tuple[RGB, ...] = ((60, 60, 70),)
    tram: bool = False
    brightness: tuple[float, float] = (0.9, 1.05)
    tint: RGB = (255, 255, 255)
    haze: tuple[float, float] = (0.0, 0.1)
    tilt: float = 0.0
    """Horizon tilt in degrees (hills)."""


METRO_NY = Style(
    name="metro_ny",
    title="Metro-NY (training)",
    sky=((176, 186, 198), (214, 218, 222)),
    ground=(150, 150, 148),
    road=(72, 72, 76),
    marking=(220, 200, 90),
    facades=(
        ((142, 70, 52), (120, 62, 48), (160, 88, 64), (98, 60, 50)),
        ((110, 74, 60), (132, 96, 80), (88, 66, 58), (150, 120, 100)),
        ((128, 58, 46), (170, 150, 130), (104, 86, 78), (146, 80, 60)),
    ),
    window=(40, 46, 56),
    trim=(60, 60, 62),
    floors=(4, 9),
    sign_bg=((30, 32, 36), (18, 40, 70), (60, 20, 24)),
    sign_fg=(250, 250, 250),
    sign_shape="rect",
    ornament="fire_escape",
    trees=0.25,
    vehicle_colours=((240, 196, 30), (240, 196, 30), (60, 60, 70), (170, 170, 175)),
    brightness=(0.82, 0.98),
    tint=(236, 240, 248),
    haze=(0.02, 0.12),
)

WORLD_STYLES: tuple[Style, ...] = (
    Style(
        name="milan",
        title="Milan (Brera)",
        sky=((120, 170, 220), (214, 226, 236)),
        ground=(190, 176, 150),
        road=(110, 104, 96),
        marking=(235, 235, 235),
        facades=(((214, 160, 84), (196, 122, 70), (226, 190, 120), (186, 140, 96)),),
        window=(58, 44, 36),
        trim=(236, 222, 196),
        floors=(3, 6),
        sign_bg=((246, 238, 220),),
        sign_fg=(80, 30, 24),
        sign_shape="plaque",
        upper=True,
        ornament="shutters",
        brightness=(1.0, 1.1),
        tint=(255, 244, 226),
    ),
    Style(
        name="new_delhi",
        title="New Delhi (Lajpat Nagar)",
        sky=((196, 190, 170), (230, 220, 196)),
        ground=(176, 156, 126),
        road=(96, 92, 86),
        marking=(240, 240, 240),
        facades=(((206, 170, 120), (180, 196, 200), (222, 200, 160), (196, 120, 110)),),
        window=(60, 60, 64),
        trim=(120, 96, 80),
        floors=(2, 5),
        sign_bg=((230, 40, 40), (250, 200, 20), (30, 120, 200), (40, 160, 80)),
        sign_fg=(255, 255, 255),
        sign_shape="rect",
        ornament="hoardings",
        glyphs="devanagari",
        vehicle_colours=((40, 130, 60), (250, 210, 40), (220, 220, 220)),
        brightness=(0.95, 1.1),
        tint=(255, 240, 214),
        haze=(0.12, 0.25),
    ),
    Style(
        name="buenos_aires",
        title="Buenos Aires (Monserrat)",
        sky=((110, 160, 214), (200, 220, 238)),
        ground=(170, 160, 150),
        road=(84, 84, 88),
        marking=(240, 240, 240),
        facades=(((226, 214, 190), (190, 190, 196), (214, 186, 160), (238, 228, 210)),),
        window=(48, 52, 60),
        trim=(250, 248, 240),
        floors=(3, 7),
        sign_bg=((20, 60, 110), (250, 250, 250)),
        sign_fg=(240, 200, 60),
        sign_shape="rounded",
        ornament="balconies",
        trees=0.5,
        tree_colour=(140, 110, 190),
        vehicle_colours=((250, 220, 40), (30, 30, 34)),
        brightness=(0.95, 1.08),
    ),
    Style(
        name="london",
        title="London (Oxford St)",
        sky=((150, 156, 166), (196, 198, 204)),
        ground=(136, 134, 130),
        road=(70, 70, 74),
        marking=(240, 240, 240),
        facades=(((150, 84, 60), (232, 228, 218), (132, 76, 58), (218, 214, 204)),),
        window=(36, 40, 48),
        trim=(240, 238, 230),
        floors=(4, 6),
        sign_bg=((24, 60, 40), (90, 20, 30)),
        sign_fg=(236, 210, 130),
        sign_shape="hanging",
        ornament="bay",
        vehicle_colours=((200, 20, 24), (20, 20, 22)),
        brightness=(0.78, 0.92),
        tint=(228, 232, 240),
        haze=(0.08, 0.2),
    ),
    Style(
        name="hong_kong",
        title="Hong Kong (Prince Edward)",
        sky=((90, 110, 140), (170, 176, 190)),
        ground=(120, 118, 116),
        road=(56, 56, 60),
        marking=(240, 220, 60),
        facades=(((190, 190, 180), (160, 170, 176), (210, 200, 180), (140, 150, 150)),),
        window=(50, 60, 70),
        trim=(100, 100, 100),
        floors=(12, 22),
        sign_bg=((200, 20, 60), (20, 140, 200), (240, 120, 20), (120, 30, 160)),
        sign_fg=(255, 255, 200),
        sign_shape="vertical",
        ornament="neon",
        glyphs="cjk",
        vehicle_colours=((200, 30, 30), (220, 220, 220)),
        brightness=(0.7, 0.85),
        tint=(230, 220, 255),
        haze=(0.05, 0.15),
    ),
    Style(
        name="soho",
        title="New York (SoHo)",
        sky=((150, 180, 210), (214, 224, 232)),
        ground=(156, 152, 146),
        road=(74, 72, 72),
        marking=(230, 210, 90),
        facades=(((196, 188, 170), (150, 150, 150), (170, 120, 90), (214, 206, 186)),),
        window=(34, 38, 46),
        trim=(90, 90, 90),
        floors=(5, 7),
        sign_bg=((240, 240, 236), (20, 20, 20)),
        sign_fg=(30, 30, 30),
        sign_shape="rect",
        upper=True,
        ornament="cast_iron",
        trees=0.2,
        vehicle_colours=((240, 196, 30), (40, 40, 44)),
        brightness=(0.9, 1.02),
    ),
    Style(
        name="melbourne",
        title="Melbourne (Southbank)",
        sky=((80, 150, 230), (190, 222, 246)),
        ground=(170, 170, 172),
        road=(64, 66, 70),
        marking=(250, 250, 250),
        facades=(((120, 170, 200), (150, 190, 210), (90, 140, 170), (200, 210, 214)),),
        window=(170, 210, 230),
        trim=(220, 224, 228),
        floors=(8, 16),
        sign_bg=((0, 90, 70), (250, 250, 250)),
        sign_fg=(250, 250, 250),
        sign_shape="rounded",
        ornament="glass",
        trees=0.3,
        tram=True,
        vehicle_colours=((40, 140, 80), (250, 250, 250)),
        brightness=(1.0, 1.15),
    ),
    Style(
        name="lagos",
        title="Lagos (Surulere)",
        sky=((200, 206, 210), (240, 236, 224)),
        ground=(166, 110, 70),
        road=(90, 86, 80),
        marking=(210, 210, 200),
        facades=(((220, 200, 160), (120, 180, 190), (230, 170, 120), (200, 200, 200)),),
        window=(60, 50, 40),
        trim=(160, 150, 130),
        floors=(1, 3),
        sign_bg=((250, 220, 40), (40, 160, 220), (240, 90, 40), (250, 250, 250)),
        sign_fg=(20, 20, 20),
        sign_shape="painted",
        ornament="plain",
        trees=0.3,
        tree_colour=(60, 130, 50),
        vehicle_colours=((250, 200, 20), (250, 200, 20), (230, 230, 230)),
        brightness=(1.0, 1.15),
        tint=(255, 246, 226),
        haze=(0.1, 0.22),
    ),
    Style(
        name="san_francisco",
        title="San Francisco (Union Square)",
        sky=((110, 170, 226), (226, 232, 236)),
        ground=(176, 174, 170),
        road=(80, 80, 84),
        marking=(250, 250, 250),
        facades=(((236, 196, 200), (190, 220, 206), (240, 226, 170), (196, 206, 236)),),
        window=(50, 56, 66),
        trim=(255, 255, 255),
        floors=(3, 5),
        sign_bg=((34, 34, 80), (120, 30, 40)),
        sign_fg=(255, 255, 255),
        sign_shape="rect",
        ornament="bay",
        trees=0.15,
        vehicle_colours=((200, 30, 30), (60, 60, 64)),
        brightness=(1.0, 1.12),
        haze=(0.05, 0.2),
        tilt=4.0,
    ),
)

STYLES: dict[str, Style] = {s.name: s for s in (METRO_NY, *WORLD_STYLES)}
TRAIN_STYLE = METRO_NY.name


def get_style(name: str) -> Style:
    """Look a style up by name; the error lists the known ones."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown city style {name!r}; known styles: {sorted(STYLES)}") from None

"""V-IRL navigation: offline synthetic cities, the released data, verifier, prompts and env.

``VirlEnv(vision=False)`` is V-IRL-L, ``VirlEnv(vision=True)`` V-IRL-VL. See ``sources`` for the
splits, ``geometry`` for the heading discretisation, ``verifier`` for ``exact`` vs ``paper``.
"""

from .city import City, CityParams, generate_city
from .env import VirlEnv
from .geometry import COMPASS, RELATIONS, RELATIVE, compass_word, relation_word, relative_word
from .metrics import EpisodeStats, summarize
from .model import Milestone, Place, Rail, RailEntry, RouteSpec
from .parser import ParsedAnswer, normalize_action, parse_answer
from .rail import build_rail
from .real import RealSource, cut_perspective, load_routes
from .routes import MINI_FILTER, NYC_FILTER, RouteFilter, sample_routes
from .sources import SPLITS, RouteSource, SyntheticSource
from .styles import STYLES, TRAIN_STYLE, WORLD_STYLES, Style, get_style
from .verifier import Verdict, verify
from .views import LAYOUTS, Look, clear_grid_cache, compose_grid, render_grid, render_view

__all__ = [
    "COMPASS",
    "LAYOUTS",
    "MINI_FILTER",
    "NYC_FILTER",
    "RELATIONS",
    "RELATIVE",
    "SPLITS",
    "STYLES",
    "TRAIN_STYLE",
    "WORLD_STYLES",
    "City",
    "CityParams",
    "EpisodeStats",
    "Look",
    "Milestone",
    "ParsedAnswer",
    "Place",
    "Rail",
    "RailEntry",
    "RealSource",
    "RouteFilter",
    "RouteSource",
    "RouteSpec",
    "Style",
    "SyntheticSource",
    "Verdict",
    "VirlEnv",
    "build_rail",
    "clear_grid_cache",
    "compass_word",
    "compose_grid",
    "cut_perspective",
    "generate_city",
    "get_style",
    "load_routes",
    "normalize_action",
    "parse_answer",
    "relation_word",
    "relative_word",
    "render_grid",
    "render_view",
    "sample_routes",
    "summarize",
    "verify",
]

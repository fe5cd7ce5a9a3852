"""The released V-IRL data (HF ``tianzhechu/SFTvsRL_Data``): routes, panorama mapping, views.

A data folder holds ``route_infos.json`` (``[route_list, count]``), ``gps_pano_mapping.pkl``
(``(lat, lng) → pano id``) and ``street_views/`` (``{pano}.jpg`` equirectangular panoramas plus
``{pano}.metadata.json`` with the ``rotation`` north offset), as VIRL.md §1.1 describes. Nothing
here touches the network: a missing or incomplete folder raises ``RealDataError`` naming what is
missing and how to get it. Perspective views are cut from the panoramas with numpy.

Panorama convention (VIRL.md §5.16 lists it as unverified): compass heading θ lies at column
``((θ − rotation) / 360 + 0.5) mod 1`` of the panorama, i.e. the centre column faces ``rotation``.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .city import SNAP_RADIUS_M, City
from .geometry import compass_word, to_latlng, to_local
from .instructions import format_milestone_info, parse_heading, parse_milestone_info
from .model import NO_LANDMARK, XY, Milestone, RailEntry, RouteSpec
from .views import compose_grid, view_headings

ROUTES_FILE = "route_infos.json"
MAPPING_FILE = "gps_pano_mapping.pkl"
VIEWS_DIR = "street_views"
HOW_TO_GET = (
    "Download VIRL_routes/nyc_1k_routes.zip (training, ID and rule-OOD routes) and/or "
    "VIRL_routes/VLN_mini.zip (the 18-route visual-OOD benchmark) from the Hugging Face dataset "
    "tianzhechu/SFTvsRL_Data, unzip them, and pass the unzipped folder (or their parent folder) "
    "as source=..."
)
SUBFOLDERS = {
    "id": "nyc_1k_routes",
    "rule_ood": "nyc_1k_routes",
    "visual_ood": "VLN_mini",
    "mini": "VLN_mini",
}


class RealDataError(FileNotFoundError):
    """The released-data folder is missing, incomplete or malformed; the message says the fix."""


def resolve_data_dir(folder: Path, split: str) -> Path:
    """The folder holding the three items for ``split``; raises RealDataError naming the gaps."""
    folder = Path(folder).expanduser()
    if split not in SUBFOLDERS:
        raise ValueError(
            f"split {split!r} does not exist in the released data (it has no held-out routes); "
            f"use one of {sorted(SUBFOLDERS)}"
        )
    if not folder.is_dir():
        raise RealDataError(f"V-IRL data folder {str(folder)!r} does not exist. {HOW_TO_GET}")
    candidates = [folder, folder / SUBFOLDERS[split]]
    for cand in candidates:
        if (cand / ROUTES_FILE).is_file():
            missing = [n for n in (MAPPING_FILE,) if not (cand / n).is_file()]
            if not (cand / VIEWS_DIR).is_dir():
                missing.append(VIEWS_DIR + "/")
            if missing:
                raise RealDataError(
                    f"V-IRL data folder {str(cand)!r} is incomplete: missing {', '.join(missing)}. "
                    + HOW_TO_GET
                )
            return cand
    raise RealDataError(
        f"no {ROUTES_FILE} in {str(folder)!r} nor in {str(candidates[1])!r} (split {split!r}). "
        + HOW_TO_GET
    )


class _SafeUnpickler(pickle.Unpickler):
    """Loads plain containers and numbers only: the mapping file needs nothing else."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("builtins", "tuple"),
            ("builtins", "dict"),
            ("builtins", "list"),
            ("builtins", "float"),
            ("builtins", "int"),
            ("builtins", "str"),
            ("collections", "OrderedDict"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"{MAPPING_FILE} refers to {module}.{name}; only plain dicts of "
                "(lat, lng) → pano id are accepted"
            )
        return super().find_class(module, name)


def load_mapping(path: Path) -> dict[tuple[float, float], str]:
    """Read ``gps_pano_mapping.pkl`` safely into ``{(lat, lng): pano_id}``."""
    try:
        with open(path, "rb") as fh:
            raw = _SafeUnpickler(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
        raise RealDataError(f"cannot read {str(path)!r}: {err}. {HOW_TO_GET}") from err
    if not isinstance(raw, dict) or not raw:
        raise RealDataError(f"{str(path)!r} is not a non-empty dict of (lat, lng) → pano id")
    out: dict[tuple[float, float], str] = {}
    for key, value in raw.items():
        if not (isinstance(key, tuple | list) and len(key) == 2):
            raise RealDataError(f"{str(path)!r}: key {key!r} is not a (lat, lng) pair")
        out[(float(key[0]), float(key[1]))] = str(value)
    return out


class PanoSnapper:
    """Nearest panorama within 20 m in a local metric frame (the official relocation)."""

    def __init__(self, mapping: dict[tuple[float, float], str], origin: tuple[float, float]):
        self.origin = origin
        self.ids = list(mapping.values())
        self.xy = np.array([to_local(lat, lng, origin) for lat, lng in mapping], dtype=float)

    def __call__(self, xy: XY, radius: float = SNAP_RADIUS_M) -> tuple[str, XY] | None:
        d2 = (self.xy[:, 0] - xy[0]) ** 2 + (self.xy[:, 1] - xy[1]) ** 2
        k = int(np.argmin(d2))
        if d2[k] > radius * radius:
            return None
        return self.ids[k], (float(self.xy[k, 0]), float(self.xy[k, 1]))


_EXPR = re.compile(r"^(?:The destination )?(.+?) is on your (.+)$")


def _latlng(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, Sequence) and len(value) == 2:
        try:
            return float(value[0]), float(value[1])
        except (TypeError, ValueError):
            pass
    raise RealDataError(f"{where}: expected [lat, lng], got {value!r}")


def load_routes(path: Path, origin: tuple[float, float] | None = None) -> list[RouteSpec]:
    """Parse ``route_infos.json`` into RouteSpecs (local metres around ``origin``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RealDataError(f"cannot read {str(path)!r}: {err}. {HOW_TO_GET}") from err
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], list)):
        raise RealDataError(f"{str(path)!r} must be a JSON list [route_list, count]")
    routes: list[RouteSpec] = []
    for i, r in enumerate(data[0]):
        where = f"{Path(path).name} route {i}"
        try:
            start = _latlng(r["start_place"]["relocated_geocode"], where + " start")
            geocodes = [
                _latlng(g, f"{where} geocode {k}")
                for k, g in enumerate(r["route_results"]["geocode_list"])
            ]
            blocks = parse_milestone_info(r["milestone_info"])
        except (KeyError, TypeError) as err:
            raise RealDataError(f"{where}: missing field {err}") from err
        if origin is None:
            origin = start
        if len(blocks) != len(geocodes) or not blocks:
            raise RealDataError(
                f"{where}: {len(blocks)} milestone_info blocks but {len(geocodes)} geocodes"
            )
        milestones = []
        for k, (block, g) in enumerate(zip(blocks, geocodes, strict=True)):
            try:
                head, compass = parse_heading(block["to_next_intersection_heading"])
            except (KeyError, ValueError) as err:
                raise RealDataError(f"{where} block {k + 1}: {err}") from err
            expr = block.get("landmarks", NO_LANDMARK) or NO_LANDMARK
            match = _EXPR.match(expr)
            milestones.append(
                Milestone(
                    index=k + 1,
                    xy=to_local(g[0], g[1], origin),
                    bearing=head,
                    compass=compass,
                    expression=expr,
                    landmark=match.group(1) if match else None,
                    is_destination=k == len(blocks) - 1,
                )
            )
        routes.append(
            RouteSpec(
                route_id=f"{Path(path).parent.name}/{i:04d}",
                start=to_local(start[0], start[1], origin),
                milestones=tuple(milestones),
                init_heading=int(r.get("init_heading", 0) or 0),
                city=str(r.get("dest_place", {}).get("vicinity", "")),
                destination=str(r.get("dest_place", {}).get("name", "")),
            )
        )
    return routes


def cut_perspective(
    pano: np.ndarray,
    heading: float,
    *,
    fov: float = 90.0,
    size: int = 640,
    rotation: float = 0.0,
    pitch: float = 0.0,
) -> np.ndarray:
    """A ``size``² pinhole view facing compass ``heading`` from an equirectangular panorama."""
    pano = np.asarray(pano)
    if pano.ndim != 3 or pano.shape[2] < 3:
        raise ValueError(f"panorama must be HxWx3, got shape {pano.shape}")
    h, w = pano.shape[:2]
    f = (size / 2.0) / math.tan(math.radians(fov) / 2.0)
    coords = np.arange(size, dtype=np.float64) + 0.5 - size / 2.0
    x, y = np.meshgrid(coords / f, coords / f)
    z = np.ones_like(x)
    p = math.radians(pitch)
    y, z = y * math.cos(p) - z * math.sin(p), y * math.sin(p) + z * math.cos(p)
    lon = math.radians(heading - rotation) + np.arctan2(x, z)
    lat = -np.arctan2(y, np.hypot(x, z))
    u = ((lon / (2 * math.pi) + 0.5) % 1.0) * w - 0.5
    v = np.clip((0.5 - lat / math.pi) * h - 0.5, 0.0, h - 1.0)
    u0 = np.floor(u).astype(int)
    v0 = np.floor(v).astype(int)
    du, dv = (u - u0)[..., None], (v - v0)[..., None]
    u0 %= w
    u1 = (u0 + 1) % w
    v1 = np.minimum(v0 + 1, h - 1)
    src = pano[..., :3].astype(np.float32)
    out = (
        src[v0, u0] * (1 - du) * (1 - dv)
        + src[v0, u1] * du * (1 - dv)
        + src[v1, u0] * (1 - du) * dv
        + src[v1, u1] * du * dv
    )
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _load_dataset(
    folder: str,
) -> tuple[list[RouteSpec], PanoSnapper]:
    base = Path(folder)
    mapping = load_mapping(base / MAPPING_FILE)
    lats = [k[0] for k in mapping]
    lngs = [k[1] for k in mapping]
    origin = (float(np.mean(lats)), float(np.mean(lngs)))
    return load_routes(base / ROUTES_FILE, origin), PanoSnapper(mapping, origin)


class RealSource:
    """Routes and views from the released files; same interface as ``SyntheticSource``."""

    def __init__(self, folder: Path, split: str = "id") -> None:
        self.split = split
        self.ordered = split in ("visual_ood", "mini")
        self.folder = resolve_data_dir(Path(folder), split)
        self._routes, self._snap = _load_dataset(str(self.folder.resolve()))

    def __len__(self) -> int:
        return len(self._routes)

    def route(self, i: int) -> RouteSpec:
        """The i-th route of the file."""
        return self._routes[i]

    def style(self, i: int) -> str:
        """Real panoramas have no synthetic style."""
        return "real"

    def snapper(self, i: int) -> Callable[[XY], tuple[str, XY] | None]:
        """Nearest panorama within 20 m."""
        return self._snap

    def panorama(self, pano_id: str) -> tuple[np.ndarray, float]:
        """(image array, rotation) of a panorama; raises RealDataError naming a missing file."""
        views = self.folder / VIEWS_DIR
        jpg, meta = views / f"{pano_id}.jpg", views / f"{pano_id}.metadata.json"
        missing = [str(p) for p in (jpg, meta) if not p.is_file()]
        if missing:
            raise RealDataError(
                f"panorama {pano_id!r} is missing ({', '.join(missing)}); the data folder is "
                f"incomplete. {HOW_TO_GET}"
            )
        try:
            rotation = float(json.loads(meta.read_text(encoding="utf-8")).get("rotation", 0.0))
        except (ValueError, AttributeError) as err:
            raise RealDataError(f"cannot read rotation from {str(meta)!r}: {err}") from err
        with Image.open(jpg) as im:
            return np.asarray(im.convert("RGB")), rotation

    def render(self, i: int, entry: RailEntry, *, layout: str, size: int) -> np.ndarray:
        """Four views cut from the entry's panorama (FOV 90), composed as the 2×2 grid."""
        pano, rotation = self.panorama(entry.viewpoint)
        views = [
            cut_perspective(pano, h, size=size, rotation=rotation)
            for h in view_headings(entry.heading, layout)
        ]
        return compose_grid(views)

    def doctor(self) -> dict[str, Any]:
        """One-off data check: counts, snapping coverage and missing panoramas per route."""
        unsnapped, missing = [], set()
        for r in self._routes:
            for xy in [r.start, *(m.xy for m in r.milestones)]:
                hit = self._snap(xy)
                if hit is None:
                    unsnapped.append(r.route_id)
                elif not (self.folder / VIEWS_DIR / f"{hit[0]}.jpg").is_file():
                    missing.add(hit[0])
        return {
            "routes": len(self._routes),
            "routes_with_unsnapped_points": sorted(set(unsnapped)),
            "missing_panoramas": sorted(missing),
        }


def export_routes(
    city: City,
    routes: Iterable[RouteSpec],
    folder: Path,
    *,
    panorama: Callable[[str, XY], np.ndarray] | None = None,
) -> Path:
    """Write synthetic routes in the released format (JSON, mapping pickle, optional panoramas).

    ``panorama(pano_id, xy)`` may return an equirectangular image for each viewpoint; without it
    only ``street_views/`` is created empty. The official loader can read the result.
    """
    folder = Path(folder)
    (folder / VIEWS_DIR).mkdir(parents=True, exist_ok=True)
    records = []
    for r in routes:
        prev_head, heads, legs, prev = r.init_heading, [], [], r.start
        for m in r.milestones:
            heads.append(prev_head)
            legs.append(math.dist(prev, m.xy))
            prev_head, prev = m.bearing, m.xy
        start = list(city.latlng(r.start))
        geocodes = [list(city.latlng(m.xy)) for m in r.milestones]
        records.append(
            {
                "start_place": {"name": "start", "geocode": start, "relocated_geocode": start},
                "dest_place": {"name": r.destination, "geocode": geocodes[-1]},
                "route_results": {
                    "geocode_list": geocodes,
                    "landmark_list": [
                        {"name": m.landmark} if m.landmark else None for m in r.milestones[:-1]
                    ],
                    "distance_list": legs,
                },
                "init_heading": r.init_heading,
                "milestone_info": format_milestone_info(r.milestones, legs, heads),
            }
        )
    (folder / ROUTES_FILE).write_text(json.dumps([records, len(records)], indent=1))
    mapping = {
        tuple(city.latlng((float(x), float(y)))): vp
        for (x, y), vp in zip(city.vp_xy, city.vp_ids, strict=True)
    }
    with open(folder / MAPPING_FILE, "wb") as fh:
        pickle.dump(mapping, fh)
    if panorama is not None:
        for (x, y), vp in zip(city.vp_xy, city.vp_ids, strict=True):
            img = panorama(vp, (float(x), float(y)))
            Image.fromarray(img).save(folder / VIEWS_DIR / f"{vp}.jpg", quality=90)
            (folder / VIEWS_DIR / f"{vp}.metadata.json").write_text(json.dumps({"rotation": 0.0}))
    return folder


__all__ = [
    "RealDataError",
    "RealSource",
    "compass_word",
    "cut_perspective",
    "export_routes",
    "load_mapping",
    "load_routes",
    "resolve_data_dir",
    "to_latlng",
]

"""Speed of the V-IRL environment: city generation, route sampling, env steps, view rendering.

Also scores the reference agents (expert, wrong-vocabulary, random) so their numbers sit next to
the timings, and with ``--images DIR`` writes one view grid per city style (``virl_<style>.png``).
Every timed grid is drawn: the per-process grid cache is cleared first (an evaluation that revisits
a point pays nothing, which is not what these rows measure). ``--write-readme README.md`` puts
the tables between the README's ``<!-- bench_virl:start -->`` and ``<!-- bench_virl:end -->``.

    .venv/bin/python benchmarks/bench_virl.py [--images docs/images] [--write-readme README.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from sftvrl.envs.virl import (
    COMPASS,
    NYC_FILTER,
    RELATIVE,
    STYLES,
    CityParams,
    Look,
    VirlEnv,
    clear_grid_cache,
    generate_city,
    get_style,
    render_grid,
    sample_routes,
    summarize,
)

try:  # imported as ``benchmarks.bench_virl`` or run as a script (``make bench``)
    from benchmarks.readme_table import check_markers, write_table
except ImportError:
    from readme_table import check_markers, write_table  # type: ignore[no-redef]

NAME = "bench_virl"


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def draw(city, xy, heading, look, size: int) -> np.ndarray:
    """One grid drawn from scratch (never the cache's copy)."""
    clear_grid_cache()
    return render_grid(city, xy, heading, look, size=size)


def rail_points(env: VirlEnv, routes: int) -> list[tuple]:
    """(city, xy, heading) of every point on the expert rails of the first ``routes`` routes."""
    points = []
    for i in range(routes):
        env.reset(seed=i, options={"route_index": i})
        city = env.source.city(i)
        points += [(city, e.xy, e.heading) for e in env.rail.entries]
    return points


def draw_all(points: list[tuple], look: Look, size: int) -> None:
    """Draw the grid of every point from scratch."""
    for city, xy, heading in points:
        draw(city, xy, heading, look, size)


def episode(env: VirlEnv, policy, seed: int) -> list[dict]:
    clear_grid_cache()
    _, info = env.reset(seed=seed)
    infos = []
    while True:
        clear_grid_cache()
        *_, term, trunc, info = env.step(policy(env, info))
        infos.append(info)
        if term or trunc:
            return infos


def steps_per_second(env: VirlEnv, episodes: int) -> float:
    t = time.perf_counter()
    n = sum(len(episode(env, lambda e, _i: e.expert_response(), s)) for s in range(episodes))
    return n / (time.perf_counter() - t)


def agents() -> list[tuple[str, str, float, float]]:
    """(split, agent, per-step accuracy, success) over 48 episodes, as the paper evaluates."""
    rows = []
    rng = np.random.default_rng(0)
    for split in ("id", "rule_ood", "mini"):
        env = VirlEnv(split=split)
        vocab = COMPASS if env.absolute else RELATIVE
        actions = ["forward()", "stop()"] + [f"turn_direction({c})" for c in vocab]

        def other(e: VirlEnv, _info: dict) -> str:
            entry = e.rail.entries[e.rail_index]
            return json.dumps({"action": entry.action(not e.absolute)})

        def rand(_e: VirlEnv, _info: dict, actions=actions) -> str:
            return json.dumps({"action": actions[int(rng.integers(len(actions)))]})

        for name, policy in (
            ("expert", lambda e, _i: e.expert_response()),
            ("other action space", other),
            ("random", rand),
        ):
            stats = summarize(episode(env, policy, s) for s in range(48 if split != "mini" else 18))
            rows.append((split, name, stats.per_step_accuracy, stats.success_rate))
    return rows


def write_images(folder: Path, size: int = 320) -> list[Path]:
    """One 2×2 grid per style, all at the same turn point of the training city."""
    folder.mkdir(parents=True, exist_ok=True)
    env = VirlEnv(split="id")
    env.reset(seed=3, options={"route_index": 7})
    entry = next(e for e in env.rail.entries if e.kind == "turn" and e.landmark)
    city = env.source.city(7)
    out = []
    for name in STYLES:
        grid = render_grid(
            city, entry.xy, entry.heading, Look.draw(get_style(name), "readme"), size=size
        )
        path = folder / f"virl_{name}.png"
        Image.fromarray(grid).save(path, optimize=True)
        out.append(path)
    print(f"wrote {len(out)} images to {folder}; observation there: {entry.observation!r}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, help="write virl_<style>.png grids here")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per steps/s row")
    parser.add_argument(
        "--write-readme", type=Path, metavar="README", help="write the tables into this file"
    )
    args = parser.parse_args()
    if args.write_readme is not None:  # fail before measuring, not after
        check_markers(args.write_readme, NAME)
    start = time.perf_counter()

    rows: list[tuple[str, str]] = []
    t_city = timed(lambda: generate_city(0, CityParams.nyc_like()))
    rows.append(
        ("generate training city (NYC-like, ~135 nodes, ~770 places)", f"{t_city * 1e3:.0f} ms")
    )
    t_mini = timed(lambda: generate_city(1, CityParams.mini_like(), "m"))
    rows.append(("generate mini-benchmark city", f"{t_mini * 1e3:.1f} ms"))
    city = generate_city(0, CityParams.nyc_like())
    t_routes = timed(lambda: sample_routes(city, 1000, 0, NYC_FILTER), repeat=1)
    rows.append(("sample 1000 training routes", f"{t_routes:.2f} s ({t_routes:.2f} ms/route)"))
    env_l = VirlEnv(split="id")
    env_l.reset(seed=0)
    t_reset = timed(lambda: env_l.reset(seed=1), repeat=20)
    rows.append(("env.reset (rail + prompt)", f"{t_reset * 1e3:.2f} ms"))
    rows.append(
        ("V-IRL-L env.step, expert (steps/s)", f"{steps_per_second(env_l, args.episodes):.0f}")
    )
    for size in (112, 320, 640):
        env_v = VirlEnv(vision=True, split="id", view_size=size)
        sps = steps_per_second(env_v, max(2, args.episodes // 5))
        rows.append((f"V-IRL-VL env.step, expert, {size}-px views (steps/s)", f"{sps:.1f}"))
    points = rail_points(env_l, routes=4)
    for size in (112, 320, 640, 1200):
        look = Look.draw(get_style("metro_ny"), "bench")
        t = timed(lambda size=size, look=look: draw_all(points, look, size)) / len(points)
        rows.append(
            (f"draw a 2x2 view grid, {size}-px views ({2 * size + 5} px)", f"{t * 1e3:.1f} ms")
        )
    for name in ("hong_kong", "lagos"):
        look = Look.draw(get_style(name), "bench")
        t = timed(lambda look=look: draw_all(points, look, 320)) / len(points)
        rows.append((f"draw a view grid, 320 px, style {name}", f"{t * 1e3:.1f} ms"))

    lines = [
        f"Measured {datetime.date.today()} ({time.perf_counter() - start:.0f} s) on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}. Best of 3 "
        "wall times; a grid row is the mean over every point of 4 expert rails (about 40 grids), "
        "each drawn from scratch; steps/s rows are one pass. Numbers are for this machine only.",
        "",
        "| what | time |",
        "|---|---|",
        *(f"| {what} | {value} |" for what, value in rows),
        "",
        "| split | agent | per-step accuracy | route success |",
        "|---|---|---|---|",
        *(
            f"| {split} | {name} | {acc:.1%} | {success:.1%} |"
            for split, name, acc, success in agents()
        ),
    ]
    table = "\n".join(lines)
    print(table)
    if args.write_readme is not None:
        write_table(args.write_readme, NAME, table)
    if args.images:
        write_images(args.images)


if __name__ == "__main__":
    main()

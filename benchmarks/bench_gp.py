"""Speed of the GeneralPoints environment, side by side with a model of the official env's work.

Run ``python benchmarks/bench_gp.py`` (add ``--quick`` for a smoke run of 10-15 s, and
``--write-readme README.md`` to put the table between the README's ``<!-- bench_gp:start -->`` and
``<!-- bench_gp:end -->`` markers). ``make bench`` does the latter.

The "official model" column is ``official_gp_model.py``: a model of the official environment's
work, re-implemented from its specification -- not the official code, which we neither run nor
copy. Every number is a median over repeats (``time.perf_counter``, garbage collector off while a
repeat runs, warmed up first) on the machine that ran the script; nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from sftvrl.envs.general_points import (
    GeneralPointsEnv,
    Hand,
    Rules,
    deal,
    evaluate_exact,
    expert_formula,
    hand_to_array,
    number_multisets,
    solvability_table,
    verify,
)
from sftvrl.envs.general_points import solver as gp_solver
from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN, FormulaError
from sftvrl.envs.general_points.rules import RANKS, SUITS
from sftvrl.prompts.general_points import response_text

try:  # imported as ``benchmarks.bench_gp`` (tests) or run as a script (``make bench``)
    from benchmarks import official_gp_model as official
except ImportError:
    import official_gp_model as official  # type: ignore[no-redef]

try:  # imported as ``benchmarks.bench_gp`` (tests) or run as a script (``make bench``)
    from benchmarks.readme_table import check_markers, write_table
except ImportError:
    from readme_table import check_markers, write_table  # type: ignore[no-redef]

NAME = "bench_gp"
START_MARKER = f"<!-- {NAME}:start -->"
END_MARKER = f"<!-- {NAME}:end -->"
RESET_GOAL = 1000.0
"""Goal: our env reset at least this many times faster than the official env's reset."""
VERIFY_GOAL = 20.0
"""Goal: our verification at least this many times faster than the official env's step."""
MIX = "mix, a third of each"
IMAGE_WIDTH = 448
"""GeneralPointsEnv's default GP-VL image width (the image is 448x168)."""


@dataclass(frozen=True)
class Settings:
    """How hard to measure: repeats per row and how much work each repeat does."""

    label: str
    repeat: int  # repeats of the fast rows (median taken)
    min_time: float  # seconds one repeat of a fast row should last at least
    table_repeat: int  # cold builds of the solvability table
    official_hands: int  # hands dealt per repeat of the official model's reset
    official_repeat: int
    verify_hands: int  # hands in the verification mix
    cold_samples: int  # fresh multisets for the cold first-verification row
    env_answers: int  # expert answers precomputed for the reset+step rows (caps a repeat)


FULL = Settings("full", 9, 0.12, 5, 6, 5, 12, 15, 5000)
QUICK = Settings("quick", 3, 0.02, 2, 2, 3, 4, 4, 500)


@dataclass(frozen=True)
class Row:
    """One line of the table: seconds per operation for us and for the official model."""

    name: str
    ours: float | None
    official: float | None = None
    official_note: str = ""


# -- timing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _time(run: Callable[[int], object], number: int) -> float:
    with _gc_off():
        start = time.perf_counter()
        run(number)
        return time.perf_counter() - start


def measure(
    run: Callable[[int], object],
    *,
    repeat: int,
    min_time: float = 0.0,
    number: int | None = None,
    max_number: int | None = None,
    setup: Callable[[], object] | None = None,
    warmup: bool = True,
) -> float:
    """Median seconds per operation of ``run(n)``, which performs ``n`` operations.

    ``setup`` runs before every repeat, untimed. Without a fixed ``number`` the count doubles
    (warming up as it goes) until one repeat lasts ``min_time`` or reaches ``max_number``.
    """
    if number is None:
        if setup:
            setup()
        run(1)  # the first call may fill caches; never let it set the count
        number = 1
        while True:
            if setup:
                setup()
            elapsed = _time(run, number)
            if elapsed >= min_time or (max_number is not None and number >= max_number):
                break
            grow = min_time / max(elapsed, 1e-9) * 1.2
            number = max(number * 2, int(number * min(grow, 100)))
            if max_number is not None:
                number = min(number, max_number)
    elif warmup:
        if setup:
            setup()
        run(number)
    per_op = []
    for _ in range(repeat):
        if setup:
            setup()
        per_op.append(_time(run, number) / number)
    return statistics.median(per_op)


def _calls(fn: Callable[..., object], *args: object) -> Callable[[int], None]:
    """``run(n)`` calling ``fn(*args)`` n times; results are dropped at once, never accumulated
    (keeping thousands of images alive would time the memory allocator, not the code)."""

    def run(n: int) -> None:
        for _ in range(n):
            fn(*args)

    return run


def _cycle(items: Sequence, n: int) -> Iterator:
    return itertools.islice(itertools.cycle(items), n)


def _progress(message: str) -> None:
    print(f"[bench_gp] {message}", file=sys.stderr, flush=True)


# -- inputs ------------------------------------------------------------------------------------


def wrong_formula(formula: str, target: int) -> str:
    """The expert formula with one operator changed (last first) so it no longer makes target.

    A near miss: it shares a long prefix with the solver's strings, which makes the official
    verifier's prefix walk do real work.
    """
    tokens = TOKEN_PATTERN.findall(formula)
    for index in reversed(range(len(tokens))):
        if tokens[index] not in "+-*/":
            continue
        for op in "+-*/":
            candidate = [*tokens[:index], op, *tokens[index + 1 :]]
            try:
                if evaluate_exact(candidate) != target:
                    return "".join(candidate)
            except FormulaError:
                continue
    raise ValueError(f"cannot make a wrong variant of {formula!r}")


def malformed_text(hand: Hand, formula: str, kind: int) -> str:
    """Three kinds of broken answers: prose with no formula field, illegal text, bad grammar."""
    if kind == 0:
        return f"The cards are {', '.join(hand.ranks)}. I think the answer is {formula}, so 24."
    if kind == 1:
        return response_text(hand, "three times ten plus two minus eight")
    doubled = TOKEN_PATTERN.sub(
        lambda m: m.group() * 2 if m.group() in "+-*/" else m.group(), formula
    )
    return response_text(hand, doubled)


@dataclass
class VerifyCase:
    """One hand with its three kinds of answers and the official model's state for it."""

    hand: Hand
    expert: str
    wrong: str
    malformed: str
    model: official.OfficialGeneralPointsModel


def verify_cases(count: int, vision: bool, card_files: official.CardFiles) -> list[VerifyCase]:
    rules = Rules.id(vision=vision)
    rng = random.Random(1)
    cases = []
    for i in range(count):
        hand = deal(rules, rng)
        formula = expert_formula(hand)
        model = official.OfficialGeneralPointsModel(card_files, language_only=not vision)
        model.cards = list(hand.cards)
        model.plain_cards = list(hand.ranks)
        model.numbers = list(hand.numbers)
        model.solutions = official.rosetta_solutions(model.numbers, rules.target, random.Random(i))
        cases.append(
            VerifyCase(
                hand,
                response_text(hand, formula),
                response_text(hand, wrong_formula(formula, rules.target)),
                malformed_text(hand, formula, i % 3),
                model,
            )
        )
    return cases


def check_same_rewards(items: list[tuple[str, VerifyCase]], rules: Rules) -> None:
    """The model must do the official work: its rewards must equal our paper-mode verifier's."""
    for text, case in items:
        case.model.remaining_step = 5
        theirs = case.model.step(text)[1]
        ours = verify(text, case.hand, rules, vision=not case.model.language_only, mode="paper")
        if theirs != ours.reward:
            raise RuntimeError(
                f"official model and paper-mode verifier disagree on {text!r} for "
                f"{case.hand}: {theirs} vs {ours.reward} ({ours.message})"
            )


def _hand_of(numbers: Sequence[int], rules: Rules) -> Hand:
    return Hand.from_cards(["S" + RANKS[n - 1] for n in numbers], rules)


def warm_card_images() -> None:
    """Draw every GP-VL card once at the env's size, so no timed render draws a new card."""
    codes = [suit + rank for suit in SUITS["black"] for rank in RANKS]
    for i in range(0, len(codes), 4):
        hand_to_array(codes[i : i + 4], width=IMAGE_WIDTH)


def _clear_solver_caches(*, table: bool) -> None:
    for cached in (gp_solver._solutions_sorted, gp_solver.solution_prefixes):
        cached.cache_clear()
    if table:
        for cached in (solvability_table, gp_solver._solvable_sorted, gp_solver._reachable):
            cached.cache_clear()


# -- the benchmarks ----------------------------------------------------------------------------


def run_benchmarks(settings: Settings) -> list[Row]:
    s = settings
    fast = {"repeat": s.repeat, "min_time": s.min_time}
    rows: list[Row] = []
    rules = Rules.id()

    _progress("solvability table (cold)")
    table_time = measure(
        _calls(solvability_table, 24, 4, 13),
        number=1,
        repeat=s.table_repeat,
        setup=lambda: _clear_solver_caches(table=True),
        warmup=s is FULL,
    )
    rows.append(Row("Solvability table, cold build (all 1,820 multisets)", table_time, None))

    _progress("dealing")
    rng = random.Random(0)
    deal_time = measure(_calls(deal, rules, rng), **fast)
    deck_rules = Rules.id(with_replacement=False)
    deck_time = measure(_calls(deal, deck_rules, rng), **fast)

    card_files = official.CardFiles()
    try:
        _progress("official model: deal + solver, render, reset")
        model = official.OfficialGeneralPointsModel(card_files, seed=0)
        official_hands: list[list[str]] = []
        model.rng.seed(0)
        for _ in range(s.official_hands):  # warm-up; draws the PNGs these hands need
            model.deal()
            official_hands.append(list(model.cards))
            for code in model.cards:
                card_files.path(code)
        drawn = card_files.created

        def deal_official(n: int) -> None:
            for _ in range(n):
                model.deal()

        official_deal = measure(
            deal_official,
            number=s.official_hands,
            repeat=s.official_repeat,
            setup=lambda: model.rng.seed(0),
            warmup=False,
        )
        rows.append(
            Row(
                "Deal a solvable hand (GP-L ID rule, with replacement)",
                deal_time,
                official_deal,
                "draw + full solver, re-deal until solvable",
            )
        )
        rows.append(Row("Deal a solvable hand (without replacement)", deck_time, None))

        def render_official(n: int) -> None:
            for cards in _cycle(official_hands, n):
                model.cards = cards
                model.render()

        warm_card_images()
        ours_hands = [deal(Rules.id(vision=True), random.Random(i)).cards for i in range(16)]

        def render_ours_run(n: int) -> None:
            for cards in _cycle(ours_hands, n):
                hand_to_array(cards, width=IMAGE_WIDTH)

        render_ours = measure(render_ours_run, **fast)
        render_theirs = measure(render_official, **fast)
        rows.append(
            Row(
                "Render the table image (ours 448x168 from cached cards)",
                render_ours,
                render_theirs,
                "1200x1200, 4 PNGs opened from disk",
            )
        )

        official_reset = measure(
            _calls(model.reset),
            number=s.official_hands,
            repeat=s.official_repeat,
            setup=lambda: model.rng.seed(0),
            warmup=False,
        )
        if card_files.created != drawn:
            raise RuntimeError("a timed official reset drew a card PNG; the timing is not clean")

        _progress("verification (warm caches)")
        cases = verify_cases(s.verify_hands, False, card_files)
        kinds = {
            "expert answer, correct": [(c.expert, c) for c in cases],
            "near miss, wrong value": [(c.wrong, c) for c in cases],
            "malformed text": [(c.malformed, c) for c in cases],
        }
        kinds[MIX] = [item for triple in zip(*kinds.values(), strict=True) for item in triple]
        check_same_rewards(kinds[MIX], rules)

        def ours_verify(items: list, mode: str) -> Callable[[int], None]:
            def run(n: int) -> None:
                for text, case in _cycle(items, n):
                    verify(text, case.hand, rules, mode=mode)

            return run

        def official_step(items: list) -> Callable[[int], None]:
            def run(n: int) -> None:
                for text, case in _cycle(items, n):
                    case.model.remaining_step = 5
                    case.model.step(text)

            return run

        official_steps = {
            kind: measure(official_step(items), **fast) for kind, items in kinds.items()
        }
        for mode in ("exact", "paper"):
            for kind, items in kinds.items():
                ours = measure(ours_verify(items, mode), **fast)
                rows.append(
                    Row(
                        f"Verify ({mode} mode): {kind}",
                        ours,
                        official_steps[kind],
                        "step(), same text",
                    )
                )

        _progress("verification (cold: first answer for a new multiset)")
        pool = number_multisets(rules)
        samples = random.Random(2).sample(pool, s.cold_samples)
        cold_cases = []
        for numbers in samples:
            hand = _hand_of(numbers, rules)
            cold_cases.append((hand, response_text(hand, wrong_formula(expert_formula(hand), 24))))
        solver_official = statistics.median(
            _time(lambda _n, nums=nums: official.rosetta_solutions(list(nums)), 1)
            for nums in samples
        )
        for mode in ("exact", "paper"):
            cold = []
            for hand, text in cold_cases:
                _clear_solver_caches(table=False)
                cold.append(
                    _time(lambda _n, h=hand, t=text, m=mode: verify(t, h, rules, mode=m), 1)
                )
            rows.append(
                Row(
                    f"Verify ({mode} mode): first wrong answer for a new multiset (cold)",
                    statistics.median(cold),
                    solver_official,
                    "its solver on the same multisets (paid at every reset)",
                )
            )

        _progress("environments")
        for vision, name in ((False, "GP-L"), (True, "GP-VL")):
            env = GeneralPointsEnv(vision=vision, split="id")
            replay = GeneralPointsEnv(vision=vision, split="id")
            replay.reset(seed=0)
            answers = []
            for _ in range(s.env_answers):
                replay.reset()
                answers.append(replay.expert_response())
            env.reset(seed=0)
            for answer in answers[:20]:  # the replay deals the same hands: every answer is right
                env.reset()
                if env.step(answer)[1] != 5.0:
                    raise RuntimeError(f"{name}: the replayed expert answer was not correct")

            def reset_only(n: int, env: GeneralPointsEnv = env) -> None:
                for _ in range(n):
                    env.reset()

            def reset_step(n: int, env: GeneralPointsEnv = env, answers: list = answers) -> None:
                for answer in answers[:n]:
                    env.reset()
                    env.step(answer)

            ours_reset = measure(reset_only, **fast)
            ours_reset_step = measure(
                reset_step, max_number=len(answers), setup=lambda env=env: env.reset(seed=0), **fast
            )
            if vision:  # the official step checks the recognised cards first
                step_cases = verify_cases(max(2, s.verify_hands // 2), True, card_files)
                check_same_rewards([(c.expert, c) for c in step_cases], Rules.id(vision=True))
                step_official = measure(official_step([(c.expert, c) for c in step_cases]), **fast)
            else:
                step_official = official_steps["expert answer, correct"]
            note = "same work in GP-L and GP-VL: both paint the canvas"
            rows.append(Row(f"Env reset ({name})", ours_reset, official_reset, note))
            rows.append(
                Row(
                    f"Env reset + step with the expert answer ({name})",
                    ours_reset_step,
                    official_reset + step_official,
                    "reset + step medians, summed",
                )
            )
    finally:
        card_files.cleanup()
    return rows


# -- output ------------------------------------------------------------------------------------


def _sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, with thousands separators."""
    if value >= 10 ** (digits - 1):
        return f"{round(value, digits - len(str(int(value)))):,.0f}"
    return f"{value:.{digits}g}"


def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{_sig(seconds / scale)} {unit}"
    return f"{_sig(seconds / 1e-9)} ns"


def format_rate(seconds: float) -> str:
    return f"{_sig(1.0 / seconds)}/s"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {os.cpu_count()} CPUs ({usable} usable); Python {platform.python_version()} "
        f"on {platform.system()} {platform.release()}; numpy {np.__version__}, Pillow "
        f"{PIL.__version__}"
    )


def _ratio(row: Row) -> float | None:
    if row.ours is None or row.official is None:
        return None
    return row.official / row.ours


def _goal(rows: list[Row], names: dict[str, str], goal: float) -> str:
    """``label: ratio, met / not met`` for the rows named, joined by semicolons."""
    by_name = {row.name: row for row in rows}
    parts = []
    for label, name in names.items():
        ratio = _ratio(by_name[name])
        if ratio is None:
            continue
        met = "met" if ratio >= goal else f"**not met** ({goal / ratio:,.0f}x short)"
        parts.append(f"{label} {_sig(ratio)}x, {met}")
    return "; ".join(parts)


def render_table(rows: list[Row], settings: Settings, elapsed: float) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {today} ({settings.label} run, {elapsed:.0f} s) on {machine()}. "
        f"Medians of {settings.repeat} repeats ({settings.official_repeat} for the official "
        "model's deal and reset, each over the same "
        f"{settings.official_hands} seeded hands). Numbers are for this machine only"
        + (" and rough: a quick run repeats little." if settings is QUICK else "."),
        "",
        "The official model is a model of the official environment's work, re-implemented from "
        "its specification (`benchmarks/official_gp_model.py`), not the official code.",
        "",
        "| Benchmark | sftvrl, per op | sftvrl, ops/s | official model, per op "
        "| official model, ops/s | speed-up | official model does |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = _ratio(row)
        cells = [
            row.name,
            format_time(row.ours) if row.ours is not None else "—",
            format_rate(row.ours) if row.ours is not None else "—",
            format_time(row.official) if row.official is not None else "—",
            format_rate(row.official) if row.official is not None else "—",
            f"{_sig(ratio)}x" if ratio is not None else "—",
            row.official_note or "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    resets = {name: f"Env reset ({name})" for name in ("GP-L", "GP-VL")}
    mixes = {f"{mode} mode:": f"Verify ({mode} mode): {MIX}" for mode in ("exact", "paper")}
    lines += [
        "",
        f"- Goal, env reset at least {RESET_GOAL:,.0f}x faster than the official reset: "
        f"{_goal(rows, resets, RESET_GOAL)}.",
        f"- Goal, verification ({MIX}) at least {VERIFY_GOAL:,.0f}x faster than the official "
        f"step: {_goal(rows, mixes, VERIFY_GOAL)}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument(
        "--write-readme",
        type=Path,
        metavar="README",
        help="write the table between the bench_gp markers of this file",
    )
    args = parser.parse_args(argv)
    if args.write_readme is not None:  # fail before measuring, not after
        check_markers(args.write_readme, NAME)
    settings = QUICK if args.quick else FULL
    start = time.perf_counter()
    rows = run_benchmarks(settings)
    table = render_table(rows, settings, time.perf_counter() - start)
    print(table)
    if args.write_readme is not None:
        write_table(args.write_readme, NAME, table)
        _progress(f"table written to {args.write_readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rollout speed: our batched multi-turn rollout against one-sample-at-a-time generation.

Run ``python benchmarks/bench_rollout.py`` (``--quick`` for a smoke run under 30 s,
``--write-readme README.md`` to put the table between the README's ``<!-- bench_rollout:start -->``
and ``<!-- bench_rollout:end -->`` markers, ``--device cuda`` on a GPU).

Every row plays the same GeneralPoints episodes (episode ``i`` is dealt with seed ``42 + i``;
GP-L for tiny-text, GP-VL for tiny-vlm; ``verify_iter=5``) with the same model, the same
``max_new_tokens`` and the same sampling (temperature 1, top-p 1, and ``generate()``'s default
top-k of 50, which the cached engine applies too), in one process:

- **one at a time (official)**: what the official code does -- for each episode, for each turn,
  one ``model.generate`` call with batch 1 on the whole conversation so far;
- **batched generate()**: our rollout (a pool of episode slots refilled as episodes finish), each
  round answered by one Hugging Face ``generate`` call (``SamplingConfig(engine="generate")``,
  what ``PolicyResponder`` did before the cached engine); it plays one pool's worth of episodes,
  once, as it is slow;
- **sftvrl (cached engine)**: the same rollout answered by our KV-cached decoding loop, which
  reuses each episode's keys/values from its previous turn (``engine="cached"``).

The one-at-a-time row plays the first episodes of the same list (it is slow, and its cost per
episode does not depend on how many it plays). A random-init tiny model rarely emits its end
token, so nearly every answer is ``max_new_tokens`` long, no answer is right, and every episode
uses all 5 turns; the table reports turns per episode and tokens per turn so that rows are
compared on the same work. Times are medians over repeats (rows interleaved within a repeat, so
a busy machine slows them alike), after a warm-up. Peak memory is the growth of the process's
peak resident set during a run (Linux ``/proc/self/clear_refs``; ``getrusage`` as a fallback,
which only sees new highs), or ``torch.cuda.max_memory_allocated`` on CUDA.

Every row runs with one torch thread by default (``--threads``): on a shared 2-core machine a
second intra-op thread waits for a busy core and makes every row several times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import transformers

from sftvrl.chat import turn
from sftvrl.envs.general_points import GeneralPointsEnv
from sftvrl.models import ModelConfig, Policy, load_policy, resolve_device
from sftvrl.train.generation import PolicyResponder, SamplingConfig
from sftvrl.train.rollout import Episode, rollout

try:  # imported as ``benchmarks.bench_rollout`` (tests) or run as a script (``make bench``)
    from benchmarks.readme_table import check_markers, write_table
except ImportError:
    from readme_table import check_markers, write_table  # type: ignore[no-redef]

NAME = "bench_rollout"
START_MARKER = f"<!-- {NAME}:start -->"
END_MARKER = f"<!-- {NAME}:end -->"
GOAL = 20.0
"""Goal: our rollout at least this many times the one-at-a-time throughput on the tiny model."""
SEED = 42
VERIFY_ITER = 5
OFFICIAL = "one at a time (official)"
GENERATE = "batched generate()"
CACHED = "sftvrl (cached engine)"


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    label: str
    episodes: int  # episodes of the batched rows
    official_episodes: int  # the first episodes of the same list, one at a time
    generate_episodes: int  # episodes of the batched generate() row
    pool: int  # episode slots of the batched rollout
    max_new_tokens: int
    repeat: int  # repeats of the one-at-a-time and cached rows
    generate_repeat: int  # repeats of the batched generate() row (slow)


FULL = Settings("full", 256, 10, 128, 128, 64, 3, 1)
QUICK = Settings("quick", 16, 1, 16, 16, 8, 1, 1)


@dataclass
class Result:
    """One timed run of one row."""

    episodes: int
    turns: int
    tokens: int
    seconds: float
    cpu_seconds: float
    peak_bytes: int | None
    prompt_tokens: int = 0
    reused_tokens: int = 0


@dataclass
class Row:
    name: str
    pool: int
    results: list[Result] = field(default_factory=list)

    def median(self, value: Callable[[Result], float]) -> float:
        return statistics.median(value(result) for result in self.results)

    @property
    def episodes(self) -> int:
        return self.results[0].episodes

    @property
    def episodes_per_s(self) -> float:
        return self.median(lambda r: r.episodes / r.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.median(lambda r: r.tokens / r.seconds)

    @property
    def episodes_per_cpu_s(self) -> float:
        return self.median(lambda r: r.episodes / r.cpu_seconds)

    @property
    def turns_per_episode(self) -> float:
        return self.results[0].turns / self.results[0].episodes

    @property
    def tokens_per_turn(self) -> float:
        return self.results[0].tokens / self.results[0].turns

    @property
    def peak_bytes(self) -> int | None:
        peaks = [r.peak_bytes for r in self.results if r.peak_bytes is not None]
        return max(peaks) if peaks else None


def _progress(message: str) -> None:
    print(f"[bench_rollout] {message}", file=sys.stderr, flush=True)


# -- the rows ------------------------------------------------------------------------------------


def make_env(vision: bool) -> GeneralPointsEnv:
    return GeneralPointsEnv(vision=vision, split="id", verify_iter=VERIFY_ITER)


def official_rollout(
    policy: Policy, n_episodes: int, max_new_tokens: int, *, seed: int = SEED
) -> tuple[int, int]:
    """The official way: every turn of every episode is its own batch-1 ``generate`` call.

    Returns (turns played, tokens generated).
    """
    tokenizer = policy.tokenizer
    env = make_env(policy.vision)
    torch.manual_seed(seed)
    turns = tokens = 0
    for index in range(n_episodes):
        observation, info = env.reset(seed=seed + index)
        image = observation if policy.vision else None
        conversation = [turn("user", info["prompt"], vision=policy.vision, image=policy.vision)]
        while True:
            inputs = policy.chat_inputs([conversation], [image] if policy.vision else None)
            with torch.no_grad():
                output = policy.model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=1.0,
                    top_p=1.0,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            completion = output[0, inputs["input_ids"].shape[1] :]
            text = tokenizer.decode(completion, skip_special_tokens=True)
            turns += 1
            tokens += len(completion)
            _, _, terminated, truncated, info = env.step(text)
            if terminated or truncated:
                break
            conversation += [
                turn("assistant", text, vision=policy.vision),
                turn("user", info["prompt"], vision=policy.vision),
            ]
    env.close()
    return turns, tokens


def batched_rollout(
    policy: Policy, engine: str, n_episodes: int, pool: int, max_new_tokens: int
) -> tuple[list[Episode], PolicyResponder]:
    """Our rollout of the same episodes, answered by ``engine``."""
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, engine=engine)
    responder = PolicyResponder(policy, sampling, seed=SEED)
    episodes = rollout(
        lambda: make_env(policy.vision), responder, n_episodes, batch_size=pool, seed=SEED
    )
    return episodes, responder


# -- measuring -----------------------------------------------------------------------------------


class PeakMemory:
    """Growth of the peak memory while the block runs: RSS on CPU, allocated bytes on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._reset = _reset_peak_rss()
            self._start = _rss_now() if self._reset else _maxrss()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._start is not None:
            peak = _peak_rss() if self._reset else _maxrss()
            self.bytes = max(0, peak - self._start) if peak is not None else None


def _status(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    return None


def _rss_now() -> int | None:
    return _status("VmRSS")


def _peak_rss() -> int | None:
    return _status("VmHWM")


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its peak RSS to the current RSS (``clear_refs`` value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _peak_rss() is not None


def _maxrss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_official(policy: Policy, n: int, max_new_tokens: int) -> Result:
    with PeakMemory(policy.device) as memory:
        start, cpu = time.perf_counter(), time.process_time()
        turns, tokens = official_rollout(policy, n, max_new_tokens)
        _synchronize(policy.device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Result(n, turns, tokens, seconds, cpu, memory.bytes)


def time_batched(policy: Policy, engine: str, n: int, pool: int, max_new_tokens: int) -> Result:
    with PeakMemory(policy.device) as memory:
        start, cpu = time.perf_counter(), time.process_time()
        episodes, responder = batched_rollout(policy, engine, n, pool, max_new_tokens)
        _synchronize(policy.device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    turns = sum(len(episode.turns) for episode in episodes)
    return Result(
        n,
        turns,
        responder.generated_tokens,
        seconds,
        cpu,
        memory.bytes,
        responder.prompt_tokens,
        responder.reused_tokens,
    )


def warm_up(policy: Policy, pool: int) -> None:
    """First calls pay one-time costs (kernel selection, lazy imports); keep them out of timings."""
    official_rollout(policy, 1, 4)
    for engine in ("generate", "cached"):
        batched_rollout(policy, engine, min(pool, 8), min(pool, 8), 4)


def bench_model(name: str, settings: Settings, device: str) -> list[Row]:
    """The three rows for one tiny model."""
    policy = load_policy(ModelConfig(name_or_path=name, device=device, seed=0))
    _progress(f"{name}: warming up on {policy.device}")
    warm_up(policy, settings.pool)
    official = Row(OFFICIAL, 1)
    generate = Row(GENERATE, settings.pool)
    cached = Row(CACHED, settings.pool)
    for repeat in range(settings.repeat):
        tag = f"{name} repeat {repeat + 1}/{settings.repeat}"
        _progress(f"{tag}: {settings.official_episodes} episodes one at a time")
        official.results.append(
            time_official(policy, settings.official_episodes, settings.max_new_tokens)
        )
        if repeat < settings.generate_repeat:
            _progress(f"{tag}: {settings.generate_episodes} episodes, batched generate()")
            generate.results.append(
                time_batched(
                    policy,
                    "generate",
                    settings.generate_episodes,
                    settings.pool,
                    settings.max_new_tokens,
                )
            )
        _progress(f"{tag}: {settings.episodes} episodes, cached engine")
        cached.results.append(
            time_batched(
                policy, "cached", settings.episodes, settings.pool, settings.max_new_tokens
            )
        )
    return [official, generate, cached]


# -- the table -----------------------------------------------------------------------------------


def _sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, with thousands separators."""
    if value >= 10 ** (digits - 1):
        return f"{round(value, digits - len(str(int(value)))):,.0f}"
    return f"{value:.{digits}g}"


def format_bytes(count: int | None) -> str:
    if count is None:
        return "—"
    if count < 1 << 20:
        return "< 1 MiB"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{_sig(count / scale)} {unit}"
    return f"{count} B"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        cpu = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        where = f"{cpu}, {os.cpu_count()} CPUs ({usable} usable), {torch.get_num_threads()} torch threads"
    return (
        f"{where}; Python {platform.python_version()} on {platform.system()}; torch "
        f"{torch.__version__}, transformers {transformers.__version__}"
    )


def speedup(row: Row, baseline: Row) -> tuple[float, float, float]:
    """Ratios of episodes/s, of generated tokens/s and of episodes per CPU second."""
    return (
        row.episodes_per_s / baseline.episodes_per_s,
        row.tokens_per_s / baseline.tokens_per_s,
        row.episodes_per_cpu_s / baseline.episodes_per_cpu_s,
    )


def render_model(name: str, rows: list[Row]) -> list[str]:
    baseline = rows[0]
    task = "GP-VL" if name == "tiny-vlm" else "GP-L"
    lines = [
        f"**{name}** ({task}, ID split)",
        "",
        "| Rollout | episodes | pool | repeats | episodes/s | generated tokens/s | turns/episode "
        "| tokens/turn | peak memory | speed-up, episodes/s | speed-up, tokens/s "
        "| speed-up, CPU time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        by_episodes, by_tokens, by_cpu = speedup(row, baseline)
        cells = [
            row.name,
            str(row.episodes),
            str(row.pool),
            str(len(row.results)),
            _sig(row.episodes_per_s),
            _sig(row.tokens_per_s),
            f"{row.turns_per_episode:.2f}",
            f"{row.tokens_per_turn:.1f}",
            format_bytes(row.peak_bytes),
            f"{_sig(by_episodes)}x",
            f"{_sig(by_tokens)}x",
            f"{_sig(by_cpu)}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    cached = rows[-1].results[0]
    if cached.prompt_tokens:
        lines += [
            "",
            f"The cached engine took the keys/values of {100 * cached.reused_tokens / cached.prompt_tokens:.0f}% "
            f"of its {cached.prompt_tokens:,} prompt tokens from the previous round instead of "
            "recomputing them (with a random model an answer rarely re-tokenises to the tokens "
            "that were sampled, so mostly the earlier prompt is reused, not the answer).",
        ]
    return lines


def render_table(
    results: dict[str, list[Row]], settings: Settings, device: torch.device, elapsed: float
) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {today} ({settings.label} run, {elapsed:.0f} s) on {machine(device)}. "
        f"The same episodes (seed {SEED} + episode index, verify_iter={VERIFY_ITER}) with "
        f"max_new_tokens={settings.max_new_tokens}, temperature 1, top-p 1, top-k 50 "
        "(generate()'s default); the one-at-a-time "
        f"row plays the first {settings.official_episodes} of them. Rates are medians of the "
        "repeats, in wall-clock time; the CPU-time column divides process CPU seconds instead, "
        "which other processes on a shared machine disturb less. Random-init models: answers "
        "run to max_new_tokens and every episode uses all its turns. Numbers are for this "
        "machine only"
        + (
            " and rough: a quick run measures little."
            if settings.label.startswith("quick")
            else "."
        ),
        "",
    ]
    goals = []
    for name, rows in results.items():
        lines += [*render_model(name, rows), ""]
        by_episodes, by_tokens, by_cpu = speedup(rows[-1], rows[0])
        ratio = min(by_episodes, by_tokens)
        met = "met" if ratio >= GOAL else f"**not met** ({GOAL / ratio:.1f}x short)"
        goals.append(
            f"{name} {_sig(by_episodes)}x episodes/s, {_sig(by_tokens)}x tokens/s "
            f"({_sig(by_cpu)}x in CPU time), {met}"
        )
    lines.append(
        f"- Goal, at least {GOAL:.0f}x the one-at-a-time throughput: " + "; ".join(goals) + "."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run under 30 s")
    parser.add_argument(
        "--write-readme",
        type=Path,
        metavar="README",
        help="write the table between the bench_rollout markers of this file",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]"
    )
    parser.add_argument(
        "--models",
        default="tiny-text,tiny-vlm",
        help="comma-separated tiny models (tiny-text, tiny-vlm)",
    )
    parser.add_argument("--pool", type=int, help="episode slots of the batched rows")
    parser.add_argument("--episodes", type=int, help="episodes of the cached-engine row")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer at most")
    parser.add_argument("--repeat", type=int, help="repeats (the median is reported)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for every row (default 1: steadier on a shared 2-core "
        "machine; 0 keeps torch's default)",
    )
    args = parser.parse_args(argv)
    if args.write_readme is not None:  # fail before measuring, not after
        check_markers(args.write_readme, NAME)
    settings = QUICK if args.quick else FULL
    changes: dict[str, int] = {}
    if args.pool is not None:  # the batched generate() row plays one pool's worth
        changes |= {"pool": args.pool, "generate_episodes": args.pool}
    if args.episodes is not None:
        changes["episodes"] = args.episodes
    if args.max_new_tokens is not None:
        changes["max_new_tokens"] = args.max_new_tokens
    if args.repeat is not None:
        changes["repeat"] = args.repeat
    if changes:
        settings = replace(settings, label=f"{settings.label}, adjusted", **changes)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in ("tiny-text", "tiny-vlm")]
    if unknown:
        raise SystemExit(f"bench_rollout: unknown model(s) {unknown}; use tiny-text, tiny-vlm")
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        start = time.perf_counter()
        results = {name: bench_model(name, settings, str(device)) for name in models}
        table = render_table(results, settings, device, time.perf_counter() - start)
    finally:  # called from a test, leave the process as it was
        torch.set_num_threads(threads)
    print(table)
    if args.write_readme is not None:
        write_table(args.write_readme, NAME, table)
        _progress(f"table written to {args.write_readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

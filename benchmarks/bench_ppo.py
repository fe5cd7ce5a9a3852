"""Training throughput: one update of our multi-turn PPO against one step of TRL's GRPOTrainer.

Run ``python benchmarks/bench_ppo.py`` (``--quick`` for a smoke run under a minute,
``--write-readme README.md`` to put the table between the README's ``<!-- bench_ppo:start -->``
and ``<!-- bench_ppo:end -->`` markers). ``make bench`` does the latter.

Both trainers train the same model (by default the shipped tiny-tier foundation ``tiny-text-gp``,
the model every tiny GP-L run starts from; ``--model tiny-text`` for the random-init one) on tiny
GP-L (ID split, compact prompt, exact verification) with the same rollouts per step:

- **sftvrl PPO**: ``PPOTrainer`` with the tiny-tier settings of ``sftvrl/configs/tiny/gp_l_rl.yaml``
  (64 episodes per update, 5 verified tries, 48 new tokens per answer, mini-batches of 16,
  gradient accumulation 4, 4 PPO epochs, value head 128-64). One update is ``collect()`` (batched
  multi-turn rollouts, our KV-cached engine), ``prepare()`` (old log-probs, values, GAE) and
  ``optimise()``, as ``train_ppo`` runs it (without its logging, evaluation and checkpoints).
- **TRL GRPOTrainer**: our GRPO arm (``train_grpo``: TRL's ``GRPOTrainer`` with our
  ``rollout_func``), on the same episodes per step: 8 prompts x 8 generations = 64 episodes, each
  a full multi-turn episode with the verifier's feedback between the tries (the same environment,
  ``verify_iter``, ``max_new_tokens`` and sampling: temperature 1, top-p 1, and the top-k of 50
  that PPO's rollout engine takes from the model's generation config), trained as micro-batches
  of 16 episodes x 4 accumulation steps (one generation batch per optimizer step, so no extra
  old-log-prob pass), no gradient checkpointing (as ``gp_l_grpo.yaml``). One step is TRL's
  ``on_step_begin`` to ``on_step_end``: the rollouts, the reward, and TRL's loss passes.

Why the GRPO arm and not plain ``GRPOTrainer`` with our verifier as a single-turn reward: the
issue asks for *the same number of generations per step*, and a generation of the paper's
protocol is a whole episode (answer, feedback, revised answer, ...). Single-turn prompts would
generate a fifth of the tokens per episode with short contexts and no feedback turns, i.e. time
another task. With the arm both trainers play identical episodes; what differs is the
algorithm: PPO scores every answer with a value head and takes 4 passes over the buffer (the
turns of an episode in one row when their tokens chain, ``PPOConfig.pack_turns``; otherwise every
answer as its own sequence, the chat so far re-read at every turn); GRPO trains each episode once
as one sequence with the feedback tokens masked out.

Columns: *generated tokens* are the sampled answer tokens (``PPOTrainer``: the answers' ids;
GRPO: the ``env_mask`` ones), *tokens/s* are those per second of a whole update, *rollout* is
``collect()`` / the arm's ``rollout_func``, *training* the rest, *GFLOPs* come from the project's
``ComputeTracker`` (the paper's 2N / 6N FLOPs per token; the GRPO arm counts the same way), and
*peak RSS* is the highest resident set of the process during the measured updates (Linux
``/proc/self/clear_refs`` resets it just before; both processes import the same libraries and
build the same model), with its growth over the resident set at the start. On CUDA the table adds
``torch.cuda.max_memory_allocated``.

Each trainer runs in a fresh process of this script (one after the other, never at the same
time), with one torch thread by default (``--threads``): on a shared 2-core machine a second
intra-op thread waits for a busy core and slows everything several times. Each process first
warms up with a tiny run of its trainer, then times ``updates`` updates; the table shows medians.
A random-init model writes no parsable answer, so every episode uses all its tries and nearly
every answer is ``max_new_tokens`` long, and its sampled answers rarely re-tokenise to the same
ids, so PPO's turns do not chain; the foundation ends episodes when it succeeds and its turns
chain (the table reports the share of transitions scored in a shared row).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

try:  # imported as ``benchmarks.bench_ppo`` (tests) or run as a script (``make bench``)
    from benchmarks.readme_table import check_markers, write_table
except ImportError:
    from readme_table import check_markers, write_table  # type: ignore[no-redef]

NAME = "bench_ppo"
START_MARKER = f"<!-- {NAME}:start -->"
END_MARKER = f"<!-- {NAME}:end -->"
TOKENS_GOAL = 2.0
"""Goal: PPO's generated tokens per second of training at least this many times GRPOTrainer's."""
ARMS = ("ppo", "grpo")
ARM_NAMES = {
    "ppo": "sftvrl PPO (`PPOTrainer`)",
    "grpo": "TRL `GRPOTrainer` (our GRPO arm, `train_grpo`)",
}
GFLOPS_KEYS = ("gflops", "gflops_train")
"""The ``ComputeTracker`` counts kept per update: all, and training (forward-backward) only."""
LEARNING_RATE = 2e-5
"""Both arms (the tiny PPO config's rate); it does not change the work of an update."""


@dataclass(frozen=True)
class Settings:
    """The workload of one update and how many updates to time."""

    label: str
    episodes: int  # per update / per GRPO step
    verify_iter: int  # tries per episode
    max_new_tokens: int  # per answer
    mini_batch: int  # PPO transitions / GRPO episodes per forward-backward
    ppo_epochs: int
    ppo_grad_accumulation: int  # PPO mini-batches per optimizer step
    generations: int  # GRPO group size
    updates: int  # timed per arm, after a warm-up
    threads: int = 1
    model: str = "tiny-text-gp"


FULL = Settings("full", 64, 5, 48, 16, 4, 4, 8, 3)
QUICK = Settings("quick", 16, 2, 16, 8, 4, 2, 8, 2)


def _progress(message: str) -> None:
    print(f"[bench_ppo] {message}", file=sys.stderr, flush=True)


# -- memory --------------------------------------------------------------------------------------


def _status_bytes(field: str) -> int | None:
    with contextlib.suppress(OSError):
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if match:
            return int(match.group(1)) * 1024
    return None


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its peak RSS to the current RSS (``clear_refs`` value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _rss() -> int:
    return _status_bytes("VmRSS") or _peak_rss()


# -- the worker processes ------------------------------------------------------------------------


def _ppo_experiment(settings: Settings, folder: Path, *, small: bool = False) -> Any:
    from sftvrl.models import ModelConfig
    from sftvrl.train.ppo import PPOConfig, RLEnvConfig, RLEval, RLExperiment

    episodes = 4 if small else settings.episodes
    return RLExperiment(
        model=ModelConfig(name_or_path=settings.model, seed=0),
        env=RLEnvConfig(
            task="gp-l",
            split="id",
            prompt="compact",
            verify_iter=1 if small else settings.verify_iter,
        ),
        ppo=PPOConfig(
            num_updates=settings.updates,
            episodes_per_update=episodes,
            rollout_batch=episodes,
            mini_batch_size=min(settings.mini_batch, episodes),
            grad_accumulation=settings.ppo_grad_accumulation,
            ppo_epochs=1 if small else settings.ppo_epochs,
            learning_rate=LEARNING_RATE,
            lr_max_steps=12,
            max_new_tokens=8 if small else settings.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            max_grad_norm=1.0,
            value_hidden_sizes=(128, 64),
        ),
        eval=RLEval(every=0),
        save_every=0,
        output=str(folder),
        name="warm-up" if small else "ppo",
    )


def _ppo_update(trainer: Any) -> dict[str, float]:
    from sftvrl.train.ppo import packed_rows

    before = trainer.tracker.metrics()
    start = time.perf_counter()
    transitions, episodes = trainer.collect()
    collected = time.perf_counter()
    trainer.prepare(transitions)
    trainer.rollout_stats(transitions, episodes)
    trainer.optimise(transitions)
    end = time.perf_counter()
    trainer.update += 1
    return {
        "seconds": end - start,
        "rollout": collected - start,
        "episodes": len(episodes),
        "tokens": sum(len(t.response_ids) for t in transitions),
        "linked": sum(len(c) for c in packed_rows(transitions) if len(c) > 1) / len(transitions),
        **{key: trainer.tracker.metrics()[key] - before[key] for key in GFLOPS_KEYS},
    }


def _run_ppo(settings: Settings, folder: Path, memory: _Memory) -> list[dict[str, float]]:
    from sftvrl.train.ppo import PPOTrainer

    _ppo_update(PPOTrainer(_ppo_experiment(settings, folder, small=True)))
    gc.collect()
    memory.start()
    trainer = PPOTrainer(_ppo_experiment(settings, folder))
    return [_ppo_update(trainer) for _ in range(settings.updates)]


def _grpo_config(settings: Settings, *, small: bool = False) -> Any:
    from sftvrl.train.grpo import GRPOArmConfig

    episodes = 4 if small else settings.episodes
    generations = 2 if small else settings.generations
    mini_batch = min(settings.mini_batch, episodes)
    steps = 1 if small else settings.updates
    return GRPOArmConfig(
        task="gp-l",
        split="id",
        prompt="compact",
        verify_iter=1 if small else settings.verify_iter,
        n_prompts=steps * episodes // generations,
        num_generations=generations,
        max_new_tokens=8 if small else settings.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=50,  # as PPO's rollouts sample (the generation config's default)
        batch_size=mini_batch,
        gradient_accumulation=episodes // mini_batch,
        learning_rate=LEARNING_RATE,
        max_steps=steps,
        gradient_checkpointing=False,
        log_every=1,
        save_every=0,
        eval_every=0,
        seed=0,
    )


def _run_grpo(settings: Settings, folder: Path, memory: _Memory) -> list[dict[str, float]]:
    from transformers import TrainerCallback

    from sftvrl.models import ModelConfig
    from sftvrl.train import grpo

    rollouts: list[tuple[float, int, int]] = []  # seconds, episodes, sampled tokens
    make_rollout_func = grpo.make_rollout_func

    def timed_rollout_func(*args: Any, **kwargs: Any) -> Any:
        play = make_rollout_func(*args, **kwargs)

        def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
            start = time.perf_counter()
            output = play(prompts, trainer)
            tokens = sum(map(sum, output["env_mask"]))
            rollouts.append((time.perf_counter() - start, len(output["env_mask"]), tokens))
            return output

        return rollout_func

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin = 0.0
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.seconds.append(time.perf_counter() - self.begin)

    grpo.make_rollout_func = timed_rollout_func  # this worker process only
    model = ModelConfig(name_or_path=settings.model, seed=0)
    grpo.train_grpo(_grpo_config(settings, small=True), model, output=folder, name="warm-up")
    gc.collect()
    rollouts.clear()
    memory.start()
    timer = StepTimer()
    result = grpo.train_grpo(
        _grpo_config(settings), model, output=folder, name="grpo", callbacks=[timer]
    )
    records = [r for r in result.run.metric_records() if "gflops" in r and "final" not in r]
    records.sort(key=lambda r: r["step"])
    if not len(timer.seconds) == len(rollouts) == len(records) == settings.updates:
        raise RuntimeError(
            f"expected {settings.updates} GRPO steps, got {len(timer.seconds)} timed steps, "
            f"{len(rollouts)} rollouts and {len(records)} logged steps"
        )
    steps = []
    for i, (seconds, (rollout_seconds, episodes, tokens)) in enumerate(
        zip(timer.seconds, rollouts, strict=True)
    ):
        steps.append(
            {
                "seconds": seconds,
                "rollout": rollout_seconds,
                "episodes": episodes,
                "tokens": tokens,
                **{
                    key: records[i][key] - (records[i - 1][key] if i else 0.0)
                    for key in GFLOPS_KEYS
                },
            }
        )
    return steps


class _Memory:
    """Peak host (and CUDA) memory from ``start()`` on."""

    def __init__(self) -> None:
        self.start_rss = 0
        self.reset = False

    def start(self) -> None:
        import torch

        self.start_rss = _rss()
        self.reset = _reset_peak_rss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def result(self) -> dict[str, Any]:
        import torch

        gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        return {
            "start_rss": self.start_rss,
            "peak_rss": _peak_rss(),
            "peak_reset": self.reset,
            "gpu_peak": gpu,
        }


def worker(arm: str, settings: Settings, out: Path) -> None:
    """One trainer in this (fresh) process; writes its measurements to ``out`` as JSON."""
    import torch

    torch.set_num_threads(settings.threads)
    # the same libraries in both workers, so that their resident sets start alike
    import datasets  # noqa: F401
    import trl  # noqa: F401

    import sftvrl.train.grpo
    import sftvrl.train.ppo  # noqa: F401

    memory = _Memory()
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as folder:
        run = _run_ppo if arm == "ppo" else _run_grpo
        updates = run(settings, Path(folder), memory)
        result = {"arm": arm, "updates": updates, **memory.result()}
    out.write_text(json.dumps(result))


def run_worker(arm: str, settings: Settings) -> dict[str, Any]:
    """Run ``worker`` in a fresh Python process and return what it measured."""
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", arm]
        command += ["--settings", json.dumps(asdict(settings)), "--out", str(out)]
        env = os.environ | {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TRL_EXPERIMENTAL_SILENCE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": str(settings.threads),
            "PYTHONWARNINGS": "ignore",
        }
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(
                f"bench_ppo: the {arm} worker failed (exit {done.returncode}):\n"
                + done.stderr[-4000:]
            )
        return json.loads(out.read_text())


# -- the table -----------------------------------------------------------------------------------


def _sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, with thousands separators."""
    if value >= 10 ** (digits - 1):
        return f"{round(value, digits - len(str(int(value)))):,.0f}"
    return f"{value:.{digits}g}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


@dataclass(frozen=True)
class Summary:
    """Medians over the timed updates of one arm."""

    seconds: float
    rollout: float
    episodes: float
    tokens: float
    episodes_per_s: float
    tokens_per_s: float
    gflops: float
    gflops_train: float
    linked: float
    """Share of PPO's transitions scored in a row shared with other turns of their episode."""
    peak_rss: int
    rss_growth: int
    gpu_peak: int | None

    @classmethod
    def of(cls, result: dict[str, Any]) -> Summary:
        updates = result["updates"]

        def median(key: str) -> float:
            return statistics.median(u[key] for u in updates)

        return cls(
            seconds=median("seconds"),
            rollout=median("rollout"),
            episodes=median("episodes"),
            tokens=median("tokens"),
            episodes_per_s=statistics.median(u["episodes"] / u["seconds"] for u in updates),
            tokens_per_s=statistics.median(u["tokens"] / u["seconds"] for u in updates),
            gflops=median("gflops"),
            gflops_train=median("gflops_train"),
            linked=statistics.median(u.get("linked", 0.0) for u in updates),
            peak_rss=result["peak_rss"],
            rss_growth=result["peak_rss"] - result["start_rss"],
            gpu_peak=result["gpu_peak"],
        )


def machine() -> str:
    import numpy as np
    import torch
    import transformers
    import trl

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {os.cpu_count()} CPUs ({usable} usable); Python {platform.python_version()}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl "
        f"{trl.__version__}, numpy {np.__version__}"
    )


def _goal(ppo: Summary, grpo: Summary) -> str:
    ratio = ppo.tokens_per_s / grpo.tokens_per_s
    speed = "met" if ratio >= TOKENS_GOAL else f"**not met** ({TOKENS_GOAL / ratio:.1f}x short)"
    memory = "met" if ppo.peak_rss <= grpo.peak_rss else "**not met**"
    return (
        f"- Goal, PPO at least {TOKENS_GOAL:g}x GRPOTrainer's generated tokens per second of "
        f"training: {_sig(ratio)}x, {speed}. Peak memory no higher: PPO {_mib(ppo.peak_rss)} vs "
        f"GRPOTrainer {_mib(grpo.peak_rss)} peak RSS, {memory}."
    )


def render_table(
    results: dict[str, dict[str, Any]], settings: Settings, elapsed: float, load: str
) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    summaries = {arm: Summary.of(results[arm]) for arm in ARMS}
    gpu = any(s.gpu_peak is not None for s in summaries.values())
    reset = all(results[arm]["peak_reset"] for arm in ARMS)
    lines = [
        f"Measured {today} ({settings.label} run, {elapsed:.0f} s) on {machine()}; "
        f"{settings.threads} torch thread(s) per process, load average {load} at the start. "
        f"Medians of {settings.updates} updates per trainer after a warm-up; numbers are for "
        "this machine only"
        + (" and rough: a quick run is small." if settings.label == QUICK.label else "."),
        "",
        f"Tiny GP-L, `{settings.model}`, compact prompt: {settings.episodes} episodes per "
        f"update (GRPO: {settings.episodes // settings.generations} prompts x "
        f"{settings.generations} generations), up to {settings.verify_iter} tries per episode, "
        f"{settings.max_new_tokens} new tokens per answer, temperature 1; PPO "
        f"{settings.ppo_epochs} epochs, mini-batches of {settings.mini_batch}; GRPO micro-batches "
        f"of {settings.mini_batch} episodes, one pass.",
        "",
        "| Trainer | episodes / update | generated tokens / update | update | rollout | training "
        "| episodes/s | generated tokens/s | GFLOPs / update | peak RSS | RSS growth |"
        + (" GPU peak |" if gpu else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""),
    ]
    for arm in ARMS:
        s = summaries[arm]
        cells = [
            ARM_NAMES[arm],
            f"{s.episodes:.0f}",
            f"{s.tokens:,.0f}",
            f"{_sig(s.seconds)} s",
            f"{_sig(s.rollout)} s",
            f"{_sig(s.seconds - s.rollout)} s",
            f"{_sig(s.episodes_per_s)}/s",
            f"{_sig(s.tokens_per_s)}/s",
            _sig(s.gflops),
            _mib(s.peak_rss),
            _mib(s.rss_growth),
        ]
        if gpu:
            cells.append(_mib(s.gpu_peak) if s.gpu_peak is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    ppo, grpo = summaries["ppo"], summaries["grpo"]
    lines += ["", _goal(ppo, grpo)]
    lines.append(
        f"- Where the time goes: PPO's rollout takes {_sig(ppo.rollout)} s against the arm's "
        f"{_sig(grpo.rollout)} s, but its training counts {_sig(ppo.gflops_train)} GFLOPs of "
        f"forward-backward against GRPO's {_sig(grpo.gflops_train)} "
        f"({_sig(ppo.gflops_train / grpo.gflops_train)}x; the paper's counter, which charges "
        "every answer its whole chat even where turns share a row), by design: PPO trains for "
        f"{settings.ppo_epochs} epochs with a value head, GRPO each episode once as one "
        f"sequence. {ppo.linked:.0%} of PPO's transitions were scored in a row shared with the "
        "other turns of their episode (`pack_turns`); the others re-read their chat."
    )
    if not reset:
        lines.append("- Peak RSS could not be reset here: it is the process's peak since start.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (under a minute)")
    parser.add_argument(
        "--write-readme",
        type=Path,
        metavar="README",
        help="write the table between the bench_ppo markers of this file",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per trainer process (default 1)"
    )
    parser.add_argument(
        "--model",
        default=FULL.model,
        help="the model both trainers train (default: the tiny GP foundation tiny-text-gp)",
    )
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, Settings(**json.loads(args.settings)), args.out)
        return 0
    if args.write_readme is not None:  # fail before measuring, not after
        check_markers(args.write_readme, NAME)
    settings = QUICK if args.quick else FULL
    if (args.threads, args.model) != (settings.threads, settings.model):
        settings = Settings(**(asdict(settings) | {"threads": args.threads, "model": args.model}))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    start = time.perf_counter()
    results = {}
    for arm in ARMS:
        _progress(f"{ARM_NAMES[arm]}: {settings.updates} updates ({settings.label} run)")
        results[arm] = run_worker(arm, settings)
        seconds = [round(u["seconds"], 1) for u in results[arm]["updates"]]
        _progress(f"{arm}: update seconds {seconds}")
    table = render_table(results, settings, time.perf_counter() - start, load)
    print(table)
    if args.write_readme is not None:
        write_table(args.write_readme, NAME, table)
        _progress(f"table written to {args.write_readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

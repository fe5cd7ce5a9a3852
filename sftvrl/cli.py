"""The ``sftvrl`` command: ``sft``, ``rl``, ``eval``, ``pretrain-tiny``; YAML configs + ``a.b=c``.

    sftvrl sft --config sftvrl/configs/tiny/gp_l_sft.yaml train.max_steps=10
    sftvrl rl --config sftvrl/configs/tiny/gp_l_rl.yaml model.name_or_path=runs/gp_l_sft/final
    sftvrl grpo --config sftvrl/configs/tiny/gp_l_grpo.yaml model.name_or_path=runs/gp_l_sft/final
    sftvrl eval --config sftvrl/configs/tiny/gp_l_eval.yaml model.name_or_path=runs/gp_l_sft/final
    sftvrl pretrain-tiny     # rebuilds the shipped tiny foundation checkpoint (data/tiny/)
    sftvrl sft --help        # every option with its default
    sftvrl reproduce --tier tiny --jobs 2 --out figures   # every notebook, every figure (flags)

Several processes: ``accelerate launch --config_file sftvrl/configs/accelerate/<setup>.yaml
-m sftvrl.cli rl ...`` (setups for 1 GPU, 8 GPUs with ZeRO-2, several nodes, 2 CPU processes).

Errors a user can fix (a bad key, a missing model, a missing data folder) print one line that says
what and how, and exit with status 2; they are not tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftvrl.config import ConfigError, config_to_dict, flatten_config, load_config, parse_overrides
from sftvrl.models import ModelConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class EvalSampling:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0


@dataclass
class EvalExperiment:
    """Evaluate one policy on one task's splits; results go to ``output/name/metrics.jsonl``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: str = "gp-l"
    splits: list[str] = field(default_factory=lambda: ["id", "rule_ood"])
    n_episodes: int | None = None
    """GP: None scores every hand of the split; V-IRL: None = 48 routes (all 18 for mini)."""
    verify_iter: int | None = None
    """None: the paper's setting (5 for GP, 2 for V-IRL)."""
    mode: str = "exact"
    prompt: str = "paper"
    image_size: int = 112
    sampling: EvalSampling = field(default_factory=EvalSampling)
    batch_size: int = 32
    seed: int = 42
    output: str = "runs"
    name: str = "eval"


def run_eval(config: Any) -> list[dict[str, Any]]:
    """Evaluate ``config.model`` on every split of ``config.task``; log and return the summaries."""
    from sftvrl.data import TASKS
    from sftvrl.eval import evaluate_task
    from sftvrl.models import load_policy
    from sftvrl.runs import Run
    from sftvrl.train.generation import PolicyResponder, SamplingConfig

    if config.task not in TASKS:
        raise ConfigError(f"unknown task {config.task!r}; expected one of {sorted(TASKS)}")
    run = Run.create(config.output, config.name, config, seed=config.seed)
    policy = load_policy(config.model)
    sampling = SamplingConfig(
        max_new_tokens=config.sampling.max_new_tokens,
        temperature=config.sampling.temperature,
        top_p=config.sampling.top_p,
    )
    responder = PolicyResponder(policy, sampling, seed=config.seed)
    options = {
        "mode": config.mode,
        "prompt": config.prompt,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "verify_iter": config.verify_iter,
        "n_episodes": config.n_episodes,
        "image_size": config.image_size,
    }
    summaries = []
    for step, split in enumerate(config.splits):
        summary = evaluate_task(responder, config.task, split, **options).summary()
        summary = {k: v for k, v in summary.items() if not k.startswith("settings.")}
        summary |= {"task": config.task, "split": split}
        run.log(summary, step=step)
        summaries.append(summary)
    return summaries


def run_sft_command(config: Any) -> dict[str, Any]:
    from sftvrl.train.sft import train_sft

    result = train_sft(config)
    return {"run": str(result.run.path), "final": str(result.final_dir), **result.metrics}


def run_rl_command(config: Any) -> dict[str, Any]:
    from sftvrl.train.ppo import train_ppo

    result = train_ppo(config)
    final = None if result.final_dir is None else str(result.final_dir)
    return {"run": str(result.run.path), "final": final, "updates": result.trainer.update}


def run_grpo_command(config: Any) -> dict[str, Any]:
    from sftvrl.train.grpo import run_grpo_experiment

    result = run_grpo_experiment(config)
    return {"run": str(result.run.path), "final": str(result.final_dir), **result.metrics}


def run_pretrain_command(config: Any) -> dict[str, Any]:
    from sftvrl.tiny.pretrain import pretrain

    changed = _changed_options(config)
    command = " ".join(["sftvrl pretrain-tiny", *changed])
    result = pretrain(
        config.pretrain, config.out, command=command, eval_episodes=config.eval_episodes
    )
    return {"out": str(result.path), "seconds": round(result.seconds, 1), **result.scores}


def _changed_options(config: Any) -> list[str]:
    """The ``key=value`` overrides that turn the defaults into ``config`` (to record a command)."""
    defaults = flatten_config(config_to_dict(type(config)()))
    current = flatten_config(config_to_dict(config))
    return [f"{k}={json.dumps(v)}" for k, v in current.items() if defaults.get(k) != v]


def _pretrain_class() -> type:
    from sftvrl.tiny.pretrain import PretrainExperiment

    return PretrainExperiment


def _grpo_class() -> type:
    from sftvrl.train.grpo import GRPOExperiment

    return GRPOExperiment


def _rl_class() -> type:
    from sftvrl.train.ppo import RLExperiment

    return RLExperiment


def _sft_class() -> type:
    from sftvrl.train.sft import SFTExperiment

    return SFTExperiment


COMMANDS: dict[str, tuple[str, Callable[[], type], Callable[[Any], Any]]] = {
    "sft": ("supervised fine-tuning (Init, and the SFT branch)", _sft_class, run_sft_command),
    "rl": ("multi-turn PPO with a value head (the RL branch)", _rl_class, run_rl_command),
    "grpo": ("RL with TRL's GRPO through the environment adapter", _grpo_class, run_grpo_command),
    "eval": ("evaluate a policy on a task's ID / OOD splits", lambda: EvalExperiment, run_eval),
    "pretrain-tiny": (
        "pretrain the tiny tier's foundation model on the synthetic corpus",
        _pretrain_class,
        run_pretrain_command,
    ),
}


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message already says what to fix: shown as one line, not a traceback."""
    from sftvrl.envs.virl.real import RealDataError
    from sftvrl.models import ModelLoadError
    from sftvrl.runs import RunError

    return (ConfigError, FileNotFoundError, ModelLoadError, RunError, RealDataError)


def _options_help(cls: type) -> str:
    defaults = flatten_config(config_to_dict(cls()))
    width = max(len(key) for key in defaults)
    lines = [f"  {key.ljust(width)}  {json.dumps(value)}" for key, value in defaults.items()]
    return "options (key=value overrides) and their defaults:\n" + "\n".join(lines)


REPRODUCE_HELP = "run every notebook with papermill and regenerate the figures"


def run_reproduce(argv: Sequence[str]) -> int:
    """``sftvrl reproduce``: flags rather than ``key=value`` (it runs notebooks, not one config).

    Prints one line per job and, last, a JSON summary; exits 1 when a job failed, 2 on a request
    that cannot run (an unknown job name, a bad tier).
    """
    import textwrap

    from sftvrl.reproduce import TIERS, KernelError, ReproduceError, build_plan, reproduce

    names = ", ".join(job.name for job in build_plan())
    parser = argparse.ArgumentParser(
        prog="sftvrl reproduce",
        description=REPRODUCE_HELP,
        epilog="jobs, in order:\n" + textwrap.fill(names, 78, break_on_hyphens=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tier", choices=TIERS, default="tiny", help="model size (default tiny)")
    parser.add_argument("--quick", action="store_true", help="smallest budgets: a smoke test")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks run at once (default: one per GPU, else one per core as memory allows)",
    )
    parser.add_argument("--out", default="figures", help="figures, executed notebooks, report")
    parser.add_argument("--model", default=None, help="HF id or folder instead of the tier's")
    parser.add_argument("--runs", default=None, help="run-folder root (default runs/<tier>)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="jobs (or glob patterns) to run")
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = reproduce(
            args.tier,
            quick=args.quick,
            jobs=args.jobs,
            out=args.out,
            model=args.model,
            only=args.only,
            runs=args.runs,
        )
    except (ReproduceError, KernelError) as error:
        print(f"sftvrl reproduce: {error}", file=sys.stderr)
        return 2
    for job in report.jobs:
        timing = "" if job.wall_s is None else f" {job.wall_s:.0f} s, {job.peak_rss_mib} MiB"
        error = f" - {job.error}" if job.error else ""
        print(f"{job.status:8s} {job.name}{timing}{error}")
    report_path = Path(report.out) / "reproduce_report.json"
    print(json.dumps({"report": str(report_path), "ok": report.ok, "failed": report.failed}))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sftvrl`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="sftvrl",
        description="SFT Memorizes, RL Generalizes — reproducible experiments.",
        epilog="Run 'sftvrl <command> --help' for a command's options.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        print("\ncommands:\n" + "\n".join(f"  {k:13s} {v[0]}" for k, v in COMMANDS.items()))
        print(f"  {'reproduce':13s} {REPRODUCE_HELP}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "reproduce":
        return run_reproduce(rest)
    if command not in COMMANDS:
        parser.error(f"unknown command {command!r}; choose from {sorted(COMMANDS)}")
    description, config_class, action = COMMANDS[command]
    cls = config_class()
    if "-h" in rest or "--help" in rest:
        print(f"usage: sftvrl {command} [--config FILE.yaml] [key=value ...]\n\n{description}\n")
        print(_options_help(cls))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path, overrides = parse_overrides(rest)
        config = load_config(cls, path, overrides)
        result = action(config)
    except Exception as error:
        if not isinstance(error, _user_errors()):
            raise
        print(f"sftvrl {command}: {error}", file=sys.stderr)
        return 2
    if _rank() == 0:
        print(json.dumps(result, default=str))  # one line, last: scripts can parse it
    _finish_distributed()
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _finish_distributed() -> None:
    """End a multi-process run cleanly: gloo can abort at interpreter exit (STACK.md §10.2)."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

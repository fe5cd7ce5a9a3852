"""What ``make reproduce`` runs: an ordered list of notebook jobs per tier, with their parameters.

Each notebook declares its parameters (and their defaults) in a cell tagged ``parameters``; a plan
only overrides what differs between tiers and runs: the tier, the model, the seeds, the output
folders, the task and the learning-rate sweeps. ``quick=True`` gives the same plan with one point
per sweep and ``quick=True`` passed on, which makes ``StudyConfig.for_tier`` use its minimal
budgets (``make test`` runs the whole chain that way).

Every experiment writes its own run folders (``<runs>/<experiment>-<variant>/<task>``), so the
experiments are independent and may run in parallel; the figures notebook reads them all, so it
needs every other job and comes last.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
"""The repository's notebooks (an editable install, as ``make install`` makes)."""

TIERS = ("tiny", "gpu", "paper")
TASKS = ("gp-l", "virl-l", "gp-vl", "virl-vl")

SEEDS: dict[str, list[int]] = {"tiny": [0, 1, 2], "gpu": [0], "paper": [0]}
"""Seeds of the main study per tier: the tiny tier can afford three; one GPU run already takes
hours. Quick: [0]."""
ABLATION_SEEDS: dict[str, list[int]] = {"tiny": [0], "gpu": [0], "paper": [0]}
"""Seeds of the ablations (Figs. 9, 10, 15-17, 19): one, as in the paper, to keep the tiny tier's
whole chain within its CPU budget; pass ``seeds`` in a notebook to add more."""

SWEEPS: dict[str, dict[str, Any]] = {
    # The paper's values (spec/PAPER.md §4.2). Figs 9, 17, 19 sweep the RL learning rate around
    # the paper's 1e-6 (1e-7 for V-IRL-VL); Fig 16 sweeps SFT rates per frozen part of GP-VL.
    "paper": {
        "rl_without_sft": [5e-7, 1e-6, 2e-6],
        "verify_iters": [1, 3, 5, 10],
        "sft_lr": {
            "": [1e-7, 5e-7, 1e-6, 1e-5, 1e-4],
            "vision": [1e-7, 1e-6],
            "vision+projector": [1e-7, 5e-7, 1e-6],
        },
        "rl_lr": [1e-6, 2e-6],
        "rl_from_overfit": [1e-7, 2e-7],
    },
    # The same spreads around each tier's own default rates (tiny: SFT 5e-4, RL 1e-5, from
    # StudyConfig, the RL rate chosen on ID success in 05_tiny_tier_design; gpu with LoRA:
    # SFT 1e-4, RL 1e-5).
    "tiny": {
        "rl_without_sft": [5e-6, 1e-5, 2e-5],
        "verify_iters": [1, 3, 5, 10],
        "sft_lr": {
            "": [1e-4, 5e-4, 2e-3],
            "vision": [5e-4],
        },
        "rl_lr": [1e-5, 2e-5],
        "rl_from_overfit": [1e-6, 2e-6],
    },
    "gpu": {
        "rl_without_sft": [5e-6, 1e-5, 2e-5],
        "verify_iters": [1, 3, 5, 10],
        "sft_lr": {
            "": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3],
            "vision": [1e-5, 1e-4],
            "vision+projector": [1e-5, 3e-5, 1e-4],
        },
        "rl_lr": [1e-5, 2e-5],
        "rl_from_overfit": [1e-6, 2e-6],
    },
}


@dataclass(frozen=True)
class Job:
    """One notebook run: ``notebook`` (a file in ``notebooks/``) executed as ``name``."""

    notebook: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    """Folders (as the notebooks see them) whose run logs the job reads: when their logs change
    (a run resumed or redone, by this plan or by hand) the job is out of date."""


def default_runs_root(tier: str, out: str | Path, quick: bool, model: str | None) -> Path:
    """Where run folders go: beside a quick run's output, else ``runs/<tier>[-<model>]``.

    Quick runs must never resume (or be resumed by) real runs with other budgets; a model of
    its own gets folders of its own for the same reason.
    """
    if quick:
        return Path(out) / "runs"
    suffix = "" if model is None else "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    return Path("runs") / f"{tier}{suffix}"


def as_seen_from(notebooks: Path, path: str | Path) -> str:
    """``path`` as a notebook run from ``notebooks`` sees it (papermill runs it there, as Jupyter
    does): relative inside the checkout, so executed notebooks and markers hold no paths of this
    machine; absolute elsewhere."""
    path, notebooks = Path(path).resolve(), Path(notebooks).resolve()
    if path.is_relative_to(notebooks.parent):
        return os.path.relpath(path, notebooks)
    return str(path)


def _quick_sweep(sweep: Any) -> Any:
    """One point per sweep: a smoke test runs each notebook's code once, with a non-default value
    (the first learning rate; one verification iteration; a frozen vision encoder)."""
    if isinstance(sweep, dict):
        return {"vision": sweep["vision"][:1]}
    return sweep[:1]


def build_plan(
    tier: str = "tiny",
    *,
    quick: bool = False,
    out: str | Path = "figures",
    model: str | None = None,
    runs: str | Path | None = None,
    notebooks: str | Path = NOTEBOOKS,
) -> list[Job]:
    """The ordered notebook jobs of one tier; ``out`` and ``runs`` are relative to the current
    directory and reach the notebooks as :func:`as_seen_from` ``notebooks`` gives them."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose from {list(TIERS)}")
    out_dir = as_seen_from(Path(notebooks), out)
    runs_dir = as_seen_from(
        Path(notebooks), runs if runs is not None else default_runs_root(tier, out, quick, model)
    )
    sweeps = SWEEPS[tier]
    if quick:
        sweeps = {key: _quick_sweep(value) for key, value in sweeps.items()}
    common = {
        "tier": tier,
        "model": model,
        "seeds": [0] if quick else list(SEEDS[tier]),
        "quick": quick,
        "budgets": {},
        "out": runs_dir,
    }

    def study(notebook: str, name: str, task: str, **sweep: Any) -> Job:
        seeds = (
            common["seeds"] if notebook == "02_main_study.ipynb" or quick else ABLATION_SEEDS[tier]
        )
        return Job(notebook, name, {**common, "seeds": list(seeds), "task": task, **sweep})

    jobs = [Job("00_tour.ipynb", "tour")]
    if tier == "tiny":  # how the tiny tier was designed: its calibration sweeps and GP-L verdict
        design = {"seeds": common["seeds"], "quick": quick, "out": runs_dir}
        if quick:
            design |= {
                "init_sweep": [2],
                "rl_lr_sweep": [5e-5],
                "virl_init_sweep": [2],
                "virl_rl_lr_sweep": [5e-5],
                "vl_init_sweep": [2],
            }
        jobs.append(Job("05_tiny_tier_design.ipynb", "tiny-design", design))
    # the design notebook also runs the main GP-L and V-IRL-L studies, for its verdicts; their
    # own notebooks run beside it rather than after it: ``run_study`` trains the seeds no other
    # process is training first, so the two share the seeds instead of one core idling
    mains = [study("02_main_study.ipynb", f"main-{task}", task) for task in TASKS]
    jobs += mains
    jobs += [
        study("03_rl_without_sft.ipynb", "rl-without-sft", "gp-l", rl_lrs=sweeps["rl_without_sft"]),
        study(
            "04_verify_iterations.ipynb",
            "verify-iterations",
            "gp-l",
            verify_iters=sweeps["verify_iters"],
        ),
        study("06_suboptimal_sft.ipynb", "suboptimal-sft", "gp-l"),
        study("07_sft_lr_sweep.ipynb", "sft-lr-sweep", "gp-vl", sft_lrs=sweeps["sft_lr"]),
        study("08_rl_lr.ipynb", "rl-lr", "gp-vl", rl_lrs=sweeps["rl_lr"]),
        study(
            "09_rl_from_overfit.ipynb",
            "rl-from-overfit",
            "virl-vl",
            rl_lrs=sweeps["rl_from_overfit"],
        ),
    ]
    figures = Job(
        "10_figures.ipynb",
        "figures",
        {"runs_root": runs_dir, "out": out_dir},
        tuple(job.name for job in jobs),
        reads=(runs_dir,),
    )
    return [*jobs, figures]


__all__ = ["ABLATION_SEEDS", "NOTEBOOKS", "SEEDS", "SWEEPS", "TASKS", "TIERS", "Job", "build_plan"]

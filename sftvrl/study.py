"""The paper's experiment as one call: Init (a short SFT), then an SFT branch and an RL branch.

``run_study(StudyConfig.for_tier("tiny", "gp-l"))`` does, for every seed: a short SFT of the
tier's base model on ID expert data gives **Init**; from Init, the **SFT branch** continues SFT
and the **RL branch** runs multi-turn PPO with the verifier's reward; both evaluate ID and OOD
along the way with the FLOPs they have spent. Each stage is an ordinary run folder
(``sftvrl.runs``) made by the same code as ``sftvrl sft`` / ``sftvrl rl``, so a killed study
resumes where it stopped, and a finished stage is skipped. :func:`load_evals` turns every
evaluation under a folder into one tidy frame, which ``sftvrl.figures`` draws.

One pre-declared configuration per tier and task (:meth:`StudyConfig.for_tier`), the same for
both branches: nothing here is tuned per finding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from sftvrl.config import _write_text_atomic
from sftvrl.data import TASKS
from sftvrl.runs import exclusive

logger = logging.getLogger(__name__)

STUDY_FILE = "study.json"
"""Written into each run folder of a study: what the run is (experiment, task, branch, seed)."""

BRANCHES = ("base", "init", "sft", "rl")

SPLIT_NAMES = {"mini": "visual_ood"}
"""Environment split -> the frame's split: V-IRL's visual OOD is its VLN mini benchmark."""


@dataclass
class StudyConfig:
    """One experiment of the study: which model, task, budgets and seeds."""

    experiment: str = "main"
    """``main`` or an ablation: ``no_sft``, ``verify_iter``, ``suboptimal``, ``sft_lr``,
    ``rl_lr``, ``overfit_init``."""
    variant: str = ""
    task: str = "gp-l"
    tier: str = "tiny"
    model: str | None = None
    """The base model (None: the tier's default)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    init_steps: int = 80
    sft_steps: int = 500
    """SFT branch length: about the training compute of ``rl_updates`` PPO updates (tiny GP-L:
    one PPO update of 32 episodes costs about 65 SFT steps of 16 chats), so that both branches
    span the same GFLOPs range, as the paper's curves do."""
    rl_updates: int = 8
    """PPO updates of the RL branch. The tiny tier ran 16 (and 1,000 SFT steps) until both were
    halved toward ``make reproduce``'s 40-minute budget on 2 cores; at 16, RL had not moved
    GP-L's ID or OOD success either (05_tiny_tier_design)."""
    evals_per_branch: int = 4
    """Evaluation points per branch after Init (Init's own evaluation is the first point)."""
    eval_episodes: int | None = 200
    """Episodes per split and evaluation (GP: fixed seeded hands; None = every hand)."""
    splits: list[str] = field(default_factory=lambda: ["id", "rule_ood"])
    sft_lr: float = 5e-4
    sft_batch_size: int = 16
    sft_data: int = 4_000
    rl_lr: float = 1e-5
    rl_episodes: int = 32
    rl_epochs: int = 2
    rl_temperature: float = 1.0
    rl_ratio: str = "sequence"
    """PPO's probability ratio: ``sequence`` (the paper's) or ``token`` (:attr:`PPOConfig.ratio`)."""
    rl_critic_backprop: bool = True
    """The value loss also trains the language model (the paper's shared model); False stops its
    gradient at the value head (:attr:`PPOConfig.critic_backprop`)."""
    verify_iter: int | None = None
    """None: the paper's budget (5 for GP, 2 for V-IRL), in training and evaluation."""
    max_new_tokens: int = 64
    prompt: str = "compact"
    image_size: int = 112
    branches: list[str] = field(default_factory=lambda: ["sft", "rl"])
    from_base: bool = False
    """RL (and SFT) start from the base model instead of Init (the paper's Fig. 9)."""
    suboptimal: bool = False
    """The SFT branch trains on sub-optimal multi-turn trajectories (Fig. 15)."""
    overfit_init: bool = False
    """Init is trained ``sft_steps`` steps instead of ``init_steps`` (Fig. 19's over-fitted start)."""
    freeze: str = ""
    """Vision tasks, SFT (Fig. 16): ``"vision"`` freezes the vision tower, ``"vision+projector"``
    the projector too."""
    quick: bool = False
    threads: int = 2
    out: str = "runs"

    @classmethod
    def for_tier(
        cls, tier: str = "tiny", task: str = "gp-l", *, quick: bool = False, **overrides: Any
    ) -> StudyConfig:
        """The pre-declared configuration of a tier and task (``quick``: minimal budgets)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
        if tier not in TIER_DEFAULTS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {sorted(TIER_DEFAULTS)}")
        values: dict[str, Any] = {"tier": tier, "task": task, "quick": quick}
        values |= TIER_DEFAULTS[tier].get(task, {})
        if quick:
            values |= QUICK_BUDGET
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown StudyConfig fields {unknown}; known: {sorted(names)}")
        return cls(**(values | overrides))

    @property
    def base_model(self) -> str:
        if self.model:
            return self.model
        if self.tier == "tiny":
            return TINY_BASE_MODELS[self.task]
        raise ValueError(f"tier {self.tier!r} has no default model; pass model=<hub id or path>")

    @property
    def folder(self) -> Path:
        name = self.experiment + (f"-{self.variant}" if self.variant else "")
        return Path(self.out) / name / self.task


TINY_BASE_MODELS = {
    "gp-l": "tiny-text-gp",
    "gp-vl": "tiny-vlm-gp",
    "virl-l": "tiny-text-virl",
    "virl-vl": "tiny-vlm-virl",
}
"""The tiny tier's foundations (``data/tiny``, ``sftvrl pretrain-tiny``)."""

_TINY_EVALS = {"evals_per_branch": 2}
"""Tiny tier: each branch is evaluated halfway and at its end (Init's evaluation is the first
point of both curves); evaluation was about 40% of a GP-L seed's time at four points a branch."""

_VIRL_L_TINY: dict[str, Any] = {
    "init_steps": 10,
    "sft_steps": 110,
    "rl_updates": 6,
    "sft_data": 1_000,
    "eval_episodes": 100,
    "max_new_tokens": 80,
}
"""V-IRL-L starts from its own foundation (``tiny-text-virl``, a 1,024-token vocabulary: prompts of
about 330 tokens, answers under 60). Init: 10 steps, by the pre-declared rule (no length reached
the 30-60% band; 05_tiny_tier_design). The SFT branch's 110 steps are about the training compute
of the RL branch's 6 updates of 32 routes (300 steps and 16 updates before the budgets were
halved; a V-IRL-L SFT step of 16 chats of ~330 tokens is the tier's most expensive).
``sft_data`` counts routes (about ten chats each); ``eval_episodes`` routes per split."""

_VIRL_VL_TINY: dict[str, Any] = {
    "init_steps": 80,
    "sft_steps": 110,
    "rl_updates": 6,
    "sft_data": 200,
    "eval_episodes": 50,
    "max_new_tokens": 80,
}
"""V-IRL-VL starts from its vision foundation ``tiny-vlm-virl`` (``tiny-text-virl`` given eyes, so
the same 1,024-token vocabulary). Branch budgets are V-IRL-L's (110 SFT steps, 6 PPO updates),
set before any V-IRL-VL result from this foundation. Init: 80 steps by the pre-declared rule (no
length of 10/20/40/80 reached the 30-60% band; 80 came closest, 2 routes of 50;
05_tiny_tier_design); the first study from this foundation used V-IRL-L's 10 before the sweep
was run. Drawing a view grid takes 15-20 ms, so the data are smaller: ``sft_data`` 200 routes
(about 2,000 chats with their grids) cover the SFT branch's 1,760 chats, and 50 routes per split
are evaluated (their grids are drawn once per process and revisited by every evaluation). Until
this foundation existed, V-IRL-VL started from the random ``tiny-vlm`` and scored 0
everywhere."""

_GP_VL_TINY: dict[str, Any] = {
    "init_steps": 80,
    "sft_steps": 200,
    "rl_updates": 4,
    "eval_episodes": 100,
    "max_new_tokens": 80,
    "splits": ["id", "rule_ood", "visual_ood"],
}
"""GP-VL starts from the vision foundation ``tiny-vlm-gp``. Init: 80 steps by the pre-declared
rule (no length of 10/20/40/80 reached the 30-60% band; 80 came closest; 05_tiny_tier_design).
Smaller budgets than GP-L (set before the foundation existed, kept so nothing is tuned to its
results): the SFT branch's 200 steps are about the training compute of the RL branch's 4 updates
(300 and 6 before the budgets were halved)."""

TIER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "gp-l": _TINY_EVALS,
        "gp-vl": _TINY_EVALS | _GP_VL_TINY,
        "virl-l": _TINY_EVALS | _VIRL_L_TINY,
        "virl-vl": _TINY_EVALS | _VIRL_VL_TINY | {"splits": ["id", "rule_ood", "mini"]},
    },
    "gpu": {},
    "paper": {},
}
"""Per tier and task, the fields that differ from :class:`StudyConfig`'s defaults."""

QUICK_BUDGET: dict[str, Any] = {
    "seeds": [0],
    "init_steps": 2,
    "sft_steps": 2,
    "rl_updates": 1,
    "evals_per_branch": 1,
    "eval_episodes": 2,
    "sft_data": 16,
    "sft_batch_size": 4,
    "rl_episodes": 2,
    "rl_epochs": 1,
    "max_new_tokens": 24,
    "verify_iter": 2,
}
"""``quick=True``: the whole chain with minimal budgets (the test suite runs it)."""


# -- stages --------------------------------------------------------------------------------------


def _label(
    run_dir: Path,
    config: StudyConfig,
    branch: str,
    seed: int,
    offset: float,
    source: Path | None = None,
) -> None:
    """Say what a run is; ``source``: the label points at a shared run folder elsewhere."""
    info = {
        "experiment": config.experiment,
        "variant": config.variant,
        "task": config.task,
        "branch": branch,
        "seed": seed,
        "gflops_offset": offset,
        "study": asdict(config),
    }
    if source is not None:
        info["source"] = os.path.relpath(source, run_dir)
    # atomic: two notebooks of make reproduce JOBS=N may label a shared run while a third reads it
    _write_text_atomic(run_dir / STUDY_FILE, json.dumps(info, indent=2) + "\n")


def _final_gflops(run_dir: Path) -> float:
    from sftvrl.runs import read_metric_records

    records = read_metric_records(run_dir / "metrics.jsonl")
    values = [r["gflops"] for r in records if "gflops" in r]
    return float(values[-1]) if values else 0.0


def _eval_settings(config: StudyConfig, rl: bool = False) -> dict[str, Any]:
    """The same evaluation for both branches (RL takes ``verify_iter`` from its environment)."""
    settings = {
        "splits": list(config.splits),
        "n_episodes": config.eval_episodes,
        "max_new_tokens": config.max_new_tokens,
        "batch_size": 64,
    }
    return settings if rl else settings | {"verify_iter": config.verify_iter}


def _train_once(run_dir: Path, train: Any) -> Path:
    """Train ``run_dir`` unless it is finished, holding its lock: another process (a parallel
    notebook of ``make reproduce JOBS=N``) may be training this very run."""
    with exclusive(run_dir):
        if not (run_dir / "final").is_dir():
            train()
    return run_dir


def _sft_run(
    config: StudyConfig,
    name: str,
    model: str,
    steps: int,
    seed: int,
    every: int,
    suboptimal: bool,
    folder: Path | None = None,
) -> Path:
    """One SFT run (Init or the SFT branch) in ``folder`` (default: the study's), unless done."""
    folder = folder or config.folder
    from sftvrl.models import ModelConfig
    from sftvrl.train.sft import SFTData, SFTEval, SFTExperiment, SFTTrain, train_sft

    experiment = SFTExperiment(
        model=ModelConfig(name_or_path=model, seed=seed),
        data=SFTData(
            task=config.task,
            n=config.sft_data,
            prompt=config.prompt,
            suboptimal=suboptimal,
            image_size=config.image_size,
            seed=seed,
        ),
        train=SFTTrain(
            max_steps=steps,
            learning_rate=config.sft_lr,
            lr_scheduler="constant",
            batch_size=config.sft_batch_size,
            save_every=max(1, steps // 2),
            log_every=max(1, min(10, steps)),
            freeze_vision_tower="vision" in config.freeze.split("+"),
            freeze_projector="projector" in config.freeze.split("+"),
            gradient_checkpointing=config.tier != "tiny",
        ),
        eval=SFTEval(every=every, **_eval_settings(config)),
        output=str(folder),
        name=name,
        seed=seed,
    )
    return _train_once(folder / name, lambda: train_sft(experiment))


def _rl_run(
    config: StudyConfig,
    name: str,
    model: str,
    seed: int,
    every: int,
    folder: Path,
    init: Path | None = None,
) -> Path:
    """One RL run in ``folder``, unless done; from ``init`` (an Init run), whose own last
    evaluation is this run's first (the same weights, episodes and greedy decoding)."""
    from sftvrl.models import ModelConfig
    from sftvrl.train.ppo import PPOConfig, RLEnvConfig, RLEval, RLExperiment, train_ppo

    experiment = RLExperiment(
        model=ModelConfig(name_or_path=model, seed=seed),
        env=RLEnvConfig(
            task=config.task,
            verify_iter=config.verify_iter,
            prompt=config.prompt,
            image_size=config.image_size,
        ),
        ppo=PPOConfig(
            num_updates=config.rl_updates,
            episodes_per_update=config.rl_episodes,
            rollout_batch=config.rl_episodes,
            ppo_epochs=config.rl_epochs,
            mini_batch_size=16,
            grad_accumulation=2,
            learning_rate=config.rl_lr,
            lr_min=config.rl_lr / 10,
            lr_max_steps=config.rl_updates,
            max_grad_norm=1.0,
            temperature=config.rl_temperature,
            top_p=1.0,
            max_new_tokens=config.max_new_tokens,
            value_hidden_sizes=(128, 64),
            critic_backprop=config.rl_critic_backprop,
            ratio=config.rl_ratio,  # type: ignore[arg-type]
        ),
        eval=RLEval(
            every=every,
            temperature=0.0,
            seed=42,
            start_eval_from=str(init) if init is not None else None,
            **_eval_settings(config, rl=True),
        ),
        save_every=every,
        output=str(folder),
        name=name,
        seed=seed,
    )
    return _train_once(folder / name, lambda: train_ppo(experiment))


def _init_steps(config: StudyConfig) -> int:
    """Init's SFT steps: the configured Init, or the whole SFT budget for Fig. 19's overfit Init."""
    return config.sft_steps if config.overfit_init else config.init_steps


def _shared_folder(config: StudyConfig, kind: str, identity: dict[str, Any]) -> Path:
    """``<out>/<kind>/<task>/<digest of identity>``: one folder per distinct run, whichever
    experiments ask for it."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return Path(config.out) / kind / config.task / digest


def _init_folder(config: StudyConfig, init_steps: int) -> Path:
    """Where Init lives: shared by every experiment whose Init is the same (same base model,
    budget, data and evaluation), as in the paper, where all branches and ablations of a task
    start from one Init checkpoint."""
    identity = {
        "task": config.task,
        "model": config.base_model,
        "weights": _weights_identity(config.base_model),
        "init_steps": init_steps,
        "sft_lr": config.sft_lr,
        "sft_batch_size": config.sft_batch_size,
        "sft_data": config.sft_data,
        "prompt": config.prompt,
        "image_size": config.image_size,
        "eval": _eval_settings(config),
    }
    return _shared_folder(config, "init", identity)


_BRANCH_FIELDS = {
    "sft": ("sft_steps", "sft_lr", "sft_batch_size", "sft_data", "suboptimal", "freeze"),
    "rl": (
        "rl_updates",
        "rl_lr",
        "rl_episodes",
        "rl_epochs",
        "rl_temperature",
        "rl_ratio",
        "rl_critic_backprop",
    ),
}
"""The fields that shape a branch's training (besides its start and its evaluation)."""


def _branch_folder(config: StudyConfig, branch: str, start: Path | None) -> Path:
    """Where a branch run lives: shared by every experiment that asks for the same run (same
    start, training and evaluation), so that, say, Fig. 10's five verification iterations and
    Fig. 17's default rate reuse the main study's seed-0 RL run instead of training it again.
    ``start``: the shared Init folder, or None for a branch from the base model."""
    identity = {
        "task": config.task,
        "branch": branch,
        "start": str(start) if start is not None else None,
        "base": config.base_model if start is None else None,
        "weights": _weights_identity(config.base_model) if start is None else None,
        "prompt": config.prompt,
        "image_size": config.image_size,
        "evals_per_branch": config.evals_per_branch,
        "eval": _eval_settings(config),
        **{name: getattr(config, name) for name in _BRANCH_FIELDS[branch]},
    }
    return _shared_folder(config, branch, identity)


def _weights_identity(model: str) -> str | None:
    """What identifies a local base model's weights, so a rebuilt checkpoint gets a new Init:
    the SHA-256 of a shipped tiny checkpoint (a few MB), the names, sizes and modification times
    of the weight files of any other local folder (hashing a multi-GB model per seed is waste)."""
    from sftvrl.models.loading import SHIPPED_MODELS, local_folder
    from sftvrl.tiny.pretrain import weights_sha256

    folder = local_folder(model)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    if model in SHIPPED_MODELS:
        return weights_sha256(folder)
    return json.dumps([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])


def _point_to(
    config: StudyConfig, name: str, run: Path, branch: str, seed: int, offset: float
) -> None:
    """Label ``<study folder>/<name>`` as this study's ``branch`` run of ``seed``, kept in the
    shared folder ``run``."""
    pointer = config.folder / name
    if (pointer / "metrics.jsonl").exists():
        raise RuntimeError(
            f"{pointer} holds a run made before studies shared their runs; "
            "move it away (or delete it) and run the study again"
        )
    pointer.mkdir(parents=True, exist_ok=True)
    _label(pointer, config, branch, seed, offset, source=run)


def _study_folders(config: StudyConfig) -> tuple[Path | None, dict[str, Path]]:
    """The shared folders of a study's runs: its Init's (None when it starts from the base model)
    and each configured branch's. Found once per study: each identity hashes the base weights."""
    init = None if config.from_base else _init_folder(config, _init_steps(config))
    return init, {branch: _branch_folder(config, branch, init) for branch in config.branches}


def run_seed(
    config: StudyConfig,
    seed: int,
    folders: tuple[Path | None, dict[str, Path]] | None = None,
) -> list[Path]:
    """Init, then the configured branches, for one seed; every run is kept in a shared folder
    (``folders``, default :func:`_study_folders`) and labelled in the study's own."""
    import torch

    torch.set_num_threads(config.threads)
    shared_init, branch_folders = folders or _study_folders(config)
    runs = []
    init = None
    if shared_init is None:
        start, offset = config.base_model, 0.0
    else:
        steps = _init_steps(config)
        init = _sft_run(
            config, f"init_s{seed}", config.base_model, steps, seed, steps, False, shared_init
        )
        _point_to(config, f"init_s{seed}", init, "init", seed, 0.0)
        runs.append(init)
        start, offset = str(init / "final"), _final_gflops(init)
    if "sft" in config.branches:
        every = max(1, config.sft_steps // config.evals_per_branch)
        sft = _sft_run(
            config,
            f"sft_s{seed}",
            start,
            config.sft_steps,
            seed,
            every,
            config.suboptimal,
            branch_folders["sft"],
        )
        _point_to(config, f"sft_s{seed}", sft, "sft", seed, offset)
        runs.append(sft)
    if "rl" in config.branches:
        every = max(1, config.rl_updates // config.evals_per_branch)
        rl = _rl_run(config, f"rl_s{seed}", start, seed, every, branch_folders["rl"], init)
        _point_to(config, f"rl_s{seed}", rl, "rl", seed, offset)
        runs.append(rl)
    return runs


def run_study(config: StudyConfig) -> pd.DataFrame:
    """Run (or resume) every seed of ``config``; return the tidy evaluation frame of its folder."""
    unknown = sorted(set(config.branches) - {"sft", "rl"})
    if unknown:
        raise ValueError(f"unknown branches {unknown}; expected 'sft' and/or 'rl'")
    folders = _study_folders(config)
    waiting = list(config.seeds)
    while waiting:
        # a seed another process is training (``make reproduce JOBS=N``: the design notebook and
        # a main-study notebook ask for the same runs) waits until no other seed is free
        seed = next((s for s in waiting if not _seed_busy(s, folders)), waiting[0])
        waiting.remove(seed)
        logger.info("study %s seed %d", config.folder, seed)
        run_seed(config, seed, folders)
    return load_evals(config.folder)


def _seed_busy(seed: int, folders: tuple[Path | None, dict[str, Path]]) -> bool:
    """Whether another process holds the lock of one of this seed's runs (Init, SFT, RL) in the
    study's shared ``folders`` (:func:`_study_folders`)."""
    from sftvrl.runs import busy_elsewhere

    shared_init, branch_folders = folders
    runs = [folder / f"{branch}_s{seed}" for branch, folder in branch_folders.items()]
    if shared_init is not None:
        runs.append(shared_init / f"init_s{seed}")
    return any(busy_elsewhere(run) for run in runs)


# -- results -------------------------------------------------------------------------------------

_METRIC_PREFIXES = {
    "success_": ("success", "success_outcomes"),
    "route_": ("success", "route_outcomes"),
    "per_step_": ("per_step", None),
    "recognition_": ("recognition", None),
    "numbers_read_": ("numbers_read", None),
    "face_as_ten_": ("face_as_ten", None),
    "other_vocabulary_": ("other_vocabulary", None),
}
"""Evaluation record prefixes -> the frame's ``metric`` (and the key of per-episode outcomes)."""

FRAME_COLUMNS = [
    "experiment",
    "variant",
    "task",
    "branch",
    "seed",
    "step",
    "gflops",
    "drift",
    "split",
    "metric",
    "rate",
    "k",
    "n",
    "se",
    "ci_low",
    "ci_high",
    "outcomes",
    "run",
]


def load_evals(root: str | Path) -> pd.DataFrame:
    """Every evaluation under ``root`` as one tidy frame (one row per run, step, split, metric).

    ``gflops`` counts from the start of post-training: a branch's own compute plus Init's, so
    both branches start at Init's point on the x-axis, as in the paper's figures.
    """
    from sftvrl.runs import read_metric_records

    rows = []
    for label_path in sorted(Path(root).rglob(STUDY_FILE)):
        label = json.loads(label_path.read_text())
        run_dir = label_path.parent
        if "source" in label:  # a shared run (Init) seen from this study
            run_dir = (run_dir / label["source"]).resolve()
        for record in read_metric_records(run_dir / "metrics.jsonl"):
            if "eval_split" not in record:
                continue
            for prefix, (metric, outcomes_key) in _METRIC_PREFIXES.items():
                if f"{prefix}rate" not in record:
                    continue
                rows.append(
                    {
                        "experiment": label["experiment"],
                        "variant": label["variant"],
                        "task": label["task"],
                        "branch": label["branch"],
                        "seed": label["seed"],
                        "step": record["step"],
                        "gflops": label["gflops_offset"] + float(record.get("gflops", 0.0)),
                        "drift": record.get("drift"),
                        "split": SPLIT_NAMES.get(record["eval_split"], record["eval_split"]),
                        "metric": metric,
                        "rate": record[f"{prefix}rate"],
                        "k": record[f"{prefix}k"],
                        "n": record[f"{prefix}n"],
                        "se": record[f"{prefix}se"],
                        "ci_low": record[f"{prefix}ci_low"],
                        "ci_high": record[f"{prefix}ci_high"],
                        "outcomes": record.get(outcomes_key) if outcomes_key else None,
                        "run": str(run_dir),
                    }
                )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    # a resumed run may have logged a step's evaluation twice (the last counts); a run shared by
    # several experiments appears once under each of their labels
    once = ["experiment", "variant", "branch", "seed", "run", "step", "split", "metric"]
    return frame.drop_duplicates(once, keep="last").reset_index(drop=True)


def final_table(frame: pd.DataFrame, metric: str = "success") -> pd.DataFrame:
    """Init, SFT and RL per task and split: at the equal-compute point (the largest GFLOPs both
    branches reached) and at each branch's last evaluation; seeds pooled (k and n summed) with
    the pooled Wilson interval, the per-seed rates, the compute and the drift from Init."""
    from sftvrl.figures import branch_at_compute, equal_compute_point, init_rows, pool

    rows = []
    subset = frame[frame["metric"] == metric]
    for (task, split), group in subset.groupby(["task", "split"], sort=False):
        point = equal_compute_point(group)
        series = {"init": ("start", init_rows(group))}
        for branch in ("sft", "rl"):
            mine = group[group["branch"] == branch]
            if point is not None and not mine.empty:
                chosen = branch_at_compute(group, branch, point)
                series[f"{branch} @ equal compute"] = (branch, chosen)
            last = mine.sort_values("step").groupby("seed").tail(1)
            series[f"{branch} @ last"] = (branch, last)
        for label, (_, chosen) in series.items():
            estimate = pool(chosen)
            if estimate is None:
                continue
            per_seed = chosen.sort_values("seed")
            rows.append(
                {
                    "task": task,
                    "split": split,
                    "branch": label,
                    "seeds": estimate.seeds,
                    "rate": estimate.rate,
                    "ci_low": estimate.low,
                    "ci_high": estimate.high,
                    "per_seed": ", ".join(f"{r:.3f}" for r in per_seed["rate"]),
                    "gflops": float(per_seed["gflops"].mean()),
                    "drift": float(per_seed["drift"].mean())
                    if per_seed["drift"].notna().any()
                    else None,
                }
            )
    return pd.DataFrame(rows)


def show_table(frame: pd.DataFrame, metric: str = "success") -> Any:
    """:func:`final_table` as a percentage table for a notebook."""
    table = final_table(frame, metric)
    if table.empty:
        return table
    shown = table.copy()
    for column in ("rate", "ci_low", "ci_high"):
        shown[column] = (100 * shown[column]).round(1)
    return shown


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Several studies' frames as one (empty frames are fine)."""
    kept = [f for f in frames if not f.empty]
    if not kept:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    return pd.concat(kept, ignore_index=True)


def pick_init_steps(frame: pd.DataFrame, low: float = 0.3, high: float = 0.6) -> int:
    """The shortest Init (variants ``init-<steps>``) whose ID success lies in ``[low, high]``.

    The pre-declared calibration rule of the tiny tier: an Init that leaves RL signal and SFT
    room. When no length lands inside, the one whose success is closest to the interval.
    """
    rows = frame[(frame["branch"] == "init") & (frame["split"] == "id")]
    rows = rows[(rows["metric"] == "success") & rows["variant"].str.startswith("init-")]
    if rows.empty:
        raise ValueError("no Init evaluations of variants 'init-<steps>' in the frame")
    last = rows.sort_values("step").groupby("variant").tail(1)
    candidates = sorted(
        (int(v.split("-", 1)[1]), r) for v, r in zip(last["variant"], last["rate"], strict=True)
    )
    inside = [steps for steps, rate in candidates if low <= rate <= high]
    if inside:
        return inside[0]
    return min(candidates, key=lambda c: (max(low - c[1], c[1] - high), c[0]))[0]


def pick_by_final_id(frame: pd.DataFrame, branch: str = "rl") -> str:
    """The variant whose ``branch`` ends with the highest ID success (ties: the first in order).

    The tiny tier's rule for the RL learning rate: judged on ID, what RL optimises, never on OOD.
    """
    rows = frame[(frame["branch"] == branch) & (frame["split"] == "id")]
    rows = rows[rows["metric"] == "success"]
    if rows.empty:
        raise ValueError(f"no ID evaluations of the {branch!r} branch in the frame")
    last = rows.sort_values("step").groupby(["variant", "seed"]).tail(1)
    means = last.groupby("variant", sort=False)["rate"].mean()
    return str(means.idxmax())


def trajectory_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation point of every run as one row: compute, drift, ID and OOD success, and the
    rule-reading diagnostics on OOD (seeds not pooled), ordered by branch, seed and step."""
    keys = ["task", "branch", "variant", "seed", "step"]
    wide = frame.pivot_table(index=keys, columns=["split", "metric"], values="rate", aggfunc="last")
    wide.columns = [f"{split} {metric}" for split, metric in wide.columns]
    extra = frame.groupby(keys)[["gflops", "drift"]].last()
    table = extra.join(wide).reset_index()
    order = {b: i for i, b in enumerate(BRANCHES)}
    table["_order"] = table["branch"].map(order)
    table = table.sort_values(["task", "_order", "variant", "seed", "step"]).drop(columns="_order")
    return table.reset_index(drop=True)


__all__ = [
    "FRAME_COLUMNS",
    "StudyConfig",
    "concat",
    "final_table",
    "load_evals",
    "pick_by_final_id",
    "pick_init_steps",
    "run_seed",
    "run_study",
    "show_table",
    "trajectory_table",
]

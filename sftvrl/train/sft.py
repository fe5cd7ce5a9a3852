"""Supervised fine-tuning with TRL's ``SFTTrainer``, one code path for every tier.

A short run from the base model makes **Init**; the SFT branch of the study is the same code with a
bigger budget, started from Init. Loss is on the assistant turns only. The run lives in a run
folder (:mod:`sftvrl.runs`): resolved config, provenance, ``metrics.jsonl`` (loss, learning rate,
tokens and the paper's GFLOPs after every logging step, plus ID/OOD evaluations when asked),
HF-Trainer checkpoints marked complete only once written, and ``final/`` — a policy folder that
:func:`sftvrl.models.load_policy` reads. Running the same config again resumes a killed run from
its last complete checkpoint (optimizer, scheduler, RNG and data order included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from sftvrl.compute import count_parameters, sft_flops
from sftvrl.data import TASKS, build_sft_dataset
from sftvrl.models import ModelConfig, Policy, load_policy
from sftvrl.runs import Run
from sftvrl.train.drift import parameter_drift, snapshot

logger = logging.getLogger(__name__)

FINAL_DIR = "final"


@dataclass
class SFTData:
    """Which SFT data: task, size, split, prompt layout, and image size for vision tasks."""

    task: str = "gp-l"
    n: int = 256
    split: str = "id"
    prompt: str = "paper"
    suboptimal: bool = False
    image_size: int = 112
    """GP-VL table width / V-IRL-VL view size, in pixels."""
    seed: int = 0

    def build(self) -> Any:
        family, vision = TASKS.get(self.task, (None, False))
        options: dict[str, Any] = {"split": self.split, "prompt": self.prompt}
        if vision:
            options["image_width" if family == "general_points" else "view_size"] = self.image_size
        return build_sft_dataset(
            self.task, self.n, seed=self.seed, suboptimal=self.suboptimal, **options
        )  # type: ignore[arg-type]


@dataclass
class SFTTrain:
    """Optimisation: the knobs of the paper's SFT runs (PAPER.md §3.3), sized for any tier."""

    max_steps: int = 100
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup: float = 0.0
    """Linear warm-up: a number of steps, or a fraction of ``max_steps`` when below 1."""
    batch_size: int = 8
    gradient_accumulation: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10
    freeze_vision_tower: bool = False
    """Fig. 16's ablation: keep the vision encoder fixed."""
    freeze_projector: bool = False
    """Fig. 16's third panel: keep the vision-to-language projector (adapter) fixed too."""
    gradient_checkpointing: bool = True
    """TRL's default: recompute activations in the backward pass, which saves memory on big
    models; on a tiny model it only costs time (about a third of a CPU step), so tiny runs turn
    it off. The same weights either way."""


@dataclass
class SFTEval:
    """ID / OOD evaluations during training, so a run gives the paper's curves (Fig. 5)."""

    every: int = 0
    """Evaluate every this many steps (and at the end); 0 = never."""
    splits: list[str] = field(default_factory=lambda: ["id", "rule_ood"])
    n_episodes: int = 64
    verify_iter: int | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    batch_size: int = 32
    seed: int = 42


@dataclass
class SFTExperiment:
    """Everything one SFT run needs; ``sftvrl sft`` reads it from YAML plus ``a.b=c`` overrides."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTData = field(default_factory=SFTData)
    train: SFTTrain = field(default_factory=SFTTrain)
    eval: SFTEval = field(default_factory=SFTEval)
    output: str = "runs"
    name: str = "sft"
    seed: int = 0


@dataclass
class SFTResult:
    run: Run
    policy: Policy
    final_dir: Path
    metrics: dict[str, Any]


class _RunLogger(TrainerCallback):
    """Mirrors the trainer's logs into the run folder with tokens and GFLOPs; marks checkpoints."""

    def __init__(self, run: Run, n_params: int) -> None:
        self.run = run
        self.n_params = n_params

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not logs or not state.is_world_process_zero or "train_loss" in logs:
            return  # the end-of-training summary is logged once, by train_sft
        tokens = int(state.num_input_tokens_seen or 0)
        record = {k: v for k, v in logs.items() if isinstance(v, int | float)}
        record |= {"tokens": tokens, "gflops": sft_flops(self.n_params, tokens) / 1e9}
        self.run.log(record, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            self.run.mark_checkpoint_complete(state.global_step)


class _Evaluator(TrainerCallback):
    """Evaluates the model being trained on the configured splits; logs rates with GFLOPs."""

    def __init__(self, run: Run, policy: Policy, config: SFTExperiment, n_params: int) -> None:
        self.run, self.policy, self.config, self.n_params = run, policy, config, n_params
        self.done: set[int] = {r["step"] for r in run.metric_records() if "eval_split" in r}
        self.start = snapshot(policy.model)
        """The starting weights (before any resume restores a checkpoint): drift is from here."""

    def evaluate(self, model: torch.nn.Module, step: int, tokens: int) -> None:
        from sftvrl.eval import evaluate_task
        from sftvrl.train.generation import PolicyResponder, SamplingConfig

        if step in self.done:
            return
        settings, data = self.config.eval, self.config.data
        options = {
            "prompt": data.prompt,
            "seed": settings.seed,
            "batch_size": settings.batch_size,
            "verify_iter": settings.verify_iter,
            "n_episodes": settings.n_episodes,
            "image_size": data.image_size,
        }
        sampling = SamplingConfig(settings.max_new_tokens, settings.temperature)
        was_training = model.training
        model.eval()
        self.policy.model = model
        responder = PolicyResponder(self.policy, sampling, seed=settings.seed)
        for split in settings.splits:
            result = evaluate_task(responder, data.task, split, **options).summary()
            record = {k: v for k, v in result.items() if not k.startswith("settings.")}
            record |= {"eval_split": split, "tokens": tokens}
            record["gflops"] = sft_flops(self.n_params, tokens) / 1e9
            record["drift"] = parameter_drift(model, self.start)
            self.run.log(record, step=step)
        model.train(was_training)
        self.done.add(step)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        every = self.config.eval.every
        if every and state.is_world_process_zero and state.global_step % every == 0:
            self.evaluate(model, state.global_step, int(state.num_input_tokens_seen or 0))


VISION_PARTS = ("vision_tower", "vision_model")
PROJECTOR_PARTS = ("multi_modal_projector", "visual.merger")


def _freeze(model: torch.nn.Module, parts: tuple[str, ...]) -> int:
    """Stop gradients to parameters whose name contains one of ``parts``; returns how many."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if any(part in name for part in parts):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def _trainer_args(config: SFTExperiment, run: Run) -> Any:
    from trl import SFTConfig

    train = config.train
    cuda = torch.cuda.is_available() and config.model.device != "cpu"
    return SFTConfig(
        output_dir=str(run.checkpoints_path),
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.gradient_accumulation,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        gradient_checkpointing=train.gradient_checkpointing,
        max_length=train.max_length,
        assistant_only_loss=True,
        logging_steps=train.log_every,
        save_strategy="steps",
        save_steps=train.save_every,
        save_total_limit=train.keep_checkpoints,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def train_sft(config: SFTExperiment, *, callbacks: tuple[TrainerCallback, ...] = ()) -> SFTResult:
    """Run (or resume) one SFT run and return its run folder and trained policy."""
    from trl import SFTTrainer

    run = Run.create(config.output, config.name, config, seed=config.seed)
    policy = load_policy(config.model)
    if config.train.freeze_vision_tower:
        logger.info("froze %d vision parameters", _freeze(policy.model, VISION_PARTS))
    if config.train.freeze_projector:
        logger.info("froze %d projector parameters", _freeze(policy.model, PROJECTOR_PARTS))
    dataset = config.data.build()
    columns = ["messages", "images"] if policy.vision else ["messages"]
    dataset = dataset.select_columns([c for c in columns if c in dataset.column_names])

    n_params = count_parameters(policy.model)
    trainer = SFTTrainer(
        model=policy.model,
        args=_trainer_args(config, run),
        train_dataset=dataset,
        processing_class=policy.processor if policy.vision else policy.tokenizer,
        callbacks=[_RunLogger(run, n_params), *callbacks],
    )
    evaluator = _Evaluator(run, policy, config, n_params)
    if config.eval.every:
        trainer.add_callback(evaluator)
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        logger.info("resuming %s from %s", run.path, checkpoint)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    policy.model = trainer.model
    if config.eval.every:
        tokens = int(trainer.state.num_input_tokens_seen or 0)
        evaluator.evaluate(trainer.model, trainer.state.global_step, tokens)
    final_dir = run.path / FINAL_DIR
    policy.save(final_dir)
    metrics = dict(output.metrics) | {"tokens": int(trainer.state.num_input_tokens_seen or 0)}
    metrics["gflops"] = sft_flops(n_params, metrics["tokens"]) / 1e9
    run.log({"final": True, **metrics}, step=trainer.state.global_step)
    return SFTResult(run, policy, final_dir, metrics)

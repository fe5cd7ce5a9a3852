"""Pretraining the tiny tier's foundation model from scratch on the synthetic corpus.

A plain loop a reader can hold in their head (nanoGPT-style): a fixed, seeded corpus is tokenised
once with the chat template (loss on assistant tokens only, as SFT does), then AdamW with linear
warm-up and cosine decay runs over shuffled mini-batches. Everything is a function of the config,
so the same config gives the same weights on the same machine and thread count. The result is a
plain Hugging Face checkpoint folder (``load_policy`` reads it like any hub model) with a
``foundation.json`` manifest: the config, the corpus hash, the exact command and the scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sftvrl.data import content_hash
from sftvrl.envs.general_points.rules import RANKS
from sftvrl.tiny.corpus import GPCorpusConfig, gp_corpus
from sftvrl.tiny.virl_corpus import VirlCorpusConfig, virl_corpus
from sftvrl.tiny.virl_vision import SIGN_CLASSES, ViewBatches, rail_point
from sftvrl.tiny.vision import (
    RecognitionProbe,
    VisionFoundationConfig,
    expand_image_token,
    fresh_parameters,
    graft_vlm,
    hand_batch,
)

logger = logging.getLogger(__name__)

MANIFEST = "foundation.json"


@dataclass
class PretrainConfig:
    """Everything that decides the foundation checkpoint (hyper-parameters in one place)."""

    family: str = "general_points"
    """``general_points`` (``corpus``), ``virl`` (``virl_corpus``), or a vision foundation: a tiny
    VLM grafted onto a text foundation (``vision``) and trained on that corpus in its vision form,
    ``general_points_vl`` (from ``tiny-text-gp``) or ``virl_vl`` (from ``tiny-text-virl``)."""
    n_examples: int = 48_000
    corpus_seed: int = 0
    corpus: GPCorpusConfig = field(default_factory=GPCorpusConfig)
    virl_corpus: VirlCorpusConfig = field(default_factory=VirlCorpusConfig)
    vision: VisionFoundationConfig = field(default_factory=VisionFoundationConfig)
    vocab_size: int = 512
    """512: the tiny tier's built-in tokenizer. Otherwise a tokenizer of this size is trained on
    the built-in texts plus the first ``tokenizer_chats`` corpus chats (V-IRL's long prompts take
    2.5 times fewer tokens with 1,024)."""
    tokenizer_chats: int = 2_000
    model_seed: int = 0
    steps: int = 2_000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    threads: int = 2
    shuffle_seed: int = 0


@dataclass
class TokenisedCorpus:
    """Token ids and loss masks of every example (lists of python ints, unpadded)."""

    input_ids: list[list[int]]
    loss_mask: list[list[int]]
    sha256: str
    images: list[Any] | None = None
    """Vision corpora: what each example's image shows (GP-VL: the hand's cards; V-IRL-VL: the
    rail point), rendered per batch, not stored."""

    def batch(self, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Right-padded tensors for one mini-batch; labels are -100 outside assistant tokens.

        No attention mask: with padding on the right, causal attention never lets a real token
        see a pad, so the loss is exactly that of a masked batch, and the unmasked attention
        kernel is about 1.4x faster on CPU.
        """
        width = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        labels = torch.full((len(indices), width), -100, dtype=torch.long)
        for row, i in enumerate(indices):
            seq = torch.tensor(self.input_ids[i])
            mask = torch.tensor(self.loss_mask[i], dtype=torch.bool)
            ids[row, : len(seq)] = seq
            labels[row, : len(seq)] = torch.where(mask, seq, torch.tensor(-100))
        return {"input_ids": ids, "labels": labels}


FAMILIES = ("general_points", "virl", "general_points_vl", "virl_vl")

VISION_FAMILIES = {"general_points_vl": "general_points", "virl_vl": "virl"}
"""Each vision family and the family of the text foundation it is grafted onto."""


def build_corpus(config: PretrainConfig) -> list[dict[str, Any]]:
    """The corpus chats for ``config``'s family."""
    vision = config.family in VISION_FAMILIES
    if config.family in ("general_points", "general_points_vl"):
        return gp_corpus(
            config.n_examples, seed=config.corpus_seed, config=config.corpus, vision=vision
        )
    if config.family in ("virl", "virl_vl"):
        return virl_corpus(
            config.n_examples, seed=config.corpus_seed, config=config.virl_corpus, vision=vision
        )
    raise ValueError(f"no foundation corpus for family {config.family!r}; use one of {FAMILIES}")


def fresh_policy(config: PretrainConfig, corpus: list[dict[str, Any]]) -> Any:
    """The model to pretrain: a random-init tiny text model with the tokenizer ``config`` asks
    for, or (``general_points_vl``) the text foundation grafted into a tiny VLM."""
    from sftvrl.models import ModelConfig, load_policy
    from sftvrl.models.loading import Policy
    from sftvrl.models.tiny import TinyTextConfig, build_tiny_text_model
    from sftvrl.models.tokenizer import build_tokenizer, default_corpus

    if config.family in VISION_FAMILIES:
        _check_text_foundation(config)
        return graft_vlm(config.vision, config.model_seed)
    model_config = ModelConfig(name_or_path="tiny-text", seed=config.model_seed)
    if config.vocab_size == 512:
        return load_policy(model_config)
    texts = [
        "\n".join(message["content"] for message in chat["messages"])
        for chat in corpus[: config.tokenizer_chats]
    ]
    tokenizer = build_tokenizer([*default_corpus(), *texts], vocab_size=config.vocab_size)
    model = build_tiny_text_model(tokenizer, TinyTextConfig(), seed=config.model_seed)
    return Policy(model, tokenizer, None, False, model_config, base="tiny-text")


def _check_text_foundation(config: PretrainConfig) -> None:
    """Refuse to graft a vision family onto the other task's text foundation (its manifest says)."""
    from sftvrl.models.loading import local_folder

    manifest = local_folder(config.vision.text_foundation) / MANIFEST
    if not manifest.is_file():
        return  # a user's own text model: nothing to check against
    family = json.loads(manifest.read_text())["config"]["family"]
    if family != VISION_FAMILIES[config.family]:
        raise ValueError(
            f"{config.family} grafts a {VISION_FAMILIES[config.family]} text foundation, but "
            f"{config.vision.text_foundation!r} is a {family} one; set pretrain.vision.text_foundation"
        )


def image_of(family: str) -> Callable[[dict[str, Any]], Any]:
    """What a vision corpus chat's image shows: a GP hand's cards, or a V-IRL rail point."""
    if family == "general_points_vl":
        return lambda example: list(example["cards"])
    if family == "virl_vl":
        return rail_point
    raise ValueError(f"{family!r} is not a vision family; use one of {sorted(VISION_FAMILIES)}")


def tokenise(
    examples: list[dict[str, Any]],
    tokenizer: Any,
    *,
    image_tokens: int = 0,
    image: Callable[[dict[str, Any]], Any] | None = None,
) -> TokenisedCorpus:
    """Apply the chat template to every chat; mark assistant tokens (and their end) for the loss.

    ``image_tokens``: a VLM's tokens per image; the ``<image>`` placeholder becomes that many, as
    the processor would make it, and the corpus keeps what each example's image shows
    (``image``, default the GP hand's cards) to render.
    """
    from sftvrl.models.tokenizer import IMAGE_TOKEN

    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    input_ids, loss_mask = [], []
    for example in tqdm(examples, desc="tokenise", leave=False):
        encoded = tokenizer.apply_chat_template(
            example["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
        if image_tokens:
            ids, mask = expand_image_token(ids, mask, image_id, image_tokens)
        input_ids.append(ids)
        loss_mask.append(mask)
    image = image or image_of("general_points_vl")
    images = [image(example) for example in examples] if image_tokens else None
    return TokenisedCorpus(input_ids, loss_mask, content_hash(examples), images)


def _param_groups(config: PretrainConfig, model: Any, probe: Any) -> list[dict[str, Any]]:
    """One group at ``learning_rate``; a VLM's fresh parts (and probe) at the vision rate.

    ``lr_scale`` is each group's peak over ``learning_rate``: the schedule multiplies it.
    """
    if probe is None:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    fresh = fresh_parameters(model) + list(probe.parameters())
    fresh_ids = {id(p) for p in fresh}
    inherited = [p for p in model.parameters() if id(p) not in fresh_ids]
    scale = config.vision.vision_learning_rate / config.learning_rate
    return [{"params": inherited, "lr_scale": 1.0}, {"params": fresh, "lr_scale": scale}]


def cosine_lr(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to ``min_lr_ratio`` of it."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    ratio = config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * progress)
    )
    return config.learning_rate * ratio


def batch_order(lengths: list[int], config: PretrainConfig) -> list[list[int]]:
    """The mini-batches of every step: seeded shuffles, grouped by length, batches shuffled.

    Revision chats are three times longer than single answers; batching similar lengths
    together (within windows of ``BUCKET_BATCHES`` batches) avoids paying for padding.
    """
    rng = random.Random(config.shuffle_seed)
    size = config.batch_size
    batches: list[list[int]] = []
    while len(batches) < config.steps:
        epoch = list(range(len(lengths)))
        rng.shuffle(epoch)
        window = size * BUCKET_BATCHES
        for start in range(0, len(epoch) - size + 1, window):
            chunk = sorted(epoch[start : start + window], key=lengths.__getitem__)
            group = [chunk[i : i + size] for i in range(0, len(chunk) - size + 1, size)]
            rng.shuffle(group)
            batches += group
    return batches[: config.steps]


BUCKET_BATCHES = 32


def _image_batches(
    config: PretrainConfig, processor: Any
) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
    """The function that turns a batch's image descriptions into pixel values and probe targets."""
    size = config.vision.image_size
    if config.family == "virl_vl":
        return ViewBatches(processor, view_size=size)
    return lambda cards: hand_batch(cards, processor, size)


@dataclass
class PretrainExperiment:
    """``sftvrl pretrain-tiny``: the pretraining config, where to save, and how to score it."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    out: str = "data/tiny/tiny-text-gp"
    eval_episodes: int | None = None
    """Hands per split for the base model's scores (None: every hand of the split)."""


@dataclass
class PretrainResult:
    path: Path
    losses: list[float]
    seconds: float
    corpus_sha256: str
    weights_sha256: str
    scores: dict[str, float]


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    command: str = "",
    on_log: Callable[[int, float], None] | None = None,
    log_every: int = 50,
    eval_episodes: int | None = None,
) -> PretrainResult:
    """Pretrain a fresh tiny model on the corpus and save it (with its manifest) to ``out``.

    The loss is the language-model loss on assistant tokens; the VLM foundation adds its
    recognition probe's loss (``config.vision.recognition_weight``).
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.model_seed)
    chats = build_corpus(config)
    policy = fresh_policy(config, chats)
    model, tokenizer = policy.model, policy.tokenizer
    vision = policy.vision
    image_tokens = model.config.image_seq_length if vision else 0
    corpus = tokenise(
        chats,
        tokenizer,
        image_tokens=image_tokens,
        image=image_of(config.family) if vision else None,
    )
    images = _image_batches(config, policy.processor) if vision else None
    probe = None
    if vision:
        n_classes = len(SIGN_CLASSES) if config.family == "virl_vl" else len(RANKS)
        probe = RecognitionProbe(model, n_slots=4, n_classes=n_classes)
    optimiser = torch.optim.AdamW(
        _param_groups(config, model, probe),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    progress = tqdm(
        batch_order([len(ids) for ids in corpus.input_ids], config), desc="pretrain", leave=False
    )
    for step, indices in enumerate(progress):
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, config) * group["lr_scale"]
        batch = corpus.batch(indices, tokenizer.pad_token_id)
        if probe is not None:
            assert corpus.images is not None and images is not None
            seen = images([corpus.images[i] for i in indices])
            loss = model(**batch, pixel_values=seen["pixel_values"]).loss
            loss = loss + config.vision.recognition_weight * probe.loss(seen["targets"])
        else:
            loss = model(**batch).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimiser.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            mean = sum(losses[-log_every:]) / log_every
            progress.set_postfix(loss=f"{mean:.4f}")
            logger.info("pretrain step %d loss %.4f", step + 1, mean)
            if on_log is not None:
                on_log(step + 1, mean)
    if probe is not None:
        probe.remove()
    seconds = time.perf_counter() - start
    model.eval()
    out = Path(out)
    policy.save(out)
    weights = weights_sha256(out)
    scores = score_foundation(policy, config.family, n_episodes=eval_episodes)
    manifest = {
        "config": asdict(config),
        "corpus_sha256": corpus.sha256,
        "weights_sha256": weights,
        "command": command,
        "train_seconds": round(seconds, 1),
        "final_loss": sum(losses[-log_every:]) / min(log_every, len(losses)),
        "loss_curve": [
            round(sum(losses[i : i + log_every]) / len(losses[i : i + log_every]), 4)
            for i in range(0, len(losses), log_every)
        ],
        "torch": torch.__version__,
        "scores": scores,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return PretrainResult(out, losses, seconds, corpus.sha256, weights, scores)


VIRL_SCORE_ROUTES = 100
"""Routes per split for a V-IRL foundation's scores when no number is given."""

VL_SCORE_HANDS = 200
"""Hands per split for a GP-VL foundation's scores when no number is given (not every hand: a
VLM episode is about three times as long as a text one)."""


def score_foundation(
    policy: Any, family: str = "general_points", *, n_episodes: int | None = None
) -> dict[str, float]:
    """The base model's zero-shot success (greedy) on ID and rule OOD, with one try and with the
    paper's budget (GP-L: hand success with 1 and 5 tries, every hand when ``n_episodes`` is
    None; V-IRL-L: route success and per-step accuracy with 1 and 2 tries per point; GP-VL: hand
    success with 1 and 5 tries on ID, rule OOD and visual OOD, and card recognition with one try,
    as the paper's Fig. 8 measures it; V-IRL-VL: as V-IRL-L, plus the mini-benchmark, its visual
    OOD, and landmark recognition with one try).

    The base model never saw either rule, so these are its scores before post-training.
    """
    from sftvrl.eval import evaluate_task
    from sftvrl.train.generation import PolicyResponder, SamplingConfig

    if family not in FAMILIES:
        raise ValueError(f"no foundation scores for family {family!r}; use one of {FAMILIES}")
    gp = family in ("general_points", "general_points_vl")
    vision = family in VISION_FAMILIES
    task, budget, answer_tokens = {
        "general_points": ("gp-l", 5, 64),
        "general_points_vl": ("gp-vl", 5, 64),
        "virl": ("virl-l", 2, 128),
        "virl_vl": ("virl-vl", 2, 128),
    }[family]
    routes = n_episodes
    if routes is None and family != "general_points":
        routes = VL_SCORE_HANDS if gp else VIRL_SCORE_ROUTES
    options: dict[str, Any] = {"prompt": "compact"}
    if vision:
        options["image_size"] = policy.model.config.vision_config.image_size
    sampling = SamplingConfig(max_new_tokens=answer_tokens, temperature=0.0)
    responder = PolicyResponder(policy, sampling)
    scores: dict[str, float] = {}
    splits = ("id", "rule_ood") + ((("visual_ood",) if gp else ("mini",)) if vision else ())
    for split in splits:
        for tries in (1, budget):
            result = evaluate_task(
                responder, task, split, n_episodes=routes, verify_iter=tries, **options
            )
            if gp:
                scores[f"{split}_success_at_{tries}"] = result.success.value
                scores[f"{split}_n"] = result.success.n
            else:
                scores[f"{split}_route_success_at_{tries}"] = result.route_success.value
                scores[f"{split}_per_step_at_{tries}"] = result.per_step.value
                scores[f"{split}_n"] = result.route_success.n
            if vision and tries == 1:
                scores[f"{split}_recognition"] = result.recognition.value
    return scores


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a checkpoint's weight file(s), to check a shipped checkpoint is the one built."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {folder}")
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def foundation_info(name_or_path: str = "tiny-text-gp") -> dict[str, Any]:
    """The manifest of a foundation checkpoint (shipped name or folder), checked against its weights.

    Raises ``ValueError`` when the weights on disk are not the ones the manifest describes.
    """
    from sftvrl.models.loading import local_folder

    folder = local_folder(name_or_path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST} in {folder}; rebuild it with `sftvrl pretrain-tiny`"
        )
    manifest = json.loads(manifest_path.read_text())
    actual = weights_sha256(folder)
    if actual != manifest["weights_sha256"]:
        raise ValueError(
            f"the weights in {folder} (sha256 {actual[:12]}...) are not the ones its manifest "
            f"describes ({manifest['weights_sha256'][:12]}...); rebuild with `{manifest['command']}`"
        )
    return manifest

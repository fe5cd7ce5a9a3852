"""The GP-VL foundation: the GeneralPoints text foundation given eyes.

The paper's VLM already reads cards and does arithmetic before any post-training. Our tiny VLM
gets both the way LLaVA-style models are made: its language model *is* the text foundation
(``tiny-text-gp``, weights copied in), and a fresh vision tower and projector learn, on the GP-VL
form of the same foundation corpus, to turn the rendered hand into something the language model
reads. The corpus keeps the text foundation's discipline (never the study's J/Q/K rules), and the
shipped foundation is dealt in black suits only (``pretrain.corpus.suits=black``): red suits are
GP-VL's visual-OOD test and stay out of pretraining too. (Dealt in all four suits, the first
variant read red cards as well as black ones, so visual OOD was not out of distribution for it.)

The recognition probe is why this fits in minutes. Measured on this machine (2-core CPU, batch
32, 300 steps): with the language-model loss alone the answer's card tokens stayed at chance (the
tower must learn what to see while the language model learns where to look, and neither gets a
signal without the other); a linear probe on the tower's patch features alone learns every rank
in about 150 steps. Training with both losses, the answer's card tokens followed the probe within
about 300 steps. The probe is dropped after pretraining: the saved checkpoint is a plain Llava.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sftvrl.envs.general_points.render import render_hand
from sftvrl.envs.general_points.rules import RANKS


@dataclass
class VisionFoundationConfig:
    """How the tiny VLM foundation is made from a text foundation (``family=general_points_vl``)."""

    text_foundation: str = "tiny-text-gp"
    """Shipped name or folder of the text foundation whose language model the VLM inherits."""
    image_size: int = 112
    """The vision tower's input size; hands are rendered this wide, as the tiny study does."""
    vision_learning_rate: float = 2e-3
    """Peak learning rate of the fresh parts (tower, projector, probe); the inherited language
    model uses the pretraining ``learning_rate`` (same warm-up and cosine shape)."""
    recognition_weight: float = 1.0
    """Weight of the recognition probe's loss next to the language-model loss."""


def graft_vlm(config: VisionFoundationConfig, seed: int) -> Any:
    """A tiny Llava whose language model is ``config.text_foundation`` (vision parts fresh)."""
    from sftvrl.models import ModelConfig, load_policy
    from sftvrl.models.loading import Policy
    from sftvrl.models.tiny import TinyTextConfig, TinyVisionConfig, build_tiny_vlm

    text = load_policy(ModelConfig(name_or_path=config.text_foundation))
    if text.vision:
        raise ValueError(f"{config.text_foundation!r} is a VLM; graft_vlm needs a text foundation")
    sizes = TinyTextConfig.from_llama(text.model.config)
    vision = TinyVisionConfig(text=sizes, image_size=config.image_size)
    model, processor = build_tiny_vlm(text.tokenizer, vision, seed=seed)
    model.model.language_model.load_state_dict(text.model.model.state_dict())
    model.lm_head.load_state_dict(text.model.lm_head.state_dict())
    model_config = ModelConfig(name_or_path="tiny-vlm", seed=seed, tiny=vision)
    return Policy(model, text.tokenizer, processor, True, model_config, base="tiny-vlm")


def expand_image_token(
    ids: list[int], mask: list[int], image_token_id: int, count: int
) -> tuple[list[int], list[int]]:
    """Repeat the ``<image>`` placeholder ``count`` times (no loss on it), as the processor does."""
    out_ids: list[int] = []
    out_mask: list[int] = []
    for token, keep in zip(ids, mask, strict=True):
        if token == image_token_id:
            out_ids += [token] * count
            out_mask += [0] * count
        else:
            out_ids.append(token)
            out_mask.append(keep)
    return out_ids, out_mask


class RecognitionProbe(nn.Module):
    """A linear read-out of what each part of the image shows, from the tower's patch features.

    GP-VL: every card's rank (``n_slots`` cards, left to right, ``n_classes`` ranks); V-IRL-VL:
    each view's nearest sign category. It listens to the tower's output through a forward hook,
    so the model's own forward pass feeds it; :meth:`loss` is the cross-entropy over the slots.
    """

    def __init__(self, model: Any, n_slots: int = 4, n_classes: int = len(RANKS)) -> None:
        super().__init__()
        vision = model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        self.n_classes = n_classes
        self.read_out = nn.Linear(vision.hidden_size * patches, n_slots * n_classes)
        self._features: torch.Tensor | None = None
        self._hook = model.model.vision_tower.register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self._features = output.last_hidden_state[:, 1:]  # patches, without CLIP's CLS token

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the last forward pass's images against ``targets`` (batch x slots)."""
        if self._features is None:
            raise RuntimeError("run the model on images before asking for the probe's loss")
        logits = self.read_out(self._features.flatten(1)).view(-1, self.n_classes)
        self._features = None
        return nn.functional.cross_entropy(logits, targets.reshape(-1))

    def remove(self) -> None:
        """Detach from the model (the saved checkpoint carries no trace of the probe)."""
        self._hook.remove()


def hand_batch(cards: list[list[str]], processor: Any, image_size: int) -> dict[str, torch.Tensor]:
    """Pixel values of the rendered hands and their ranks (the probe's ``targets``)."""
    images = [render_hand(hand, width=image_size) for hand in cards]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    ranks = torch.tensor([[RANKS.index(card[1:]) for card in hand] for hand in cards])
    return {"pixel_values": pixels, "targets": ranks}


def fresh_parameters(model: Any) -> list[nn.Parameter]:
    """The parameters the graft did not inherit: vision tower and projector."""
    return [
        p
        for name, p in model.named_parameters()
        if not name.startswith(("model.language_model", "lm_head"))
    ]

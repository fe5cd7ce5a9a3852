"""Tiny random-init models for the CPU tier: a Llama text model and a Llava VLM.

They are real transformers architectures (the paper's backbone family: a Llama decoder, a vision
encoder feeding image tokens through a projector), only small, so every code path that serves a
hub model serves them too. Weights depend only on the config and the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from transformers import (
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from sftvrl.models.tokenizer import IMAGE_TOKEN

M = TypeVar("M", bound=PreTrainedModel)


@dataclass
class TinyTextConfig:
    """Sizes of the tiny Llama decoder (about 1M parameters with the defaults and 512 tokens)."""

    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True

    @classmethod
    def from_llama(cls, config: LlamaConfig) -> TinyTextConfig:
        """The sizes of an existing Llama (e.g. a pretrained foundation, to graft it into a VLM)."""
        names = [f for f in cls.__dataclass_fields__ if f != "rope_theta"]
        sizes = {name: getattr(config, name) for name in names}
        return cls(**sizes, rope_theta=config.rope_parameters["rope_theta"])

    def to_llama(self, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
        """The ``LlamaConfig`` for this size, with the tokenizer's vocabulary and special ids."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} must be divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_word_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )


@dataclass
class TinyVisionConfig:
    """Sizes of the tiny Llava: a CLIP vision encoder, a projector and a tiny Llama decoder.

    Images are resized to ``image_size`` square without cropping (a rendered hand is wider than
    tall; cropping would cut off the outer cards), giving ``(image_size // patch_size) ** 2``
    image tokens per image (49 with the defaults).
    """

    text: TinyTextConfig | None = None
    image_size: int = 112
    patch_size: int = 16
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 256
    vision_num_hidden_layers: int = 2
    vision_num_attention_heads: int = 4

    def __post_init__(self) -> None:
        if self.text is None:
            self.text = TinyTextConfig()
        elif isinstance(self.text, dict):  # from asdict() / a YAML config
            self.text = TinyTextConfig(**self.text)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )

    @property
    def image_tokens(self) -> int:
        """Image tokens per image in the language model's sequence."""
        return (self.image_size // self.patch_size) ** 2

    def to_llava(self, tokenizer: PreTrainedTokenizerBase) -> LlavaConfig:
        """The ``LlavaConfig`` for this size; ``<image>`` of the tokenizer is the image token."""
        assert self.text is not None
        vision = CLIPVisionConfig(
            hidden_size=self.vision_hidden_size,
            intermediate_size=self.vision_intermediate_size,
            num_hidden_layers=self.vision_num_hidden_layers,
            num_attention_heads=self.vision_num_attention_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            projection_dim=self.vision_hidden_size,
        )
        return LlavaConfig(
            vision_config=vision,
            text_config=self.text.to_llama(tokenizer),
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
            image_seq_length=self.image_tokens,
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            tie_word_embeddings=self.text.tie_word_embeddings,
        )


def _set_generation_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation stops at ``<|im_end|>`` and pads with ``<|pad|>`` without being told each call."""
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def _seeded_init(build: Callable[[], M], seed: int) -> M:
    """Run ``build()`` under ``seed`` without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_text_model(
    tokenizer: PreTrainedTokenizerBase, config: TinyTextConfig | None = None, seed: int = 0
) -> LlamaForCausalLM:
    """A random-init tiny Llama (float32, CPU); the same config and seed give the same weights."""
    llama = (config or TinyTextConfig()).to_llama(tokenizer)
    model = _seeded_init(lambda: LlamaForCausalLM(llama), seed)
    _set_generation_ids(model, tokenizer)
    return model.eval()


def build_processor(tokenizer: PreTrainedTokenizerBase, config: TinyVisionConfig) -> LlavaProcessor:
    """The Llava processor: torchvision-free CLIP image processing plus the tokenizer."""
    image_processor = CLIPImageProcessorPil(
        size={"height": config.image_size, "width": config.image_size},
        do_center_crop=False,
        crop_size={"height": config.image_size, "width": config.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
    )


def build_tiny_vlm(
    tokenizer: PreTrainedTokenizerBase, config: TinyVisionConfig | None = None, seed: int = 0
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A random-init tiny Llava and its processor; the same config and seed give the same weights."""
    config = config or TinyVisionConfig()
    llava = config.to_llava(tokenizer)
    model = _seeded_init(lambda: LlavaForConditionalGeneration(llava), seed)
    _set_generation_ids(model, tokenizer)
    return model.eval(), build_processor(tokenizer, config)

"""Models for every tier: tiny local models, a local tokenizer/processor, HF loading with LoRA/4-bit."""

from sftvrl.models.loading import (
    TINY_NAMES,
    TINY_TEXT,
    TINY_VLM,
    LoraSettings,
    ModelConfig,
    ModelLoadError,
    Policy,
    Qwen2VLImageOnlyProcessor,
    ensure_trainable_4bit,
    load_policy,
    resolve_device,
    resolve_dtype,
)
from sftvrl.models.tiny import (
    TinyTextConfig,
    TinyVisionConfig,
    build_processor,
    build_tiny_text_model,
    build_tiny_vlm,
)
from sftvrl.models.tokenizer import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    build_tokenizer,
    default_corpus,
    wrap_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "TINY_NAMES",
    "TINY_TEXT",
    "TINY_VLM",
    "LoraSettings",
    "ModelConfig",
    "ModelLoadError",
    "Policy",
    "Qwen2VLImageOnlyProcessor",
    "TinyTextConfig",
    "TinyVisionConfig",
    "build_processor",
    "build_tiny_text_model",
    "build_tiny_vlm",
    "build_tokenizer",
    "default_corpus",
    "ensure_trainable_4bit",
    "load_policy",
    "resolve_device",
    "resolve_dtype",
    "wrap_tokenizer",
]

"""One loader for every tier: a tiny model, a saved checkpoint or a hub model, with LoRA and 4-bit.

``load_policy(ModelConfig(...))`` returns a :class:`Policy`: the model (peft-wrapped when LoRA is
set), its tokenizer, its processor for VLMs, and ``chat_inputs`` that turns conversations (and
one image per conversation) into a left-padded batch on the model's device. ``Policy.save(path)``
writes what ``load_policy(ModelConfig(name_or_path=path))`` needs to get the same model back.

A saved LoRA policy keeps the standard peft layout (``adapter_config.json`` and the adapter
weights at the top of the folder, as TRL's checkpoints do). Its base is named in the adapter
config: a hub id or an absolute local path. A tiny model built in memory has no such name, so its
base weights go into ``base/`` inside the folder and the adapter config names ``base``.

4-bit on CPU: bitsandbytes repacks a ``Linear4bit`` weight into a CPU inference layout on its
first eval-mode, no-grad forward (``generate()``), and from then on no gradient flows through that
layer (STACK.md §6.4). Policies loaded here are protected (see :func:`ensure_trainable_4bit`);
call that function on any other 4-bit model before training it after inference.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    BatchEncoding,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
)
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.utils import is_torchvision_available

from sftvrl.models.tiny import (
    TinyTextConfig,
    TinyVisionConfig,
    build_tiny_text_model,
    build_tiny_vlm,
)
from sftvrl.models.tokenizer import build_tokenizer

logger = logging.getLogger(__name__)

TINY_TEXT = "tiny-text"
TINY_VLM = "tiny-vlm"
TINY_NAMES = (TINY_TEXT, TINY_VLM)
"""Random-init tiny models, built from a config (the architectures)."""
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "tiny"
SHIPPED_MODELS = {
    "tiny-text-gp": "tiny-text-gp",
    "tiny-text-virl": "tiny-text-virl",
    "tiny-vlm-gp": "tiny-vlm-gp",
    "tiny-vlm-virl": "tiny-vlm-virl",
}
"""Pretrained tiny foundation checkpoints shipped in ``data/tiny/`` (``sftvrl pretrain-tiny``)."""
ADAPTER_CONFIG = "adapter_config.json"
BASE_SUBDIR = "base"

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_QWEN2_VL_TYPES = ("qwen2_vl", "qwen2_5_vl")


class ModelLoadError(ValueError):
    """A model, checkpoint or setting that cannot be loaded; the message says what to do."""


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft ``LoraConfig``); ``"all-linear"`` targets every linear layer."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = "all-linear"

    def to_peft(self) -> Any:
        """The peft ``LoraConfig`` for a causal LM (text or vision-language)."""
        from peft import LoraConfig

        targets = self.target_modules
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets if isinstance(targets, str) else list(targets),
            task_type="CAUSAL_LM",
        )


@dataclass
class ModelConfig:
    """What to load and how. ``name_or_path``: ``"tiny-text"`` / ``"tiny-vlm"`` build random-init
    tiny models here; anything else is a local directory (a saved policy, a TRL checkpoint, any
    HF model) or a hub id (works offline only if it is in the local HF cache)."""

    name_or_path: str = TINY_TEXT
    vision: bool | None = None
    """None: infer from the checkpoint's config (a ``vision_config`` means a VLM)."""
    device: str = "auto"
    """"auto": cuda if available, else cpu."""
    dtype: str = "auto"
    """"auto": bfloat16 on cuda, float32 on cpu; or float32 / bfloat16 / float16."""
    lora: LoraSettings | None = None
    load_in_4bit: bool = False
    """bitsandbytes NF4 with compute dtype = ``dtype``; embeddings and the LM head stay unquantised."""
    seed: int = 0
    """Seed of the random init of tiny models."""
    trust_remote_code: bool = False
    tiny: TinyTextConfig | TinyVisionConfig | None = None
    """Sizes of the tiny model to build (default sizes if None); only for ``tiny-*`` names."""

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # from YAML / asdict()
            self.lora = LoraSettings(**self.lora)
        if isinstance(self.tiny, dict):
            is_vlm = self.name_or_path == TINY_VLM
            self.tiny = TinyVisionConfig(**self.tiny) if is_vlm else TinyTextConfig(**self.tiny)


@dataclass
class Policy:
    """A loaded model with everything needed to prompt it and to save it."""

    model: PreTrainedModel
    """peft-wrapped (``PeftModel``) when LoRA is set."""
    tokenizer: PreTrainedTokenizerBase
    processor: Any | None
    """Image processor + tokenizer for VLMs; None for text models."""
    vision: bool
    config: ModelConfig
    base: str = field(default="", repr=False)
    """Where the base weights come from: a tiny name (rebuilt from the seed), a local folder or a
    hub id. A saved LoRA policy names it as its base."""
    base_bundled: bool = field(default=False, repr=False)
    """Saving a LoRA policy stores the base in ``base/`` too (tiny bases, and bases that came so)."""

    @property
    def device(self) -> torch.device:
        """The device of the model's input embeddings, where inputs must go."""
        return self.model.get_input_embeddings().weight.device

    def render(
        self, conversation: list[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> str:
        """The chat-template text of one conversation, ending with the assistant cue by default."""
        renderer = self.processor if self.processor is not None else self.tokenizer
        return renderer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def chat_inputs(
        self,
        conversations: list[list[dict[str, Any]]],
        images: list[Image.Image] | list[np.ndarray] | None = None,
        *,
        add_generation_prompt: bool = True,
    ) -> BatchEncoding:
        """A left-padded batch of rendered conversations on the model's device.

        VLMs take one image (PIL, or a uint8 HxWx3 array) per conversation, referenced by a
        ``{"type": "image"}`` part in its first user message; pixel values come with the batch.
        ``add_generation_prompt=False`` renders finished conversations (e.g. to score them).
        """
        texts = [self.render(c, add_generation_prompt=add_generation_prompt) for c in conversations]
        if not self.vision:
            if images:
                raise ValueError("this is a text model; it takes no images")
            batch = self.tokenizer(
                texts,
                padding=True,
                padding_side="left",
                add_special_tokens=False,
                return_tensors="pt",
            )
            return batch.to(self.device)
        if images is None or len(images) != len(conversations):
            got = "no images" if images is None else f"{len(images)} images"
            raise ValueError(
                f"a VLM needs one image per conversation: {len(conversations)} conversations, {got}"
            )
        for i, conversation in enumerate(conversations):
            parts = _image_parts(conversation)
            if parts != 1:
                raise ValueError(
                    f"conversation {i} has {parts} image parts; put exactly one "
                    '{"type": "image"} part in its first user message'
                )
        rgb = [_as_rgb(image) for image in images]
        if _model_type(self.model) == "mllama":  # Mllama wants one list of images per sample
            image_arg: Any = [[image] for image in rgb]
        else:
            image_arg = rgb
        batch = self.processor(
            text=texts,
            images=image_arg,
            padding=True,
            padding_side="left",
            add_special_tokens=False,
            return_tensors="pt",
        )
        return batch.to(self.device)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save model (or adapter), tokenizer and processor so ``load_policy`` restores them."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if _is_peft(self.model):
            self._save_adapter(out)
        else:
            self.model.save_pretrained(out)
        (self.processor if self.processor is not None else self.tokenizer).save_pretrained(out)
        logger.info("saved policy to %s", out)

    def _save_adapter(self, out: Path) -> None:
        if not self.base:
            raise ValueError(
                "this LoRA policy does not know its base model; set Policy.base to the base's "
                "local path or hub id before saving"
            )
        peft_config = self.model.peft_config["default"]
        original = peft_config.base_model_name_or_path
        if self.base_bundled:
            self._save_bundled_base(out / BASE_SUBDIR)
            peft_config.base_model_name_or_path = str((out / BASE_SUBDIR).resolve())
        else:
            peft_config.base_model_name_or_path = self.base
        try:
            self.model.save_pretrained(out)
        finally:
            peft_config.base_model_name_or_path = original
        if self.base_bundled:  # name the bundled base relatively, so the folder can move
            adapter_config = json.loads((out / ADAPTER_CONFIG).read_text())
            adapter_config["base_model_name_or_path"] = BASE_SUBDIR
            (out / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2, sort_keys=True))

    def _save_bundled_base(self, target: Path) -> None:
        """The frozen base next to the adapter: rebuilt from the seed, or copied from its folder."""
        if self.base not in TINY_NAMES:
            if Path(self.base).resolve() != target.resolve():
                shutil.copytree(self.base, target, dirs_exist_ok=True)
            return
        tiny = replace(self.config, name_or_path=self.base)
        base_model, tokenizer, processor = _build_tiny(tiny, torch.device("cpu"), torch.float32)
        base_model.save_pretrained(target)
        (processor if processor is not None else tokenizer).save_pretrained(target)


def _as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """Environments give observations as uint8 arrays; processors want RGB PIL images."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image.convert("RGB")


def _image_parts(conversation: list[dict[str, Any]]) -> int:
    count = 0
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for part in content if part.get("type") == "image")
    return count


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _unwrap(model: Any) -> Any:
    return model.get_base_model() if _is_peft(model) else model


def _model_type(model: Any) -> str:
    return getattr(model.config, "model_type", "")


# -- settings --------------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> this process's cuda device if available, else cpu.

    Under torchrun / accelerate each process gets ``cuda:LOCAL_RANK``. Asking for CUDA where
    there is none is an error rather than a silent fall back to CPU.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} was requested but CUDA is not available here; use device='cpu' "
            "or device='auto'"
        )
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bfloat16 on cuda, float32 elsewhere (bf16 matmuls are slow on CPU)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


# -- loading -------------------------------------------------------------------------------------


def load_policy(config: ModelConfig) -> Policy:
    """Load (or build) the policy ``config`` describes; errors name the model and the fix."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    name = config.name_or_path
    if name in TINY_NAMES:
        policy = _tiny_policy(config, device, dtype)
    else:
        policy = _pretrained_policy(config, device, dtype)
    logger.info(
        "loaded %s (%s, %s, vision=%s, lora=%s, 4-bit=%s)",
        name,
        device,
        dtype,
        policy.vision,
        _is_peft(policy.model),
        getattr(_unwrap(policy.model), "is_loaded_in_4bit", False),
    )
    return policy


def _build_tiny(
    config: ModelConfig, device: torch.device, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Any | None]:
    tokenizer = build_tokenizer()
    if config.name_or_path == TINY_VLM:
        tiny = config.tiny if isinstance(config.tiny, TinyVisionConfig) else TinyVisionConfig()
        model, processor = build_tiny_vlm(tokenizer, tiny, seed=config.seed)
    else:
        tiny_text = config.tiny if isinstance(config.tiny, TinyTextConfig) else TinyTextConfig()
        model, processor = build_tiny_text_model(tokenizer, tiny_text, seed=config.seed), None
    _name(model, config.name_or_path)
    return model.to(device=device, dtype=dtype), tokenizer, processor


def _name(model: PreTrainedModel, name: str) -> None:
    """Record where a model came from; peft copies it into a saved adapter's base name."""
    model.config.name_or_path = name
    model.name_or_path = name


def _tiny_policy(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> Policy:
    vision = config.name_or_path == TINY_VLM
    if config.vision is not None and config.vision != vision:
        other = TINY_VLM if config.vision else TINY_TEXT
        raise ModelLoadError(
            f"{config.name_or_path!r} is a {'vision' if vision else 'text'} model but vision="
            f"{config.vision} was requested; use name_or_path={other!r}"
        )
    tiny = config.tiny
    if tiny is not None and isinstance(tiny, TinyVisionConfig) != vision:
        raise ModelLoadError(
            f"tiny={type(tiny).__name__} does not fit {config.name_or_path!r}; use "
            f"{'TinyVisionConfig' if vision else 'TinyTextConfig'}"
        )
    model, tokenizer, processor = _build_tiny(config, device, dtype)
    if config.load_in_4bit:  # quantisation happens at load time, so go through a checkpoint
        with tempfile.TemporaryDirectory(prefix="sftvrl-tiny-") as tmp:
            model.save_pretrained(tmp)
            model = _from_pretrained(tmp, vision, config, device, dtype)
        _name(model, config.name_or_path)
    model = _finish(model, config, device)
    return Policy(
        model, tokenizer, processor, vision, config, base=config.name_or_path, base_bundled=True
    )


def _pretrained_policy(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> Policy:
    source = _resolve_source(config.name_or_path)
    adapter_dir = Path(source) / ADAPTER_CONFIG if _is_local(source) else None
    if adapter_dir is not None and adapter_dir.is_file():
        return _adapter_policy(Path(source), config, device, dtype)
    model_config = _load_config(source, config)
    vision = _infer_vision(model_config, config)
    model = _from_pretrained(source, vision, config, device, dtype)
    tokenizer, processor = _load_processing(source, vision, model_config, config)
    _align_special_ids(model, tokenizer)
    model = _finish(model, config, device)
    return Policy(model, tokenizer, processor, vision, config, base=source)


def _adapter_policy(
    folder: Path, config: ModelConfig, device: torch.device, dtype: torch.dtype
) -> Policy:
    """A saved LoRA policy or TRL checkpoint: load its base, then the adapter (trainable)."""
    from peft import PeftModel, prepare_model_for_kbit_training

    adapter_config = json.loads((folder / ADAPTER_CONFIG).read_text())
    base_ref = adapter_config.get("base_model_name_or_path") or ""
    if not base_ref:
        raise ModelLoadError(
            f"the adapter in {folder} does not name its base model (base_model_name_or_path in "
            f"{ADAPTER_CONFIG}); set it to the base model's local path or hub id"
        )
    bundled = base_ref == BASE_SUBDIR and (folder / BASE_SUBDIR).is_dir()
    if config.lora is not None:
        logger.warning("%s holds a LoRA adapter; using it and ignoring config.lora", folder)
    base = load_policy(
        replace(config, name_or_path=str(folder / BASE_SUBDIR) if bundled else base_ref, lora=None)
    )
    model = base.model
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        if getattr(model, "is_loaded_in_4bit", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    if _has_tokenizer(folder):  # the tokenizer saved with the adapter wins over the base's
        model_config = base.model.config if base.vision else None
        tokenizer, processor = _load_processing(str(folder), base.vision, model_config, config)
    else:
        tokenizer, processor = base.tokenizer, base.processor
    return Policy(
        model.eval(),
        tokenizer,
        processor,
        base.vision,
        config,
        base=base.base,
        base_bundled=bundled or base.base_bundled,
    )


def _is_local(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else can only be a local path."""
    return (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.endswith("/")
        or os.path.isabs(name)
    )


def local_folder(name_or_path: str) -> Path:
    """Where a model lives on disk: a shipped tiny checkpoint's folder, or the path as given."""
    if name_or_path in SHIPPED_MODELS:
        return SHIPPED_DIR / SHIPPED_MODELS[name_or_path]
    return Path(name_or_path).expanduser()


def _resolve_source(name: str) -> str:
    """An existing local directory (absolute) or a hub id; a missing path is an error."""
    if not name:
        raise ModelLoadError("ModelConfig.name_or_path is empty; name a model or a local folder")
    if name in SHIPPED_MODELS:
        shipped = local_folder(name)
        if not shipped.is_dir():
            raise ModelLoadError(
                f"the shipped tiny checkpoint {name!r} is missing ({shipped}); it lives in the "
                "repository's data/tiny/ folder: use a repository checkout, or rebuild it with "
                "`sftvrl pretrain-tiny`"
            )
        return str(shipped)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ModelLoadError(f"{name!r} is a file; pass the folder that holds the checkpoint")
    if _looks_like_path(name):
        raise ModelLoadError(
            f"no model folder at {name!r} (resolved to {path.resolve()}); check the path, or use "
            f"{TINY_TEXT!r} / {TINY_VLM!r} for the built-in tiny models"
        )
    return name


def _hub_error(source: str, err: Exception) -> ModelLoadError:
    if _is_local(source):
        return ModelLoadError(f"cannot load the checkpoint in {source}: {err}")
    return ModelLoadError(
        f"cannot load {source!r}: it is not a local folder, and it could not be fetched from the "
        "Hugging Face Hub (offline here, or unknown id). Download it on a machine with network "
        f"(`hf download {source} --local-dir <folder>`) and pass the folder, or use "
        f"{TINY_TEXT!r} / {TINY_VLM!r} for the built-in tiny models"
    )


def _load_config(source: str, config: ModelConfig) -> Any:
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise _hub_error(source, err) from err


def _infer_vision(model_config: Any, config: ModelConfig) -> bool:
    has_vision = getattr(model_config, "vision_config", None) is not None
    if config.vision is None:
        return has_vision
    if config.vision and not has_vision:
        raise ModelLoadError(
            f"{config.name_or_path!r} ({model_config.model_type}) has no vision encoder, but "
            "vision=True was requested; use a vision-language model or vision=None"
        )
    return config.vision


def _quantization(config: ModelConfig, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    if not config.load_in_4bit:
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:  # pragma: no cover - bitsandbytes is a pinned dependency
        raise ModelLoadError(
            "load_in_4bit=True needs bitsandbytes; install it or set load_in_4bit=False"
        ) from err
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )


def _from_pretrained(
    source: str, vision: bool, config: ModelConfig, device: torch.device, dtype: torch.dtype
) -> PreTrainedModel:
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "device_map": {"": device},
        "trust_remote_code": config.trust_remote_code,
    }
    quantization = _quantization(config, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    try:
        return auto.from_pretrained(source, **kwargs)
    except (OSError, KeyError) as err:
        raise _hub_error(source, err) from err
    except ValueError as err:
        kind = "image-text-to-text" if vision else "causal-LM"
        raise ModelLoadError(
            f"cannot load {source!r} as a {kind} model: {err}. Set vision= to match the model"
        ) from err


def _has_tokenizer(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    return any((folder / name).is_file() for name in names)


def _load_processing(
    source: str, vision: bool, model_config: Any, config: ModelConfig
) -> tuple[PreTrainedTokenizerBase, Any | None]:
    """Tokenizer and (for VLMs) processor, with the torchvision-free fallbacks of STACK.md §7.3."""
    remote = config.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=remote)
    except (OSError, ValueError) as err:
        raise _hub_error(source, err) from err
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not vision:
        return tokenizer, None
    return tokenizer, _load_processor(source, tokenizer, model_config, remote)


def _load_processor(
    source: str, tokenizer: PreTrainedTokenizerBase, model_config: Any, remote: bool
) -> ProcessorMixin:
    backend = {} if is_torchvision_available() else {"backend": "pil"}
    processor: Any = None
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=remote)
    except (AttributeError, ImportError, OSError, TypeError, ValueError) as err:
        logger.info("AutoProcessor failed for %s (%s); building the processor by hand", source, err)
    if isinstance(processor, ProcessorMixin) and hasattr(processor, "image_processor"):
        processor.tokenizer = tokenizer
        return processor
    # AutoProcessor returned only a tokenizer, or needed torchvision for a video processor.
    model_type = getattr(model_config, "model_type", None)
    try:
        image_processor = AutoImageProcessor.from_pretrained(
            source, trust_remote_code=remote, **backend
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load the image processor of {source!r}: {err}") from err
    if model_type in _QWEN2_VL_TYPES:
        return Qwen2VLImageOnlyProcessor(
            image_processor, tokenizer, chat_template=tokenizer.chat_template
        )
    raise ModelLoadError(
        f"cannot build a processor for {source!r} (model type {model_type!r}) without "
        "torchvision; save the processor with the checkpoint (processor_config.json)"
    )


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL / Qwen2.5-VL processor for images only: its video processor needs torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # type: ignore[no-untyped-def]
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def _align_special_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation pads with the tokenizer's pad token; a missing eos comes from the tokenizer."""
    generation = model.generation_config
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id


def _finish(model: PreTrainedModel, config: ModelConfig, device: torch.device) -> PreTrainedModel:
    """4-bit protection and LoRA wrapping, the same for every source."""
    if device.type == "cpu":  # a no-op without 4-bit layers (a checkpoint may be saved in 4-bit)
        ensure_trainable_4bit(model, prevent_repacking=True)
    if config.lora is None:
        return model.eval()
    from peft import get_peft_model, prepare_model_for_kbit_training

    with warnings.catch_warnings():  # peft asks transformers for a renamed attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        if getattr(model, "is_loaded_in_4bit", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, config.lora.to_peft())
    return model.eval()


# -- 4-bit on CPU --------------------------------------------------------------------------------


def ensure_trainable_4bit(model: torch.nn.Module, *, prevent_repacking: bool = True) -> int:
    """Undo bitsandbytes' CPU inference packing of 4-bit weights so gradients flow again.

    On CPUs with AVX512-BF16, an eval-mode no-grad forward (``generate()``) repacks each
    ``Linear4bit`` weight for a fast kernel that has no backward: LoRA adapters upstream then get
    no gradient, silently (STACK.md §6.4). This unpacks such weights with bitsandbytes' own
    inverse, puts the block scales back in their layout (the inverse leaves them transposed
    unless double quantisation was on), and, with ``prevent_repacking``, turns the fast path off
    so later ``generate()`` calls keep the trainable layout. Returns the number of layers unpacked.

    Packing rounds the block scales to bfloat16, so an unpacked layer computes what the packed
    kernel computed, not bit for bit what it did before packing; ``load_policy`` therefore turns
    packing off before the first forward, which keeps 4-bit CPU policies exact.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # pragma: no cover - bitsandbytes is a pinned dependency
        return 0
    unpacked = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        if prevent_repacking:
            module.support_avx512bf16_for_cpu = False
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is None or not getattr(state, "packing_format_for_cpu", False):
            continue
        weight.data, state = _unpack_cpu_4bit(weight.data, state)
        weight.quant_state = state
        if getattr(module, "quant_state", None) is not None:
            module.quant_state = state
        unpacked += 1
    if unpacked:
        logger.info("unpacked %d 4-bit layers from the CPU inference layout", unpacked)
    return unpacked


def _unpack_cpu_4bit(data: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError as err:  # pragma: no cover - depends on the bitsandbytes version
        raise RuntimeError(
            "this bitsandbytes has no inverse of its CPU 4-bit packing; reload the 4-bit model "
            "before training it, or keep it in train() mode while generating"
        ) from err
    nested = bool(getattr(state, "original_nested", False))
    data, state = _convert_weight_packed_for_cpu_inverse(data, state)
    if not nested and state.absmax.dim() == 2:  # [K / blocksize, N] -> flat, row-major [N, K]
        state.absmax = state.absmax.T.reshape(-1).to(torch.float32).contiguous()
    return data, state

"""sftvrl.models: local tokenizer and chat template, tiny models, load_policy, LoRA, 4-bit on CPU."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

os.environ.setdefault(
    "HF_HUB_OFFLINE", "1"
)  # before transformers reads it; the Makefile sets it too

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import trl
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
from transformers.models.mllama.processing_mllama import MllamaProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

from sftvrl.envs.general_points import render_hand
from sftvrl.models import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    LoraSettings,
    ModelConfig,
    ModelLoadError,
    Policy,
    Qwen2VLImageOnlyProcessor,
    TinyTextConfig,
    TinyVisionConfig,
    build_tiny_text_model,
    build_tiny_vlm,
    build_tokenizer,
    ensure_trainable_4bit,
    load_policy,
    resolve_device,
    resolve_dtype,
    wrap_tokenizer,
)

TEXT_CHATS = [
    [{"role": "user", "content": "Cards: 10 K 3 A. Make 24."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
]
VISION_CHATS = [
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which cards?"}]}],
    [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Cards and 24?"}]},
    ],
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def text_policy() -> Policy:
    return load_policy(ModelConfig(name_or_path="tiny-text"))


@pytest.fixture(scope="module")
def vlm_policy() -> Policy:
    return load_policy(ModelConfig(name_or_path="tiny-vlm"))


@pytest.fixture(scope="module")
def hand_images():
    return [render_hand(["SA", "H10", "DK", "C5"]), render_hand(["S2", "C3", "SJ", "CQ"])]


def _logits(policy: Policy, chats, images=None) -> torch.Tensor:
    with torch.no_grad():
        return policy.model(**policy.chat_inputs(chats, images)).logits


def _randomise_lora(policy: Policy, seed: int = 1) -> None:
    """LoRA B starts at zero (the adapter is a no-op); give it weights so round trips mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


# -- tokenizer and chat template ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_any_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_tokenizer_round_trips_prompts_and_unicode(tokenizer):
    for text in [
        "(10+2)*2=24",
        "你好 ünïcödé ♠♥♦♣ 🂡",
        "  two  spaces\n\ttab",
        "{\"cards\": ['K']}",
    ]:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_specials_padding_and_determinism(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"
    assert len(tokenizer) == 512
    assert tokenizer.encode(IMAGE_TOKEN, add_special_tokens=False) == [4]
    again = build_tokenizer()
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    small = build_tokenizer(["a tiny corpus"], vocab_size=300)
    assert len(small) < 300
    assert small.decode(small.encode("unseen text ✓")) == "unseen text ✓"
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(vocab_size=100)
    bare = Tokenizer(models.BPE())
    with pytest.raises(ValueError, match="lacks the special tokens"):
        wrap_tokenizer(bare)


def test_chat_template_renders_text_images_and_generation_prompt(tokenizer):
    chat = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Cards?"}]},
        {"role": "assistant", "content": '{"formula": "1+2"}'},
        {"role": "user", "content": "You failed this trial because x."},
    ]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nsys<|im_end|>\n"
        "<|im_start|>user\n<image>Cards?<|im_end|>\n"
        '<|im_start|>assistant\n{"formula": "1+2"}<|im_end|>\n'
        "<|im_start|>user\nYou failed this trial because x.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(chat, tokenize=False)
    assert text == without + "<|im_start|>assistant\n"


def test_assistant_only_mask_covers_answers_and_their_end_token(tokenizer):
    chat = [
        {"role": "user", "content": "Cards: A 2 3 4"},
        {"role": "assistant", "content": "first try"},
        {"role": "user", "content": "You failed this trial because no."},
        {"role": "assistant", "content": "(1+2+3)*4=24"},
    ]
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(masked) == "first try<|im_end|>(1+2+3)*4=24<|im_end|>"
    # TRL's own checks for assistant_only_loss=True
    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)


# -- tiny models ---------------------------------------------------------------------------------


def test_tiny_text_model_generates_a_left_padded_batch(text_policy):
    batch = text_policy.chat_inputs(TEXT_CHATS)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 2
    pad = text_policy.tokenizer.pad_token_id
    lengths = attention.sum(1)
    shorter = int(lengths.argmin())
    n_pad = ids.shape[1] - int(lengths[shorter])
    assert n_pad > 0
    assert (ids[shorter, :n_pad] == pad).all() and (attention[shorter, :n_pad] == 0).all()
    assert (attention[:, -1] == 1).all()  # every row ends with the assistant cue
    cue = text_policy.tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert ids[:, -len(cue) :].tolist() == [cue, cue]
    out = text_policy.model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert out.shape[0] == 2 and ids.shape[1] < out.shape[1] <= ids.shape[1] + 8
    assert text_policy.model.generation_config.eos_token_id == text_policy.tokenizer.eos_token_id
    assert text_policy.model.generation_config.pad_token_id == pad


def test_tiny_vlm_forward_and_generate_on_card_images(vlm_policy, hand_images):
    batch = vlm_policy.chat_inputs(VISION_CHATS, hand_images)
    assert batch["pixel_values"].shape == (2, 3, 112, 112)
    image_id = vlm_policy.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert (batch["input_ids"] == image_id).sum(1).tolist() == [49, 49]
    assert (batch["attention_mask"][:, -1] == 1).all()
    with torch.no_grad():
        logits = vlm_policy.model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(vlm_policy.tokenizer))
    assert torch.isfinite(logits).all()
    out = vlm_policy.model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > batch["input_ids"].shape[1]


def test_vlm_image_changes_the_output_and_arrays_work(vlm_policy, hand_images):
    a = _logits(vlm_policy, VISION_CHATS[:1], hand_images[:1])
    b = _logits(vlm_policy, VISION_CHATS[:1], hand_images[1:])
    assert not torch.allclose(a, b)
    as_array = _logits(vlm_policy, VISION_CHATS[:1], [np.asarray(hand_images[0])])
    assert torch.equal(a, as_array)  # env observations are uint8 arrays


def test_chat_inputs_rejects_mismatched_images(text_policy, vlm_policy, hand_images):
    with pytest.raises(ValueError, match="text model"):
        text_policy.chat_inputs(TEXT_CHATS, hand_images)
    with pytest.raises(ValueError, match="one image per conversation"):
        vlm_policy.chat_inputs(VISION_CHATS, hand_images[:1])
    with pytest.raises(ValueError, match="0 image parts"):
        vlm_policy.chat_inputs(TEXT_CHATS, hand_images)


def test_same_seed_same_weights_and_global_rng_untouched(tokenizer):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_text_model(tokenizer, TinyTextConfig(hidden_size=64, num_hidden_layers=2), 7)
    assert torch.equal(torch.rand(3), expected)  # building did not consume the caller's RNG
    b = build_tiny_text_model(tokenizer, TinyTextConfig(hidden_size=64, num_hidden_layers=2), 7)
    c = build_tiny_text_model(tokenizer, TinyTextConfig(hidden_size=64, num_hidden_layers=2), 8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    v1, _ = build_tiny_vlm(tokenizer, TinyVisionConfig(), 3)
    v2, _ = build_tiny_vlm(tokenizer, TinyVisionConfig(), 3)
    s1, s2 = v1.state_dict(), v2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_tiny_configs_validate_and_size(tokenizer):
    model = build_tiny_text_model(tokenizer)
    assert 0.5e6 < model.num_parameters() < 2e6
    assert TinyVisionConfig().image_tokens == 49
    assert TinyVisionConfig(text={"hidden_size": 64}).text == TinyTextConfig(hidden_size=64)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TinyVisionConfig(image_size=100)
    with pytest.raises(ValueError, match="divisible"):
        TinyTextConfig(hidden_size=100, num_attention_heads=3).to_llama(tokenizer)
    policy = load_policy(ModelConfig(tiny={"hidden_size": 64, "num_hidden_layers": 2}))
    assert policy.model.config.hidden_size == 64 and policy.model.config.num_hidden_layers == 2


# -- save / load ---------------------------------------------------------------------------------


def test_text_save_load_round_trip(text_policy, tmp_path):
    text_policy.save(tmp_path)
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path)))
    assert not loaded.vision and loaded.processor is None
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.chat_template == text_policy.tokenizer.chat_template
    assert torch.equal(_logits(text_policy, TEXT_CHATS), _logits(loaded, TEXT_CHATS))


def test_vlm_save_load_round_trip(vlm_policy, hand_images, tmp_path):
    vlm_policy.save(tmp_path)
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path)))  # vision inferred
    assert loaded.vision and type(loaded.processor).__name__ == "LlavaProcessor"
    assert type(loaded.processor.image_processor).__name__ == "CLIPImageProcessorPil"
    expected = _logits(vlm_policy, VISION_CHATS, hand_images)
    assert torch.equal(expected, _logits(loaded, VISION_CHATS, hand_images))


def test_lora_trains_only_adapters_and_round_trips(tmp_path):
    policy = load_policy(ModelConfig(lora=LoraSettings(r=4, alpha=8)))
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    targeted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= targeted
    _randomise_lora(policy)
    expected = _logits(policy, TEXT_CHATS)
    policy.save(tmp_path)
    adapter_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "base"  # bundled: the folder can move
    moved = tmp_path.parent / "moved"
    tmp_path.rename(moved)
    loaded = load_policy(ModelConfig(name_or_path=str(moved)))
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"
    assert any(p.requires_grad for n, p in loaded.model.named_parameters() if "lora_" in n)
    assert torch.equal(expected, _logits(loaded, TEXT_CHATS))
    loaded.save(tmp_path / "again")  # a reloaded bundled policy saves self-contained again
    again = load_policy(ModelConfig(name_or_path=str(tmp_path / "again")))
    assert torch.equal(expected, _logits(again, TEXT_CHATS))


def test_lora_on_a_local_checkpoint_names_its_base(text_policy, tmp_path):
    text_policy.save(tmp_path / "base-model")
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "base-model"), lora={"r": 2}))
    assert policy.config.lora == LoraSettings(r=2)
    _randomise_lora(policy)
    policy.save(tmp_path / "adapter")
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str((tmp_path / "base-model").resolve())
    assert not (tmp_path / "adapter" / "base").exists()
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path / "adapter")))
    assert torch.equal(_logits(policy, TEXT_CHATS), _logits(loaded, TEXT_CHATS))


def test_vlm_lora_with_selected_modules_round_trips(hand_images, tmp_path):
    policy = load_policy(
        ModelConfig(name_or_path="tiny-vlm", lora=LoraSettings(r=2, target_modules=("q_proj",)))
    )
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("q_proj.lora_" in n for n in trainable)
    batch = policy.chat_inputs(VISION_CHATS, hand_images)
    assert policy.model.generate(**batch, max_new_tokens=3).shape[0] == 2
    _randomise_lora(policy)
    policy.save(tmp_path)
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path)))
    assert loaded.vision and type(loaded.processor).__name__ == "LlavaProcessor"
    expected = _logits(policy, VISION_CHATS, hand_images)
    assert torch.equal(expected, _logits(loaded, VISION_CHATS, hand_images))


# -- 4-bit on CPU ----------------------------------------------------------------------------------


def _q_proj_lora_grad(policy: Policy, batch) -> torch.Tensor | None:
    """Gradient of one q_proj LoRA A; with LoRA on q_proj only, it flows only through 4-bit o_proj."""
    policy.model.zero_grad()
    policy.model.train()
    try:
        policy.model(**batch, labels=batch["input_ids"]).loss.backward()
    finally:
        policy.model.eval()
    param = dict(policy.model.named_parameters())[
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    ]
    return None if param.grad is None else param.grad.clone()


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_4bit_lora_on_cpu_keeps_gradients_after_generate():
    from bitsandbytes.functional import has_avx512bf16
    from bitsandbytes.nn import Linear4bit

    lora = LoraSettings(r=4, dropout=0.0, target_modules=("q_proj",))
    policy = load_policy(ModelConfig(load_in_4bit=True, lora=lora))
    layers = [m for m in policy.model.modules() if isinstance(m, Linear4bit)]
    assert layers  # q/k/v/o and MLP projections are NF4; embeddings and head are not
    _randomise_lora(policy)
    batch = policy.chat_inputs(TEXT_CHATS)
    reference = _q_proj_lora_grad(policy, batch)
    assert reference is not None and reference.abs().sum() > 0

    policy.model.generate(**batch, max_new_tokens=4)  # protected by load_policy: nothing repacks
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert torch.allclose(_q_proj_lora_grad(policy, batch), reference)

    repacks = has_avx512bf16() and policy.device.type == "cpu"
    for module in layers:  # what a model loaded elsewhere does (STACK.md §6.4)
        module.support_avx512bf16_for_cpu = has_avx512bf16()
    policy.model.generate(**batch, max_new_tokens=4)
    packed = sum(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    if repacks:
        assert packed == len(layers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bitsandbytes: gemv_4bit has no autograd kernel
            broken = _q_proj_lora_grad(policy, batch)
        assert broken is None or _relative_error(broken, reference) > 0.5
    assert ensure_trainable_4bit(policy.model) == packed
    restored = _q_proj_lora_grad(policy, batch)
    # packing rounds the block scales to bf16, so the restored layers are close, not identical
    assert restored is not None and _relative_error(restored, reference) < 0.05
    policy.model.generate(**batch, max_new_tokens=4)  # no repacking after the fix
    assert ensure_trainable_4bit(policy.model) == 0
    for module in layers:  # prevent_repacking=False unpacks but leaves the fast path on
        module.support_avx512bf16_for_cpu = has_avx512bf16()
    policy.model.generate(**batch, max_new_tokens=2)
    assert ensure_trainable_4bit(policy.model, prevent_repacking=False) == packed
    policy.model.generate(**batch, max_new_tokens=2)
    assert ensure_trainable_4bit(policy.model) == packed


def test_4bit_lora_save_load_round_trip(tmp_path):
    policy = load_policy(ModelConfig(load_in_4bit=True, lora=LoraSettings(r=4)))
    _randomise_lora(policy)
    expected = _logits(policy, TEXT_CHATS)
    policy.save(tmp_path)
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path), load_in_4bit=True))
    assert getattr(loaded.model.get_base_model(), "is_loaded_in_4bit", False)
    assert torch.equal(expected, _logits(loaded, TEXT_CHATS))


def test_ensure_trainable_4bit_is_a_no_op_without_4bit_layers(text_policy):
    assert ensure_trainable_4bit(text_policy.model) == 0


# -- a hub-style local VLM (Qwen2-VL) through the same loader ---------------------------------------


def _save_tiny_qwen2_vl(folder: Path) -> None:
    tokenizer = build_tokenizer(["Cards: A 2 3 4. Make 24."], vocab_size=300)
    vision_tokens = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer.add_tokens(vision_tokens, special_tokens=True)
    template = Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja"
    tokenizer.chat_template = template.read_text()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in vision_tokens}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
    }
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": 14}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 12544})
    Qwen2VLImageOnlyProcessor(
        image_processor, tokenizer, chat_template=template.read_text()
    ).save_pretrained(folder)


def test_local_qwen2_vl_loads_with_an_image_only_processor(tmp_path, hand_images):
    _save_tiny_qwen2_vl(tmp_path / "qwen")
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "qwen")))
    assert policy.vision and isinstance(policy.processor, Qwen2VLImageOnlyProcessor)
    assert type(policy.processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert "<|vision_start|><|image_pad|><|vision_end|>" in policy.render(VISION_CHATS[0])
    batch = policy.chat_inputs(VISION_CHATS, hand_images)
    assert "image_grid_thw" in batch
    out = policy.model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]
    policy.save(tmp_path / "saved")
    loaded = load_policy(ModelConfig(name_or_path=str(tmp_path / "saved")))
    assert torch.equal(
        _logits(policy, VISION_CHATS, hand_images), _logits(loaded, VISION_CHATS, hand_images)
    )


# -- errors and settings ---------------------------------------------------------------------------


def test_missing_path_and_unknown_hub_id_give_model_load_error(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="no model folder") as err:
        load_policy(ModelConfig(name_or_path=str(tmp_path / "nope")))
    assert str(tmp_path / "nope") in str(err.value)
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_policy(ModelConfig(name_or_path="./runs/does-not-exist"))
    with pytest.raises(ModelLoadError) as err:
        load_policy(ModelConfig(name_or_path="sftvrl-test/no-such-model"))
    message = str(err.value)
    assert "'sftvrl-test/no-such-model'" in message and "hf download" in message
    assert "local path" in message or "pass the folder" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load the checkpoint"):
        load_policy(ModelConfig(name_or_path=str(tmp_path / "empty")))
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_policy(ModelConfig(name_or_path=str(tmp_path / "file.bin")))
    assert issubclass(ModelLoadError, ValueError)


def test_bad_settings_give_model_load_error(text_policy, tmp_path):
    with pytest.raises(ModelLoadError, match="tiny-vlm"):
        load_policy(ModelConfig(name_or_path="tiny-text", vision=True))
    with pytest.raises(ModelLoadError, match="TinyTextConfig"):
        load_policy(ModelConfig(name_or_path="tiny-text", tiny=TinyVisionConfig()))
    text_policy.save(tmp_path)
    with pytest.raises(ModelLoadError, match="no vision encoder"):
        load_policy(ModelConfig(name_or_path=str(tmp_path), vision=True))
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda")


def test_device_and_dtype_defaults():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    policy = load_policy(ModelConfig(dtype="bfloat16", tiny={"hidden_size": 64}))
    assert policy.model.dtype == torch.bfloat16
    assert policy.device.type == device.type


def _save_tiny_mllama(folder: Path) -> None:
    """The paper's backbone architecture (Llama-3.2-Vision), tiny: one tile, one cross-attn layer."""
    tokenizer = build_tokenizer(["Cards: A 2 3 4. Make 24."], vocab_size=300)
    tokenizer.add_tokens(["<|image|>", "<|python_tag|>"], special_tokens=True)
    tokenizer.bos_token = "<|endoftext|>"
    template = "{{- bos_token -}}" + CHAT_TEMPLATE.replace("'<image>'", "'<|image|>'")
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_global_layers": 1,
        "attention_heads": 2,
        "intermediate_size": 64,
        "vision_output_dim": 64,
        "image_size": 64,
        "patch_size": 16,
        "max_num_tiles": 1,
        "supported_aspect_ratios": [[1, 1]],
        "intermediate_layers_indices": [0],
    }
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "cross_attention_layers": [1],
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = MllamaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    torch.manual_seed(0)
    MllamaForConditionalGeneration(config).save_pretrained(folder)
    image_processor = MllamaImageProcessorPil(size={"height": 64, "width": 64}, max_image_tiles=1)
    MllamaProcessor(image_processor, tokenizer, chat_template=template).save_pretrained(folder)


def test_local_mllama_loads_and_takes_nested_images(tmp_path, hand_images):
    _save_tiny_mllama(tmp_path / "mllama")
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "mllama"), lora=LoraSettings(r=2)))
    assert policy.vision and type(policy.processor).__name__ == "MllamaProcessor"
    batch = policy.chat_inputs(VISION_CHATS, hand_images)  # images go in as [[img], [img]]
    assert batch["pixel_values"].shape[:3] == (2, 1, 1) and "cross_attention_mask" in batch
    out = policy.model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > batch["input_ids"].shape[1]

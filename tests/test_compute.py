"""FLOPs accounting: the paper's formulas, the official counter, parameter counts, the tracker."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sftvrl.compute import (
    GFLOP,
    MLLAMA_VISION_TOKENS,
    PAPER_N_PARAMS,
    ComputeTracker,
    count_parameters,
    count_tokens,
    generation_flops,
    paper_buffer_lambda,
    paper_rl_flops,
    ppo_update_flops,
    sft_flops,
    training_flops,
)
from sftvrl.envs.general_points import Rules, deal, expert_formula
from sftvrl.prompts.general_points import response_text, task_prompt

N = 1_000_000


def test_kaplan_formulas():
    assert training_flops(N, 100) == 6 * N * 100
    assert generation_flops(N, 100) == 2 * N * 100
    assert sft_flops(N, 100) == 6 * N * 100
    assert sft_flops(N, 100, init_tokens=50) == 6 * N * 150  # X_SFT = 6N(D_init + D_SFT)
    assert ppo_update_flops(N, 1000) == 6 * N * 4 * 1000  # 4 epochs over the buffer
    assert ppo_update_flops(N, 1000, epochs=1) == training_flops(N, 1000)
    with pytest.raises(ValueError, match="non-negative"):
        training_flops(N, -1)
    with pytest.raises(ValueError, match="epochs"):
        ppo_update_flops(N, 10, epochs=0)


def test_paper_rl_formula_and_lambdas():
    # X_RL = 6N(D_init + D_RL) + 2N·λ·D_RL, λ = 6 (GP) and 5.1 (V-IRL)
    assert paper_buffer_lambda("gp-l") == paper_buffer_lambda("GP-VL") == 6.0
    assert paper_buffer_lambda("virl-l") == paper_buffer_lambda("V-IRL-VL") == 5.1
    with pytest.raises(ValueError, match="buffer_lambda explicitly"):
        paper_buffer_lambda("alfworld")
    x = paper_rl_flops(N, 1000, buffer_lambda=6.0, init_tokens=500)
    assert x == 6 * N * 1500 + 2 * N * 6 * 1000
    # for GeneralPoints generation costs twice the RL training (2λ = 12 vs 6); V-IRL 1.7 times
    gp_gen = paper_rl_flops(N, 1000, buffer_lambda=6.0) - training_flops(N, 1000)
    virl_gen = paper_rl_flops(N, 1000, buffer_lambda=5.1) - training_flops(N, 1000)
    assert gp_gen == 2 * training_flops(N, 1000)
    assert virl_gen == pytest.approx(1.7 * training_flops(N, 1000))


def _official_token_cnt(transitions: list[tuple[int, int, bool]], ppo_epoch: int) -> int:
    """The official counter as PAPER.md §3.5 describes it: prompt length per generation call,
    6·(prompt + response) per PPO forward/backward, 6·1600 more with pixel values."""
    token_cnt = 0
    for prompt, _response, _image in transitions:  # rollout: one generate call each
        token_cnt += prompt
    for _ in range(ppo_epoch):
        for prompt, response, image in transitions:
            token_cnt += 6 * (prompt + response + (1600 if image else 0))
    return token_cnt


def test_code_convention_reproduces_the_official_counter():
    transitions = [(180, 40, True), (260, 35, True), (340, 60, False), (181, 1, True)]
    tracker = ComputeTracker(n_params=PAPER_N_PARAMS, convention="code")
    buffer = 0
    for prompt, response, image in transitions:
        vision = MLLAMA_VISION_TOKENS if image else 0
        tracker.add_generation(prompt, response, vision_tokens=vision)
        buffer += prompt + response + vision
    tracker.add_ppo_update(buffer, epochs=4)
    assert tracker.flops() == PAPER_N_PARAMS * _official_token_cnt(transitions, 4)


def test_vision_tokens_as_the_official_code_counts_them():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert count_tokens(mask) == 5
    assert count_tokens(mask, images=2, vision_tokens_per_image=MLLAMA_VISION_TOKENS) == 3205
    assert count_tokens(np.array([[1, 0], [1, 1]])) == 3
    assert count_tokens([[1, 1, 0], [1]]) == 3


def test_gp_l_launch_settings_land_on_the_papers_axis():
    """Order of magnitude against Fig. 5, whose GP-L axis spans 0-1.0e10 GFLOPs.

    The launched GP-L runs: Init = 400 SFT steps x global batch 128; RL = 20 updates x 8
    processes x 256 transitions, 4 PPO epochs; N = 10.7B. Token lengths come from our paper-layout
    prompt and expert answer at about 4 characters per token plus a 30-token chat header
    (single-turn lengths; later revision turns are longer). This checks the formulas' scale, not
    the paper's exact numbers, which its sources do not give (PAPER.md §8.3).
    """
    hand = deal(Rules(), 0)
    prompt = len(task_prompt(hand, vision=False, layout="paper")) // 4 + 30
    answer = len(response_text(hand, expert_formula(hand), layout="paper")) // 4
    assert 120 < prompt < 250 and 10 < answer < 60
    d_init = 400 * 128 * (prompt + answer)
    transitions = 20 * 8 * 256
    for convention in ("measured", "paper", "code"):
        tracker = ComputeTracker.for_task(PAPER_N_PARAMS, "gp-l", convention, init_tokens=d_init)
        init_point = tracker.gflops
        tracker.add_generation(transitions * prompt, transitions * answer)
        tracker.add_ppo_update(transitions * (prompt + answer), epochs=4)
        assert 1e8 < init_point < 1e9, convention
        assert 1e9 < tracker.gflops <= 1.0e10, (convention, tracker.gflops)


def test_tracker_conventions_from_the_same_counts():
    tracker = ComputeTracker.for_task(N, "virl-l", init_tokens=100)
    tracker.add_sft(10)
    tracker.add_generation(prompt_tokens=30, output_tokens=20, vision_tokens=5)
    tracker.add_forward(50)
    tracker.add_ppo_update(50, epochs=4)
    assert tracker.train_tokens == 100 + 10 + 200
    assert tracker.inference_tokens == 30 + 20 + 5 + 50
    assert tracker.flops("measured") == 6 * N * 310 + 2 * N * 105
    assert tracker.flops("paper") == pytest.approx(6 * N * 310 + 2 * N * 5.1 * 200)
    assert tracker.flops("code") == 6 * N * 310 + N * 30
    assert tracker.gflops == tracker.flops("measured") / GFLOP
    tracker.ppo_epochs_multiply = False  # the other reading of D_RL: the buffer once
    assert tracker.flops("measured") == 6 * N * (110 + 50) + 2 * N * 105
    metrics = tracker.metrics()
    assert metrics["gflops"] == pytest.approx(metrics["gflops_train"] + metrics["gflops_inference"])
    assert metrics["tokens_train"] == 160 + 150 - 150 + 150  # D_RL counts all epochs
    json.dumps(metrics)


def test_tracker_errors_are_actionable():
    with pytest.raises(ValueError, match="needs buffer_lambda"):
        tracker = ComputeTracker(N, "paper")
        tracker.add_ppo_update(10, epochs=1)
        tracker.flops()
    with pytest.raises(ValueError, match="unknown FLOPs convention"):
        ComputeTracker(N, "kaplan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        ComputeTracker(0)
    with pytest.raises(ValueError, match="non-negative int"):
        ComputeTracker(N).add_sft(-3)
    with pytest.raises(ValueError, match="non-negative int"):
        ComputeTracker(N).add_sft(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N=5"):
        ComputeTracker(N).load_state_dict({**ComputeTracker(5).state_dict()})
    with pytest.raises(ValueError, match="unknown ComputeTracker state keys"):
        ComputeTracker(N).load_state_dict({"tokens": 3})
    with pytest.raises(ValueError, match="cannot merge"):
        ComputeTracker(N).merge(ComputeTracker(N + 1))


def test_tracker_survives_a_resume_through_a_file(tmp_path: Path):
    tracker = ComputeTracker.for_task(N, "gp-l", "paper", init_tokens=7)
    tracker.add_sft(11)
    tracker.add_ppo_update(13, epochs=2)
    path = tracker.save(tmp_path / "compute.json")
    restored = ComputeTracker.load(path)
    assert restored == tracker
    assert restored.flops() == tracker.flops()


def test_merge_adds_other_processes_counts_but_not_init():
    a, b = ComputeTracker(N, init_tokens=100), ComputeTracker(N, init_tokens=100)
    a.add_sft(10)
    b.add_sft(20)
    b.add_generation(1, 2)
    a.merge(b)
    assert (a.init_tokens, a.sft_tokens, a.inference_tokens) == (100, 30, 3)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("sft"), st.integers(0, 10**9)),
        st.tuples(st.just("gen"), st.integers(0, 10**6), st.integers(0, 10**6)),
        st.tuples(st.just("fwd"), st.integers(0, 10**9)),
        st.tuples(st.just("ppo"), st.integers(0, 10**9), st.integers(1, 8)),
    ),
    max_size=20,
)


def _apply(tracker: ComputeTracker, ops: list[tuple]) -> None:
    for op in ops:
        if op[0] == "sft":
            tracker.add_sft(op[1])
        elif op[0] == "gen":
            tracker.add_generation(op[1], op[2], vision_tokens=op[1] % 3)
        elif op[0] == "fwd":
            tracker.add_forward(op[1])
        else:
            tracker.add_ppo_update(op[1], epochs=op[2])


@settings(max_examples=80, deadline=None)
@given(_ops, st.integers(0, 20), st.sampled_from(["measured", "paper", "code"]))
def test_resumed_counting_equals_uninterrupted(ops, split, convention):
    whole = ComputeTracker.for_task(N, "gp-vl", convention, init_tokens=12345)
    _apply(whole, ops)
    first = ComputeTracker.for_task(N, "gp-vl", convention, init_tokens=12345)
    _apply(first, ops[:split])
    state = json.loads(json.dumps(first.state_dict()))  # as written in a checkpoint
    second = ComputeTracker(N)
    second.load_state_dict(state)
    _apply(second, ops[split:])
    assert second == whole
    assert second.flops() == whole.flops()
    assert math.isfinite(whole.gflops) and whole.gflops >= 0


# ---- parameter counts


class _TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc1 = nn.Linear(4, 8)
        self.proj = nn.Linear(8, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, as in many small LMs

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(ids)
        return self.head(hidden + self.proj(self.fc1(hidden)))


def test_count_parameters_counts_shared_weights_once():
    model = _TinyLM()
    assert count_parameters(model) == 10 * 4 + (4 * 8 + 8) + (8 * 4 + 4)
    model.fc1.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 40 + 36


def test_count_parameters_of_a_peft_model():
    peft = pytest.importorskip("peft")
    base = _TinyLM()
    n_base = count_parameters(base)
    config = peft.LoraConfig(r=2, target_modules=["fc1"], modules_to_save=["proj"])
    model = peft.get_peft_model(base, config)
    lora = 2 * 4 + 8 * 2  # A: r x in, B: out x r
    names = [name for name, _ in model.named_parameters()]
    assert any(".original_module." in name for name in names)
    # the frozen original of a module in modules_to_save is not used by the forward pass
    assert count_parameters(model) == n_base + lora
    assert count_parameters(model, trainable_only=True) == lora + (8 * 4 + 4)
    assert model(torch.tensor([[1, 2]])).shape == (1, 2, 10)


def test_count_parameters_unpacks_4bit_weights():
    bnb = pytest.importorskip("bitsandbytes")
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    assert count_parameters(layer) == 64 * 32 + 32  # before quantization
    layer = layer.to("cpu")  # quantizes: two 4-bit values per stored byte
    assert layer.weight.numel() == 64 * 32 // 2
    assert count_parameters(layer) == 64 * 32 + 32

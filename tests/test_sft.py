"""SFT end to end on the tiny model: it learns, it saves a loadable policy, and a killed run resumes
to exactly the weights of an uninterrupted one."""

import pytest
import torch
from transformers import TrainerCallback

from sftvrl.eval import GPEvalSettings, evaluate_general_points
from sftvrl.models import ModelConfig, load_policy
from sftvrl.runs import read_metric_records
from sftvrl.train.generation import PolicyResponder, SamplingConfig
from sftvrl.train.sft import SFTData, SFTEval, SFTExperiment, SFTTrain, train_sft


def experiment(tmp_path, name, **train):
    settings = {
        "max_steps": 4,
        "save_every": 2,
        "log_every": 1,
        "batch_size": 4,
        "learning_rate": 3e-3,
    }
    return SFTExperiment(
        model=ModelConfig(name_or_path="tiny-text", seed=0),
        data=SFTData(task="gp-l", n=32, prompt="compact", seed=0),
        train=SFTTrain(**(settings | train)),
        eval=SFTEval(every=2, n_episodes=4, verify_iter=1, max_new_tokens=8, batch_size=4),
        output=str(tmp_path),
        name=name,
    )


class Crash(TrainerCallback):
    """Kills training after a step, as a SIGKILL would (but in-process)."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def weights(policy):
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def test_sft_learns_saves_and_resumes_identically(tmp_path):
    whole = train_sft(experiment(tmp_path, "whole"))
    losses = [r["loss"] for r in read_metric_records(whole.run.path) if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    records = read_metric_records(whole.run.path)
    assert records[-1]["final"] and records[-1]["gflops"] > 0
    assert [r["gflops"] for r in records if "loss" in r] == sorted(
        r["gflops"] for r in records if "loss" in r
    )

    with pytest.raises(KeyboardInterrupt):
        train_sft(experiment(tmp_path, "killed"), callbacks=(Crash(3),))
    resumed = train_sft(experiment(tmp_path, "killed"))
    expected, got = weights(whole.policy), weights(resumed.policy)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    records = read_metric_records(resumed.run.path)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # nothing lost or repeated
    evaluations = [(r["step"], r["eval_split"]) for r in records if "eval_split" in r]
    assert evaluations == [(2, "id"), (2, "rule_ood"), (4, "id"), (4, "rule_ood")]
    assert all(r["success_n"] == 4 and r["gflops"] > 0 for r in records if "eval_split" in r)

    reloaded = load_policy(ModelConfig(name_or_path=str(whole.final_dir)))
    responder = PolicyResponder(reloaded, SamplingConfig(max_new_tokens=16, temperature=0))
    result = evaluate_general_points(
        responder, GPEvalSettings(n_episodes=4, verify_iter=1, prompt="compact", batch_size=4)
    )
    assert result.success.n == 4


def test_lora_sft_on_the_tiny_vlm_trains_only_adapters(tmp_path):
    from sftvrl.models import LoraSettings

    config = SFTExperiment(
        model=ModelConfig(name_or_path="tiny-vlm", seed=0, lora=LoraSettings(r=4, alpha=8)),
        data=SFTData(task="gp-vl", n=8, prompt="compact", image_size=112),
        train=SFTTrain(max_steps=2, save_every=2, log_every=1, batch_size=2, learning_rate=1e-2),
        output=str(tmp_path),
        name="vl_lora",
    )
    before = load_policy(config.model)
    frozen_before = {k: v.clone() for k, v in before.model.state_dict().items() if "lora_" not in k}
    result = train_sft(config)
    after = result.policy.model.state_dict()
    lora_b = [v for k, v in after.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # initialised at zero, now trained
    for key, value in frozen_before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    reloaded = load_policy(ModelConfig(name_or_path=str(result.final_dir), seed=0))
    assert reloaded.vision


def test_freezing_the_vision_tower_and_projector_stops_their_gradients():
    from sftvrl.models import ModelConfig, load_policy
    from sftvrl.train.sft import PROJECTOR_PARTS, VISION_PARTS, _freeze

    model = load_policy(ModelConfig(name_or_path="tiny-vlm")).model
    vision = _freeze(model, VISION_PARTS)
    projector = _freeze(model, PROJECTOR_PARTS)
    assert vision > 0 and projector > 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(
        part in n for n in trainable for part in VISION_PARTS + PROJECTOR_PARTS
    )

"""PPO on two CPU processes (gloo) through ``accelerate launch``: the multi-GPU code path, on CPU."""

import subprocess
import sys
from pathlib import Path

import torch

from sftvrl.cli import CONFIG_DIR
from sftvrl.runs import read_metric_records

OVERRIDES = [
    "model.name_or_path=tiny-text",
    "env.task=gp-l",
    "env.prompt=compact",
    "env.verify_iter=2",
    "ppo.num_updates=2",
    "ppo.episodes_per_update=4",
    "ppo.rollout_batch=4",
    "ppo.mini_batch_size=4",
    "ppo.grad_accumulation=1",
    "ppo.ppo_epochs=1",
    "ppo.max_new_tokens=8",
    "ppo.learning_rate=1e-3",
    "ppo.value_hidden_sizes=[16]",
    "eval.every=0",
    "save_every=1",
]


def test_two_process_ppo_run(tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    config = CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"
    command = [str(launcher), "launch", "--config_file", str(config), "-m", "sftvrl.cli", "rl"]
    command += [*OVERRIDES, f"output={tmp_path}", "name=two"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "two"
    for step in (1, 2):
        folder = run / "checkpoints" / f"checkpoint-{step}"
        assert (folder / "COMPLETE").exists()
        states = [
            torch.load(folder / f"trainer_state_rank{r}.pt", weights_only=False) for r in (0, 1)
        ]
        assert states[0]["update"] == states[1]["update"] == step
        if step == 1:
            # each process rolled out its own episodes from the same weights: the per-process
            # token counts differ (later sums of counts may meet by chance)
            assert states[0]["tracker"] != states[1]["tracker"]
    updates = [r for r in read_metric_records(run) if "policy_loss" in r]
    assert [r["step"] for r in updates] == [1, 2]
    assert (run / "final" / "model.safetensors").exists()


def test_two_processes_with_different_numbers_of_transitions_stay_in_step(tmp_path):
    """Episodes that end after different numbers of tries give each process its own number of
    transitions; every process must still make the same number of synchronised passes."""
    launcher = Path(sys.executable).parent / "accelerate"
    config = CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"
    command = [str(launcher), "launch", "--config_file", str(config), "-m", "sftvrl.cli", "rl"]
    replaced = ("model.", "env.verify", "ppo.mini", "ppo.episodes", "ppo.rollout")
    overrides = [o for o in OVERRIDES if not o.startswith(replaced)]
    overrides += [
        "model.name_or_path=tiny-text-gp",  # solves some hands: episodes of 1 to 5 turns
        "env.verify_iter=5",
        "ppo.episodes_per_update=8",
        "ppo.rollout_batch=8",
        "ppo.max_new_tokens=48",
        "ppo.mini_batch_size=1",
        "save_every=0",
    ]
    done = subprocess.run(
        [*command, *overrides, f"output={tmp_path}", "name=uneven"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    updates = [r for r in read_metric_records(tmp_path / "uneven") if "policy_loss" in r]
    assert [r["step"] for r in updates] == [1, 2]
    # one transition per batch: the agreed count is the larger process's number of transitions,
    # above the mean over processes whenever they differ
    uneven = [r["mini_batches_per_epoch"] > r["turns_per_episode"] * 8 for r in updates]
    assert any(uneven)

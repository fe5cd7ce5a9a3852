"""GeneralPointsEnv: gymnasium contract, sequential revision, step limits, both variants."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sftvrl  # noqa: F401 - registers the environments
from sftvrl.envs.general_points import GeneralPointsEnv, Hand, Rules, enumerate_hands
from sftvrl.prompts import FEEDBACK_PREFIX


@pytest.mark.parametrize("env_id", ["sftvrl/GP-L-v0", "sftvrl/GP-VL-v0"])
def test_registered_and_passes_gymnasium_checks(env_id):
    env = gym.make(env_id, split="rule_ood")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(info["ranks"]) & {"J", "Q", "K"}


def test_correct_answer_terminates_with_plus_five():
    env = GeneralPointsEnv()
    env.reset(seed=1)
    _, reward, terminated, truncated, info = env.step(env.expert_response())
    assert (reward, terminated, truncated) == (5.0, True, False)
    assert info["success"] and info["prompt"] is None and info["outcome"] == "CORRECT_SOLUTION"
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


def test_sequential_revision_then_success():
    env = GeneralPointsEnv(verify_iter=5)
    obs, info = env.reset(seed=2)
    assert "[Task Description]" in obs and info["feedback"] is None
    obs, reward, terminated, truncated, info = env.step('{"formula": "1+1"}')
    assert reward < 0 and not terminated and not truncated
    assert obs == info["prompt"] == FEEDBACK_PREFIX + info["feedback"]
    assert info["attempts_left"] == 4
    _, reward, terminated, _, _ = env.step(env.expert_response())
    assert reward == 5 and terminated
    assert len(env.history) == 2


def test_exact_step_limit_truncates_on_the_last_verified_attempt():
    env = GeneralPointsEnv(verify_iter=3)
    env.reset(seed=3)
    results = [env.step("garbage") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]
    assert all(r[1] == -3 for r in results)


def test_paper_step_limit_adds_an_unverified_penalised_call():
    env = GeneralPointsEnv(verify_iter=2, mode="paper")
    env.reset(seed=4)
    assert [env.step("garbage")[3] for _ in range(2)] == [False, False]
    _, reward, terminated, truncated, info = env.step(env.expert_response())
    assert (reward, terminated, truncated) == (-1.0, False, True)
    assert info["feedback"] == "step_limit_reached" and info["step_limit"]
    assert info["outcome"] == "STEP_LIMIT"


def test_garbage_never_breaks_an_episode():
    env = GeneralPointsEnv(vision=True, verify_iter=4)
    env.reset(seed=5)
    for text in ["", "\x00" * 10, "{" * 10_000, "formula: 1/0"]:
        _, reward, _, _, info = env.step(text)
        assert reward == -1.5 and info["outcome"] == "INCORRECT_VISION"


def test_vision_observation_is_the_rendered_hand():
    env = GeneralPointsEnv(vision=True, split="visual_ood", image_width=224)
    obs, info = env.reset(seed=6)
    assert obs.dtype == np.uint8 and obs.shape == env.observation_space.shape
    assert all(card[0] in "HD" for card in info["cards"])
    assert "in the image" in info["prompt"] and "Cards:" not in info["prompt"]
    obs2, *_ = env.step(env.expert_response())
    np.testing.assert_array_equal(obs, obs2)
    obs2[:] = 0
    assert env.render().any()


def test_seeds_make_episodes_reproducible():
    a, b = GeneralPointsEnv(), GeneralPointsEnv()
    hands_a = [a.reset(seed=9)[1]["cards"]] + [a.reset()[1]["cards"] for _ in range(5)]
    hands_b = [b.reset(seed=9)[1]["cards"]] + [b.reset()[1]["cards"] for _ in range(5)]
    assert hands_a == hands_b
    assert len(set(hands_a)) > 1


@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_expert_solves_every_hand_of_a_split(mode):
    env = GeneralPointsEnv(split="rule_ood", mode=mode)
    failures = []
    for hand in enumerate_hands(Rules.rule_ood()):
        env.reset(options={"hand": hand})
        if env.step(env.expert_response())[1] != 5:
            failures.append(hand)
    assert failures == []


def test_paper_expert_cannot_beat_the_float_quirk_on_3388():
    env = GeneralPointsEnv(mode="paper")
    env.reset(options={"cards": ["S3", "C3", "S8", "C8"]})
    assert env.solutions() == ["8/(3-8/3)"]
    assert env.step(env.expert_response())[1] == 0.0
    exact = GeneralPointsEnv()
    exact.reset(options={"hand": Hand.from_cards(["S3", "C3", "S8", "C8"])})
    assert exact.step(exact.expert_response())[1] == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="verify_iter"):
        GeneralPointsEnv(verify_iter=0)
    with pytest.raises(ValueError, match="mode"):
        GeneralPointsEnv(mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        GeneralPointsEnv(split="train")

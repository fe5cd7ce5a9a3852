"""The V-IRL environment: expert, wrong-vocabulary and random agents; protocol; prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sftvrl.envs.virl import COMPASS, RELATIVE, VirlEnv, summarize
from sftvrl.envs.virl.sources import SPLITS
from sftvrl.prompts.feedback import FEEDBACK_PREFIX
from sftvrl.prompts.virl import sft_pairs

VIEW = 96  # small views keep the VL tests fast; rendering is size-independent otherwise


def run_episode(env: VirlEnv, policy, seed: int, route_index: int | None = None) -> list[dict]:
    options = None if route_index is None else {"route_index": route_index}
    _, info = env.reset(seed=seed, options=options)
    infos = []
    for _ in range(500):
        _, _, term, trunc, info = env.step(policy(env, info))
        infos.append(info)
        if term or trunc:
            return infos
    raise AssertionError("episode did not end")


def expert(env: VirlEnv, info: dict) -> str:
    return env.unwrapped.expert_response()


def other_vocabulary(env: VirlEnv, info: dict) -> str:
    """The expert, except that turns use the other rule's words (an SFT-memoriser's mistake)."""
    text = env.expert_response()
    entry = env.rail.entries[env.rail_index]
    wrong = entry.action(not env.absolute)
    return text.replace(json.dumps(entry.action(env.absolute)), json.dumps(wrong))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_expert_is_perfect_on_every_split_text(split, mode):
    env = VirlEnv(vision=False, split=split, mode=mode)
    episodes = [run_episode(env, expert, seed) for seed in range(12)]
    stats = summarize(episodes)
    assert stats.per_step_accuracy == 1.0
    assert stats.success_rate == 1.0
    assert all(ep[-1]["is_success"] and ep[-1]["route_done"] for ep in episodes)


@pytest.mark.parametrize("split", SPLITS)
def test_expert_is_perfect_on_every_split_vision(split):
    env = VirlEnv(vision=True, split=split, view_size=VIEW)
    episodes = [run_episode(env, expert, seed) for seed in range(2)]
    stats = summarize(episodes)
    assert stats.per_step_accuracy == 1.0 and stats.success_rate == 1.0


@pytest.mark.parametrize("prompt", ["paper", "compact"])
def test_expert_is_perfect_with_both_prompt_styles(prompt):
    env = VirlEnv(split="rule_ood", prompt=prompt)
    stats = summarize(run_episode(env, expert, s) for s in range(8))
    assert stats.per_step_accuracy == 1.0 and stats.success_rate == 1.0


@pytest.mark.parametrize("split", ["id", "rule_ood", "mini"])
def test_other_action_space_scores_zero(split):
    env = VirlEnv(split=split)
    episodes = [run_episode(env, other_vocabulary, seed) for seed in range(12)]
    stats = summarize(episodes)
    # The first action is always a turn, so the episode dies there: 3 calls, none correct.
    assert stats.per_step_accuracy == 0.0 and stats.success_rate == 0.0
    assert all(len(ep) == 3 and ep[-1]["outcome"] == "step_limit" for ep in episodes)


def test_random_agent_runs_and_is_poor():
    env = VirlEnv(split="id")
    rng = np.random.default_rng(0)
    actions = ["forward()", "stop()"] + [f"turn_direction({c})" for c in COMPASS]

    def random_agent(env, info):
        return json.dumps({"action": actions[int(rng.integers(len(actions)))]})

    stats = summarize(run_episode(env, random_agent, s) for s in range(40))
    assert 0.0 < stats.per_step_accuracy < 0.35
    assert stats.success_rate < 0.1


def test_instruction_and_observations_identical_between_rules():
    a, b = VirlEnv(split="id"), VirlEnv(split="rule_ood")
    assert a.rule == "absolute" and b.rule == "relative"
    for seed in range(5):
        _, info_a = a.reset(seed=seed, options={"route_index": seed})
        _, info_b = b.reset(seed=seed, options={"route_index": seed})
        assert info_a["instruction"] == info_b["instruction"]
        for _ in range(4):
            assert info_a["observation_text"] == info_b["observation_text"]
            assert info_a["current_instruction"] == info_b["current_instruction"]
            *_, info_a = a.step(a.expert_response())
            *_, info_b = b.step(b.expert_response())
            if info_a["route_done"]:
                break
    # Only the action-space list and the turn labels differ.
    assert "['left', 'right', 'slightly left', 'slightly right']" in b.current_prompt()
    assert "'northeast'" in a.current_prompt() and "'northeast'" not in b.current_prompt()


def test_relative_labels_follow_the_instruction_words():
    env = VirlEnv(split="rule_ood")
    for seed in range(10):
        env.reset(seed=seed)
        for e in env.rail.entries:
            if e.kind in ("start", "turn"):
                word = e.relative_action[len("turn_direction(") : -1]
                assert word in RELATIVE
                nxt = env.rail.sentences[e.instruction_index - 1]
                assert f"turn {word} to face" in nxt.lower()


def test_visual_ood_changes_pixels_not_routes_or_text():
    a = VirlEnv(vision=True, split="id", view_size=VIEW)
    b = VirlEnv(vision=True, split="visual_ood", view_size=VIEW)
    for k in range(3):
        ga, ia = a.reset(seed=k, options={"route_index": k})
        gb, ib = b.reset(seed=k, options={"route_index": k})
        assert ia["route_id"] == ib["route_id"] and ia["prompt"] == ib["prompt"]
        assert ia["style"] == "metro_ny" and ib["style"] != "metro_ny"
        assert ga.shape == gb.shape == (2 * VIEW + 5, 2 * VIEW + 5, 3) and ga.dtype == np.uint8
        assert np.abs(ga.astype(int) - gb.astype(int)).mean() > 10
        assert [e.observation for e in a.rail.entries] == [e.observation for e in b.rail.entries]


def test_sequential_revision_protocol():
    env = VirlEnv(split="id", verify_iter=2)
    _, info = env.reset(seed=1)
    first_gt = info["expected_action"]
    bad = json.dumps({"current observation": "nothing", "action": "forward()"})
    _, r1, t1, u1, i1 = env.step(bad)
    assert (r1, t1, u1) == (-1.0, False, False)
    assert i1["prompt"] == FEEDBACK_PREFIX + i1["feedback"]
    assert i1["feedback"].startswith("you make incorrect action.")
    assert i1["gt_action"] == first_gt and i1["rail_index"] == 0 and not i1["correct_action"]
    # A correct revision moves the agent on and rebuilds the prompt from scratch.
    _, r2, _, _, i2 = env.step(env.expert_response())
    assert r2 == 1.0 and i2["rail_index"] == 1 and i2["prompt"].startswith("[Task Description]")
    assert f"A_1: {first_gt}" in i2["prompt"]
    # Two graded failures, then the third call ends the episode ungraded.
    env.step(bad if env.rail.entries[1].kind != "forward" else '{"action": "stop()"}')
    _, _, _, u4, i4 = env.step("garbage")
    assert i4["outcome"] in ("wrong_action", "wrong_observation") and not u4
    _, r5, t5, u5, i5 = env.step(env.expert_response())
    assert (r5, t5, u5) == (-1.0, False, True)
    assert i5["outcome"] == "step_limit" and i5["route_done"] and not i5["is_success"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step("x")


@pytest.mark.parametrize("verify_iter", [1, 3])
def test_verify_iter_sets_the_budget(verify_iter):
    env = VirlEnv(split="id", verify_iter=verify_iter)
    env.reset(seed=0)
    calls = 0
    while True:
        *_, trunc, _ = env.step("nonsense")
        calls += 1
        if trunc:
            break
    assert calls == verify_iter + 1


def test_reset_is_deterministic_and_seeded():
    env = VirlEnv(split="id")
    o1, _ = env.reset(seed=123)
    rail1 = env.rail
    o2, _ = env.reset(seed=123)
    assert o1 == o2 and env.rail == rail1
    heads = set()
    for s in range(10):
        env.reset(seed=s, options={"route_index": 0})
        heads.add(env.rail.init_heading)
    assert len(heads) > 5  # the initial heading is random per reset, as in the official env


def test_forward_points_vary_per_reset():
    env = VirlEnv(split="id")
    lengths = {
        len(env.reset(seed=s, options={"route_index": 3})[1]["instruction"]) for s in range(1)
    }
    counts = set()
    for s in range(20):
        _, info = env.reset(seed=s, options={"route_index": 3})
        counts.add(info["rail_length"])
        kinds = [e.kind for e in env.rail.entries]
        assert kinds[0] == "start" and kinds[-1] == "stop"
        assert env.rail.entries[0].absolute_action.startswith("turn_direction(")
    assert len(counts) > 2 and lengths


def test_mini_walks_routes_in_order():
    env = VirlEnv(split="mini")
    ids = [env.reset(seed=0)[1]["route_index"] for _ in range(20)]
    assert ids == [*range(18), 0, 1]
    styles = {env.reset(options={"route_index": i})[1]["style"] for i in range(18)}
    assert len(styles) == 9


def test_paper_prompt_layout_and_vl_observation():
    env = VirlEnv(vision=True, split="id", view_size=VIEW)
    grid, info = env.reset(seed=0)
    text = info["prompt"]
    order = [
        "[Task Description]",
        "[Instruction]",
        "[Observation format]",
        "[Action space]",
        "[Observations and actions sequence]",
        "[Output]",
    ]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "O_1: You observe an image of 4 views; \nA_1: " in text
    assert '"current observation"' in text and '"action"' in text
    assert isinstance(grid, np.ndarray)
    text_env = VirlEnv(vision=False, split="id")
    obs, info = text_env.reset(seed=0)
    assert obs == info["prompt"] and "[Observation format]" not in obs
    assert "O_1: No landmarks nearby; \nA_1: " in obs


def test_vl_history_keeps_oracle_text_for_past_steps():
    env = VirlEnv(vision=True, split="id", view_size=VIEW)
    env.reset(seed=2)
    for _ in range(4):
        _, _, _, _, info = env.step(env.expert_response())
    lines = info["prompt"].splitlines()
    past = [ln for ln in lines if ln.startswith("O_")]
    assert past[-1].startswith(f"O_{len(past)}: You observe an image of 4 views; ")
    assert all("image of 4 views" not in ln for ln in past[:-1])


def test_expert_response_and_sft_pairs():
    env = VirlEnv(split="id")
    env.reset(seed=4)
    text = env.expert_response()
    assert text.rstrip().endswith(",\n}")  # official trailing comma
    assert '"action": "turn_direction(' in text
    compact = VirlEnv(split="id", prompt="compact")
    compact.reset(seed=4)
    data = json.loads(compact.expert_response())
    assert set(data) == {"current observation", "current instruction", "action"}
    pairs = sft_pairs(env.rail, absolute=True, vision=False)
    assert len(pairs) == len(env.rail.entries)
    for i, (prompt, response) in enumerate(pairs):
        assert f"O_{i + 1}: " in prompt and f"A_{i + 2}: " not in prompt
        assert env.rail.entries[i].action(True) in response


def test_only_json_and_render():
    env = VirlEnv(split="id", only_json=True, render_mode="rgb_array", view_size=VIEW)
    _, info = env.reset(seed=0)
    assert info["prompt"].endswith("Please only output the json.")
    frame = env.render()
    assert frame.shape == (2 * VIEW + 5, 2 * VIEW + 5, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "test"}, "split"),
        ({"mode": "fast"}, "mode"),
        ({"prompt": "long"}, "prompt"),
        ({"rule": "polar"}, "rule"),
        ({"layout": "ring"}, "layout"),
        ({"verify_iter": 0}, "verify_iter"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VirlEnv(**kwargs)


def test_gymnasium_checker_accepts_the_env():
    from gymnasium.utils.env_checker import check_env

    check_env(VirlEnv(split="id"), skip_render_check=True)

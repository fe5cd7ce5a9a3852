"""The batched rollout engine: order, determinism, sequential revision, refilling slots."""

import pytest

from sftvrl.envs.general_points import GeneralPointsEnv
from sftvrl.train.rollout import ExpertResponder, Request, ScriptedResponder, rollout


def gp_env(**kwargs):
    return lambda: GeneralPointsEnv(**kwargs)


def test_expert_succeeds_on_every_episode_in_one_turn():
    episodes = rollout(gp_env(split="rule_ood"), ExpertResponder(), 25, batch_size=8)
    assert [e.index for e in episodes] == list(range(25))
    assert all(e.success and len(e.turns) == 1 and e.total_reward == 5 for e in episodes)


def test_wrong_answers_use_the_whole_verification_budget():
    seen: list[Request] = []

    def answer(request: Request) -> str:
        seen.append(request)
        return '{"formula": "1+1"}'

    episodes = rollout(gp_env(verify_iter=3), ScriptedResponder(answer), 4, batch_size=2)
    assert all(not e.success and len(e.turns) == 3 and e.turns[-1].truncated for e in episodes)
    last = max(seen, key=lambda r: len(r.conversation)).conversation
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"].startswith("You failed this trial because ")


def test_revision_then_success_and_slot_refill():
    def answer(request: Request) -> str:
        # wrong on the first try, right on the second: episodes finish at different rounds
        first_try = len(request.conversation) == 1
        return (
            "nonsense"
            if first_try and request.env.hand.numbers[0] % 2
            else request.env.expert_response()
        )

    episodes = rollout(gp_env(), ScriptedResponder(answer), 30, batch_size=4, seed=7)
    assert all(e.success for e in episodes)
    assert {len(e.turns) for e in episodes} == {1, 2}


def test_results_do_not_depend_on_the_batch_size():
    def cards(batch_size):
        episodes = rollout(
            gp_env(vision=True, image_width=112),
            ExpertResponder(),
            10,
            batch_size=batch_size,
            seed=3,
        )
        return [e.reset_info["cards"] for e in episodes]

    assert cards(1) == cards(4) == cards(10)


def test_vision_requests_carry_the_image():
    def answer(request: Request) -> str:
        assert request.image is not None and request.image.size == (112, 42)
        assert request.conversation[0]["content"][0] == {"type": "image", "text": None}
        return request.env.expert_response()

    assert rollout(gp_env(vision=True, image_width=112), ScriptedResponder(answer), 3)[0].success


def test_reset_options_and_errors():
    options = [{"cards": ["S3", "C3", "S8", "C8"]}]
    (episode,) = rollout(gp_env(), ExpertResponder(), 1, reset_options=options)
    assert episode.reset_info["numbers"] == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="reset_options"):
        rollout(gp_env(), ExpertResponder(), 2, reset_options=options)


def test_virl_routes_restart_the_chat_at_each_new_point():
    from sftvrl.envs.virl import VirlEnv

    starts = []

    def answer(request: Request) -> str:
        starts.append(len(request.conversation) == 1)
        return request.env.expert_response()

    episodes = rollout(lambda: VirlEnv(split="mini"), ScriptedResponder(answer), 4, batch_size=2)
    assert all(e.success for e in episodes)
    assert all(starts)  # the expert is never wrong, so every request opens a fresh conversation
    assert sum(len(e.turns) for e in episodes) == len(starts)

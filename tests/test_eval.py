"""Evaluation metrics and intervals, on scripted agents whose true scores are known."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftvrl.eval import (
    GPEvalSettings,
    Rate,
    evaluate_general_points,
    mcnemar_exact,
    wilson_interval,
)
from sftvrl.train.rollout import ExpertResponder, Request, ScriptedResponder


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(27, 234)  # the paper's 11.5%
    assert low == pytest.approx(0.0805, abs=1e-3) and high == pytest.approx(0.1626, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_contains_the_estimate(k, n):
    k = min(k, n)
    low, high = wilson_interval(k, n)
    assert 0 <= low <= k / n <= high <= 1


def test_rate_matches_the_paper_error_bar():
    rate = Rate(35, 234)
    assert rate.value == pytest.approx(0.1496, abs=1e-4)
    assert rate.se == pytest.approx(math.sqrt(rate.value * (1 - rate.value) / 234))
    assert "35/234" in str(rate)


def test_mcnemar():
    assert mcnemar_exact([True] * 5, [True] * 5) == 1.0
    assert mcnemar_exact([True] * 10 + [False] * 10, [False] * 10 + [False] * 10) == pytest.approx(
        2 / 2**10
    )
    with pytest.raises(ValueError):
        mcnemar_exact([True], [])


def test_exhaustive_expert_evaluation_is_perfect():
    result = evaluate_general_points(ExpertResponder(), GPEvalSettings(split="rule_ood"))
    assert (result.success.k, result.success.n) == (796, 796)
    assert result.summary()["success_rate"] == 1.0


def test_recognition_accuracy_counts_misread_cards():
    def answer(request: Request) -> str:
        text = request.env.expert_response()
        # misread every hand whose first number is odd
        return text.replace("cards", "kards") if request.env.hand.numbers[0] % 2 else text

    settings = GPEvalSettings(
        split="visual_ood", vision=True, n_episodes=40, verify_iter=1, image_width=112
    )
    result = evaluate_general_points(ScriptedResponder(answer), settings)
    odd = sum(e.reset_info["numbers"][0] % 2 for e in result.episodes)
    assert result.recognition.k == 40 - odd
    assert result.success.k == 40 - odd


def test_recognition_is_read_on_first_answers_only_as_the_paper_measures_it():
    def answer(request: Request) -> str:
        text = request.env.expert_response()
        if request.env.attempts == 0:  # first try: right cards, wrong formula
            return text.replace('"formula": "', '"formula": "1+')
        return text.replace("'", "'X", 1)  # a retry that rewrites the first card

    settings = GPEvalSettings(vision=True, n_episodes=10, verify_iter=3, image_width=112)
    result = evaluate_general_points(ScriptedResponder(answer), settings)
    assert all(len(e.turns) == 3 for e in result.episodes)
    assert all(
        t.info["outcome"] == "INCORRECT_VISION" for e in result.episodes for t in e.turns[1:]
    )
    assert (result.recognition.k, result.recognition.n) == (10, 10)
    assert result.success.k == 0


def test_sampled_evaluation_is_reproducible():
    settings = GPEvalSettings(n_episodes=12, seed=5)
    a = evaluate_general_points(ExpertResponder(), settings)
    b = evaluate_general_points(ExpertResponder(), settings)
    assert [e.reset_info["cards"] for e in a.episodes] == [
        e.reset_info["cards"] for e in b.episodes
    ]


def test_virl_evaluation_of_the_expert_and_of_the_wrong_action_space():
    from sftvrl.eval import evaluate_task

    expert = evaluate_task(ExpertResponder(), "virl-l", "mini")
    assert expert.route_success.n == 18 and expert.route_success.value == 1.0
    assert expert.per_step.value == 1.0

    def compass_answer(request: Request) -> str:
        # an agent that memorised the training rule answers 'north'-style turns under relative actions
        text = request.env.expert_response()
        for word in ("slightly left", "slightly right", "left", "right"):
            text = text.replace(f"turn_direction({word})", "turn_direction(north)")
        return text

    memorised = evaluate_task(ScriptedResponder(compass_answer), "virl-l", "rule_ood", n_episodes=8)
    assert memorised.route_success.value == 0.0
    assert memorised.per_step.value < 1.0
    # every graded answer at a turn point used the training (compass) vocabulary; the expert none
    swapped = memorised.summary()
    assert swapped["other_vocabulary_rate"] == 1.0 and swapped["other_vocabulary_n"] >= 8
    clean = evaluate_task(ExpertResponder(), "virl-l", "rule_ood", n_episodes=8).summary()
    assert clean["other_vocabulary_rate"] == 0.0 and clean["other_vocabulary_n"] >= 8


def test_virl_vl_landmark_recognition_counts_first_answers_that_say_what_the_views_show():
    import json

    from sftvrl.envs.virl.model import NO_LANDMARKS
    from sftvrl.eval import evaluate_task

    options = {"prompt": "compact", "image_size": 56}
    expert = evaluate_task(ExpertResponder(), "virl-vl", "id", n_episodes=4, **options)
    assert expert.recognition is not None and expert.recognition.value == 1.0
    assert evaluate_task(ExpertResponder(), "virl-l", "id", n_episodes=2).recognition is None

    def blind(request: Request) -> str:
        # right action, but never sees a landmark: what a model that ignores the image says
        fields = json.loads(request.env.expert_response())
        fields["current observation"] = (
            NO_LANDMARKS + "; " + fields["current observation"].split("; ")[1]
        )
        return json.dumps(fields)

    result = evaluate_task(ScriptedResponder(blind), "virl-vl", "id", n_episodes=4, **options)
    landmark_points = sum(
        t.info["graded_landmark_obs"] != NO_LANDMARKS for e in result.episodes for t in e.turns
    )
    assert result.per_step.value == 1.0 and landmark_points >= 4
    assert result.recognition.n == landmark_points and result.recognition.k == 0
    assert result.summary()["recognition_n"] == expert.summary()["recognition_n"] == landmark_points


def test_evaluate_task_rejects_unknown_tasks():
    from sftvrl.eval import evaluate_task

    with pytest.raises(ValueError, match="unknown task"):
        evaluate_task(ExpertResponder(), "chess", "id")


def _memoriser(request: Request) -> str:
    """Reads every face card as 10 whatever the prompt says: the paper's memorisation failure."""
    from sftvrl.envs.general_points import Hand, Rules
    from sftvrl.prompts.general_points import response_text

    hand = Hand.from_cards(request.info["cards"], Rules.id())
    return response_text(hand, "1+1", layout="compact")


def test_rule_diagnostics_tell_memorising_the_rule_from_reading_it():
    settings = GPEvalSettings(split="rule_ood", n_episodes=40, verify_iter=1, prompt="compact")
    memoriser = evaluate_general_points(ScriptedResponder(_memoriser), settings).summary()
    assert memoriser["face_as_ten_rate"] == 1.0 and memoriser["face_as_ten_n"] == 40
    assert memoriser["numbers_read_rate"] == 0.0
    expert = evaluate_general_points(ExpertResponder(), settings).summary()
    assert expert["face_as_ten_rate"] == 0.0 and expert["numbers_read_rate"] == 1.0
    assert expert["success_outcomes"] == "1" * 40 and memoriser["success_outcomes"] == "0" * 40

"""A model as a rollout responder: batched generation, token ids, reproducible sampling."""

import pytest

from sftvrl.eval import GPEvalSettings, evaluate_general_points
from sftvrl.models import ModelConfig, load_policy
from sftvrl.train.generation import PolicyResponder, SamplingConfig


@pytest.fixture(scope="module")
def text_policy():
    return load_policy(ModelConfig(name_or_path="tiny-text", seed=0))


def _texts(policy, seed, micro_batch=None):
    responder = PolicyResponder(
        policy, SamplingConfig(max_new_tokens=12, micro_batch=micro_batch), seed=seed
    )
    result = evaluate_general_points(
        responder, GPEvalSettings(n_episodes=6, verify_iter=2, batch_size=6)
    )
    return [t.response.text for e in result.episodes for t in e.turns], responder


def test_sampling_is_reproducible_per_seed(text_policy):
    first, responder = _texts(text_policy, seed=1)
    again, _ = _texts(text_policy, seed=1)
    other, _ = _texts(text_policy, seed=2)
    assert first == again and first != other
    assert responder.generated_tokens > 0 and responder.prompt_tokens > responder.generated_tokens


def test_responses_carry_token_ids_that_decode_to_the_text(text_policy):
    _, responder = _texts(text_policy, seed=3)
    from sftvrl.train.rollout import Request

    request = Request([{"role": "user", "content": "Cards: A 3 K 6"}], None, None)
    (response,) = responder([request])
    assert (
        text_policy.tokenizer.decode(response.response_ids, skip_special_tokens=True)
        == response.text
    )
    assert len(response.response_ids) <= 12
    assert text_policy.tokenizer.pad_token_id not in response.prompt_ids.tolist()


def test_greedy_vision_policy_answers_with_the_image():
    policy = load_policy(ModelConfig(name_or_path="tiny-vlm", seed=0))
    responder = PolicyResponder(policy, SamplingConfig(max_new_tokens=8, temperature=0))
    settings = GPEvalSettings(
        vision=True, n_episodes=3, verify_iter=1, image_width=112, batch_size=3
    )
    a = evaluate_general_points(responder, settings)
    b = evaluate_general_points(
        PolicyResponder(policy, SamplingConfig(max_new_tokens=8, temperature=0)), settings
    )
    assert [e.turns[0].response.text for e in a.episodes] == [
        e.turns[0].response.text for e in b.episodes
    ]
    assert a.recognition.n == 3

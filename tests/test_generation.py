"""A model as a rollout responder: batched generation, token ids, reproducible sampling."""

import pytest
import torch

from sftvrl.eval import GPEvalSettings, evaluate_general_points
from sftvrl.models import ModelConfig, load_policy
from sftvrl.train import generation
from sftvrl.train.generation import PolicyResponder, SamplingConfig
from sftvrl.train.rollout import Request


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


def _greedy_turns(policy, settings, **sampling):
    """Texts and answer ids of every turn of a greedy evaluation, and the responder."""
    sampling.setdefault("max_new_tokens", 16)
    responder = PolicyResponder(policy, SamplingConfig(temperature=0, **sampling))
    result = evaluate_general_points(responder, settings)
    turns = [t for e in result.episodes for t in e.turns]
    return (
        [t.response.text for t in turns],
        [t.response.response_ids.tolist() for t in turns],
        responder,
    )


def test_sampling_is_reproducible_per_seed(text_policy):
    first, responder = _texts(text_policy, seed=1)
    again, _ = _texts(text_policy, seed=1)
    other, _ = _texts(text_policy, seed=2)
    assert first == again and first != other
    assert responder.generated_tokens > 0 and responder.prompt_tokens > responder.generated_tokens


def test_responses_carry_token_ids_that_decode_to_the_text(text_policy):
    _, responder = _texts(text_policy, seed=3)
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
    settings = GPEvalSettings(
        vision=True, n_episodes=4, verify_iter=2, image_width=112, batch_size=3
    )
    cached, cached_ids, responder = _greedy_turns(policy, settings, max_new_tokens=8)
    generated, generated_ids, _ = _greedy_turns(
        policy, settings, max_new_tokens=8, engine="generate"
    )
    assert responder.engine == "cached"
    assert cached == generated and cached_ids == generated_ids
    assert responder.reused_tokens > 0  # later turns start from the image's cached keys/values
    result = evaluate_general_points(
        PolicyResponder(policy, SamplingConfig(max_new_tokens=8, temperature=0)),
        GPEvalSettings(vision=True, n_episodes=3, verify_iter=1, image_width=112, batch_size=3),
    )
    assert result.recognition.n == 3


@pytest.mark.parametrize("engine", ["cached", "generate"])
def test_a_vision_policy_never_generates_its_image_placeholder(engine):
    """A sampled <image> would make the next forward pass (next turn, PPO scoring) fail."""
    from PIL import Image

    policy = load_policy(ModelConfig(name_or_path="tiny-vlm", seed=0))
    image_token = policy.model.config.image_token_id
    head = policy.model.get_output_embeddings()

    def prefer_image(_module, _inputs, output):  # the untrained model's favourite token
        output[..., image_token] += 100.0
        return output

    handle = head.register_forward_hook(prefer_image)
    try:
        responder = PolicyResponder(
            policy, SamplingConfig(max_new_tokens=6, temperature=1.0, engine=engine), seed=1
        )
        image = Image.new("RGB", (64, 64), "white")
        conversation = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Cards?"}]}
        ]
        responses = responder([Request(conversation, image, None) for _ in range(3)])
    finally:
        handle.remove()
    for response in responses:
        assert len(response.response_ids) == 6
        assert image_token not in response.response_ids.tolist()


def test_cached_engine_matches_generate_with_and_without_reuse(text_policy):
    settings = GPEvalSettings(n_episodes=7, verify_iter=3, batch_size=4)
    options = {"max_new_tokens": 12}
    generated, generated_ids, reference = _greedy_turns(
        text_policy, settings, engine="generate", **options
    )
    cached, cached_ids, responder = _greedy_turns(text_policy, settings, **options)
    fresh, fresh_ids, _ = _greedy_turns(text_policy, settings, reuse_prefix=False, **options)
    chunked, chunked_ids, _ = _greedy_turns(text_policy, settings, micro_batch=3, **options)
    assert reference.engine == "generate" and responder.engine == "cached"
    assert cached == generated == fresh == chunked
    assert cached_ids == generated_ids == fresh_ids == chunked_ids
    assert responder.prompt_tokens == reference.prompt_tokens
    assert responder.generated_tokens == reference.generated_tokens
    # most of a later turn's prompt is the previous prompt; new episodes share the task prompt
    assert responder.reused_tokens > responder.prompt_tokens / 2


def test_rows_that_stop_early_leave_the_batch_without_changing_answers(monkeypatch):
    policy = load_policy(ModelConfig(name_or_path="tiny-text", seed=0))
    eos = policy.tokenizer.eos_token_id
    with torch.no_grad():  # make the end token likely, so answers end after various lengths
        policy.model.lm_head.weight[eos] *= 5
    dropped = []
    keep_rows = generation._RoundKV.keep_rows

    def spy(self, rows):
        dropped.append(self.rows - len(rows))
        keep_rows(self, rows)

    monkeypatch.setattr(generation._RoundKV, "keep_rows", spy)
    settings = GPEvalSettings(n_episodes=16, verify_iter=3, batch_size=16)
    cached, cached_ids, _ = _greedy_turns(policy, settings, max_new_tokens=24)
    generated, generated_ids, _ = _greedy_turns(
        policy, settings, max_new_tokens=24, engine="generate"
    )
    assert cached == generated and cached_ids == generated_ids
    assert dropped and sum(dropped) > 0
    lengths = {len(ids) for ids in cached_ids}
    assert 24 in lengths and len(lengths) > 2
    assert all(ids[-1] == eos for ids in cached_ids if len(ids) < 24)


def test_cached_prefixes_are_dropped_when_the_weights_change(text_policy):
    responder = PolicyResponder(text_policy, SamplingConfig(max_new_tokens=6, temperature=0))
    conversation = [{"role": "user", "content": "Cards: A 3 K 6"}]
    (first,) = responder([Request(conversation, None, None)])
    follow_up = [
        *conversation,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "You failed this trial because no formula."},
    ]
    before = responder.reused_tokens
    responder([Request(follow_up, None, None)])
    assert responder.reused_tokens > before
    before = responder.reused_tokens
    with torch.no_grad():  # an optimizer step changes parameters in place
        next(text_policy.model.parameters()).add_(0.0)
    responder([Request(follow_up, None, None)])
    assert responder.reused_tokens == before


def test_engine_choice_and_settings_errors():
    policy = load_policy(ModelConfig(name_or_path="tiny-text", seed=0))
    assert PolicyResponder(policy).engine == "cached"
    policy.model.generation_config.repetition_penalty = 1.3  # our loop does not apply it
    assert PolicyResponder(policy).engine == "generate"
    with pytest.raises(ValueError, match="repetition_penalty"):
        _ = PolicyResponder(policy, SamplingConfig(engine="cached")).engine
    with pytest.raises(ValueError, match="engine"):
        SamplingConfig(engine="fast")
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)


def test_sampling_follows_temperature_top_k_and_top_p():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probabilities.log().repeat(20_000, 1)
    draws = generation._sample(logits, 1.0, 0, 1.0, generator)
    frequencies = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(frequencies, probabilities, atol=0.015)
    nucleus = generation._sample(logits, 1.0, 0, 0.7, generator)  # keeps 0.5 + 0.3
    assert set(nucleus.tolist()) == {0, 1}
    assert abs((nucleus == 0).float().mean().item() - 0.5 / 0.8) < 0.015
    assert set(generation._sample(logits, 1.0, 1, 1.0, generator).tolist()) == {0}
    hot = generation._sample(logits, 100.0, 0, 1.0, generator)  # nearly uniform
    assert (torch.bincount(hot, minlength=4) / len(hot)).min() > 0.2
    assert generation._sample(logits[:3], 0.0, 0, 1.0, generator).tolist() == [0, 0, 0]


def test_sampling_keeps_generates_default_top_k(text_policy):
    """generate() samples among the 50 likeliest tokens unless told otherwise; so do we."""
    conversation = [{"role": "user", "content": "Cards: A 3 K 6"}]
    logits = text_policy.model(**text_policy.chat_inputs([conversation])).logits[0, -1]
    top = set(logits.topk(50).indices.tolist())
    requests = [Request(conversation, None, None)] * 64
    for engine in ("cached", "generate"):
        sampling = SamplingConfig(max_new_tokens=1, engine=engine)
        first = {r.response_ids[0].item() for r in PolicyResponder(text_policy, sampling)(requests)}
        assert first <= top and len(first) > 10
    everything = SamplingConfig(max_new_tokens=1, top_k=0)
    first = {r.response_ids[0].item() for r in PolicyResponder(text_policy, everything)(requests)}
    assert first - top  # the random model's distribution is flat: most draws fall outside

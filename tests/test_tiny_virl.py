"""The tiny tier's V-IRL foundation corpus: vocabularies it is never tested on, correct answers."""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftvrl.envs.virl.geometry import (
    COMPASS,
    FORWARD,
    RELATIVE,
    STOP,
    angle_diff,
    bearing,
    turn_action,
)
from sftvrl.envs.virl.verifier import verify
from sftvrl.envs.virl.views import PLACE_RANGE, signs_in_view, view_headings
from sftvrl.prompts.feedback import FEEDBACK_PREFIX
from sftvrl.prompts.virl import (
    COMPACT_SCHEMA,
    VL_CURRENT_OBS,
    build_prompt,
    compact_prompt,
    turn_choices,
)
from sftvrl.tiny.pretrain import PretrainConfig, build_corpus, fresh_policy, pretrain
from sftvrl.tiny.virl_corpus import (
    HELD_OUT_VOCABULARIES,
    VirlCorpusConfig,
    city_env,
    sample_vocabulary,
    virl_corpus,
    virl_corpus_example,
)
from sftvrl.tiny.virl_vision import LAYOUT, ViewBatches, rail_point, render_point
from sftvrl.tiny.vision import VisionFoundationConfig


def listed_words(prompt: str) -> list[str]:
    line = next(line for line in prompt.splitlines() if line.startswith("Actions:"))
    return line[line.index("{") + 1 : line.index("}")].split(", ")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_a_chat_lists_a_proper_subset_and_its_answer_is_right_under_it(seed):
    rng = random.Random(seed)
    example = virl_corpus_example(rng, VirlCorpusConfig(revision=0.5))
    messages = example["messages"]
    words = listed_words(messages[0]["content"])
    assert words == example["vocabulary"]
    assert frozenset(words) not in HELD_OUT_VOCABULARIES
    family = COMPASS if words[0] in COMPASS else RELATIVE
    assert set(words) < set(family) and len(words) >= 2
    answer = json.loads(messages[-1]["content"])
    assert answer["action"] in {FORWARD, STOP, *(turn_action(w) for w in words)}
    assert answer.keys() == {"current observation", "current instruction", "action"}
    if len(messages) == 4:  # sequential revision: a wrong action, the verifier's message
        wrong = json.loads(messages[1]["content"])
        assert wrong["action"] != answer["action"]
        assert wrong["current observation"] == answer["current observation"]
        assert messages[2]["content"].startswith(FEEDBACK_PREFIX)


def test_answers_verify_on_their_rail_and_the_corpus_is_deterministic():
    config = VirlCorpusConfig(city_seeds=(3,))
    for seed in range(30):
        example = virl_corpus_example(random.Random(seed), config)
        env = city_env(example["city_seed"])
        env.reset(seed=example["episode_seed"])
        entry = env.rail.entries[example["rail_index"]]
        absolute = example["vocabulary"][0] in COMPASS
        verdict = verify(
            example["messages"][-1]["content"],
            entry,
            absolute=absolute,
            mode="exact",
            schema=COMPACT_SCHEMA,
        )
        assert verdict.correct, verdict.message
    assert virl_corpus(20, seed=5) == virl_corpus(20, seed=5)
    assert virl_corpus(20, seed=5) != virl_corpus(20, seed=6)


def test_vocabularies_contain_what_the_route_needs_and_refuse_a_whole_family():
    rng = random.Random(0)
    for _ in range(200):
        needed = rng.sample(COMPASS, rng.randint(1, 4))
        words = sample_vocabulary(rng, COMPASS, list(needed))
        assert words is not None and set(needed) <= set(words) < set(COMPASS)
    assert sample_vocabulary(rng, RELATIVE, list(RELATIVE)) is None


def test_the_environment_prompt_is_the_compact_prompt_with_the_rules_whole_list():
    env = city_env(2)
    env.reset(seed=4)
    for absolute in (True, False):
        expected = build_prompt(env.rail, 1, absolute=absolute, vision=False, style="compact")
        listed = compact_prompt(env.rail, 1, absolute=absolute, turns=turn_choices(absolute))
        assert listed == expected
        assert listed_words(listed) == list(turn_choices(absolute))


def test_a_virl_foundation_gets_its_own_larger_tokenizer():
    config = PretrainConfig(family="virl", n_examples=60, vocab_size=1024, tokenizer_chats=60)
    chats = build_corpus(config)
    policy = fresh_policy(config, chats)
    assert len(policy.tokenizer) > 512
    assert policy.model.get_input_embeddings().num_embeddings == len(policy.tokenizer)
    text = chats[0]["messages"][0]["content"]
    assert policy.tokenizer.decode(policy.tokenizer(text)["input_ids"]) == text
    default = fresh_policy(PretrainConfig(family="virl", n_examples=60), chats)
    assert len(policy.tokenizer(text)["input_ids"]) < len(default.tokenizer(text)["input_ids"]) / 2


# -- the V-IRL-VL foundation ---------------------------------------------------------------------


def test_the_vision_corpus_is_the_same_chats_with_the_landmark_only_in_the_image():
    text = virl_corpus(12, seed=3)
    vision = virl_corpus(12, seed=3, vision=True)
    for plain, seen in zip(text, vision, strict=True):
        assert rail_point(plain) == rail_point(seen)
        assert plain["vocabulary"] == seen["vocabulary"]
        first = seen["messages"][0]["content"]
        assert first[0]["type"] == "image" and "Image: 4 street views" in first[1]["text"]
        current = first[1]["text"].splitlines()[-3]  # the current O line, before A_n and Answer
        assert current.startswith("O_") and VL_CURRENT_OBS in current
        answers = [m for m in seen["messages"] if m["role"] == "assistant"]
        plain_answers = [m["content"] for m in plain["messages"] if m["role"] == "assistant"]
        assert [a["content"][-1]["text"] for a in answers] == plain_answers


def test_signs_in_view_lie_in_their_views_wedge_and_each_is_drawn_once():
    env = city_env(2)
    for seed in range(4):
        _, info = env.reset(seed=seed)
        city = env.source.city(info["route_index"])
        for entry in env.rail.entries:
            seen: list[int] = []
            for heading in view_headings(entry.heading, LAYOUT):
                signs = signs_in_view(city, entry.xy, heading)
                assert signs == sorted(signs)
                for dist, k in signs:
                    assert 0 < dist < PLACE_RANGE
                    place = city.places[k].xy
                    assert abs(angle_diff(heading, bearing(entry.xy, place))) <= 45.0
                seen += [k for _, k in signs]
            assert len(seen) == len(set(seen))  # a sign is drawn whole, in one view


def test_view_targets_name_each_views_nearest_sign_and_are_rendered_once():
    from sftvrl.models import ModelConfig, load_policy

    points = [rail_point(example) for example in virl_corpus(24, seed=5)]
    policy = load_policy(ModelConfig(name_or_path="tiny-vlm"))
    batches = ViewBatches(policy.processor, view_size=56)
    batch = batches(points)
    assert batch["pixel_values"].shape == (24, 3, 112, 112)
    assert batch["targets"].shape == (24, 4)
    for point, classes in zip(points, batch["targets"].tolist(), strict=True):
        grid, expected = render_point(point, 56)
        assert grid.shape == (117, 117, 3) and classes == expected
    assert any(c != 0 for row in batch["targets"].tolist() for c in row)  # signs are seen
    drawn = len(batches._pixels)
    batches(points[:3])
    assert len(batches._pixels) == drawn == len(set(points))


def test_a_vision_family_refuses_the_other_tasks_text_foundation():
    config = PretrainConfig(family="virl_vl")  # vision.text_foundation defaults to tiny-text-gp
    with pytest.raises(ValueError, match="text_foundation"):
        fresh_policy(config, [])


def test_virl_vision_pretraining_learns_the_views_and_scores_the_mini_benchmark(tmp_path):
    from sftvrl.models import ModelConfig, load_policy

    config = PretrainConfig(
        family="virl_vl",
        vision=VisionFoundationConfig(text_foundation="tiny-text-virl"),
        n_examples=32,
        steps=12,
        batch_size=8,
        warmup_steps=2,
        learning_rate=3e-4,
        threads=1,
    )
    result = pretrain(config, tmp_path / "vl", eval_episodes=1)
    assert sum(result.losses[-3:]) / 3 < sum(result.losses[:3]) / 3
    assert {"mini_per_step_at_2", "rule_ood_route_success_at_1", "id_n"} <= set(result.scores)
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "vl")))
    assert policy.vision
    assert not any("read_out" in name for name, _ in policy.model.named_parameters())
    assert len(policy.tokenizer) == len(
        load_policy(ModelConfig(name_or_path="tiny-text-virl")).tokenizer
    )

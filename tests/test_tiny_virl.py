"""The tiny tier's V-IRL foundation corpus: vocabularies it is never tested on, correct answers."""

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sftvrl.envs.virl.geometry import COMPASS, FORWARD, RELATIVE, STOP, turn_action
from sftvrl.envs.virl.verifier import verify
from sftvrl.prompts.feedback import FEEDBACK_PREFIX
from sftvrl.prompts.virl import COMPACT_SCHEMA, build_prompt, compact_prompt, turn_choices
from sftvrl.tiny.pretrain import PretrainConfig, build_corpus, fresh_policy
from sftvrl.tiny.virl_corpus import (
    HELD_OUT_VOCABULARIES,
    VirlCorpusConfig,
    _city_env,
    sample_vocabulary,
    virl_corpus,
    virl_corpus_example,
)


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
        env = _city_env(example["city_seed"])
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
    env = _city_env(2)
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

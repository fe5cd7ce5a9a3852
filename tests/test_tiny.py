"""The tiny tier's foundation: general face-card rules, the corpus, and the pretraining loop."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sftvrl.envs.general_points import Rules, number_multisets, verify
from sftvrl.envs.general_points.cards import Hand
from sftvrl.prompts.general_points import task_prompt
from sftvrl.tiny.corpus import HELD_OUT_FACES, GPCorpusConfig, gp_corpus
from sftvrl.tiny.pretrain import (
    MANIFEST,
    PretrainConfig,
    TokenisedCorpus,
    batch_order,
    cosine_lr,
    pretrain,
    tokenise,
)


def test_rules_accept_any_face_values_and_keep_the_paper_wording():
    assert Rules.id().face_card_message == "'J', 'Q', and 'K' count as '10'."
    assert Rules.rule_ood().face_card_message == (
        "'J', 'Q', and 'K' count as '11', '12', and '13' respectively."
    )
    rules = Rules(face=(5, 7, 2))
    assert [rules.value(r) for r in ("J", "Q", "K", "A", "10")] == [5, 7, 2, 1, 10]
    assert "J Q K count as 5 7 2." in task_prompt(
        Hand.from_cards(["SJ", "H3", "C4", "D5"], rules), layout="compact"
    )
    assert Rules(face=[4, 4, 4]).face == (4, 4, 4)  # YAML lists become tuples
    with pytest.raises(ValueError, match="three ints"):
        Rules(face=(0, 12, 13))


def test_general_rules_deal_verify_and_enumerate():
    rules = Rules(face=(13, 1, 6), require_face=True)
    multisets = number_multisets(rules)
    assert multisets and all({13, 1, 6} & set(m) for m in multisets)
    hand = Hand.from_cards(["SJ", "HQ", "CK", "D4"], Rules(face=(13, 1, 6)))
    assert hand.numbers == (13, 1, 6, 4)
    assert verify('{"formula": "(13-1)*(6-4)"}', hand).success
    # the paper's presets are unchanged: 566 ID and 796 rule-OOD solvable multisets
    assert len(number_multisets(Rules.id())) == 566
    assert len(number_multisets(Rules.rule_ood())) == 796


def test_corpus_never_states_the_studys_rules_and_is_deterministic():
    examples = gp_corpus(300, seed=5)
    assert examples == gp_corpus(300, seed=5)
    assert examples != gp_corpus(300, seed=6)
    faces = {tuple(e["face"]) for e in examples}
    assert not faces & HELD_OUT_FACES
    assert any(max(f) > 10 for f in faces)  # values 11-13 appear on other rules
    prompts = [e["messages"][0]["content"] for e in examples]
    assert not any("count as 10." in p or "count as 11 12 13." in p for p in prompts)
    revisions = [e for e in examples if len(e["messages"]) > 2]
    assert 0.1 < len(revisions) / len(examples) < 0.4
    for example in revisions:
        assert example["messages"][2]["content"].startswith("You failed this trial because")
    targets = {e["target"] for e in examples}
    assert 24 in targets and len(targets) > 3


def test_corpus_answers_are_correct_under_their_own_rule():
    for example in gp_corpus(100, seed=1, config=GPCorpusConfig(revision=0.0)):
        rules = Rules(face=tuple(example["face"]), target=example["target"])
        hand = Hand.from_cards(example["cards"], rules)
        assert verify(example["messages"][-1]["content"], hand).success


def test_batches_group_lengths_and_cover_the_corpus():
    lengths = [10] * 500 + [100] * 500
    config = PretrainConfig(steps=15, batch_size=64)
    batches = batch_order(lengths, config)
    assert len(batches) == 15 and all(len(b) == 64 for b in batches)
    mixed = sum(len({lengths[i] for i in b}) > 1 for b in batches)
    assert mixed <= 2  # at most the batch that straddles a length boundary in a window
    assert batch_order(lengths, config) == batches


def test_cosine_schedule_warms_up_and_decays():
    config = PretrainConfig(steps=100, warmup_steps=10, learning_rate=1e-3, min_lr_ratio=0.1)
    assert cosine_lr(0, config) == pytest.approx(1e-4)
    assert cosine_lr(9, config) == pytest.approx(1e-3)
    assert cosine_lr(99, config) == pytest.approx(1e-4, rel=0.05)


def test_unmasked_right_padding_gives_the_masked_loss():
    from sftvrl.models import ModelConfig, load_policy

    policy = load_policy(ModelConfig(name_or_path="tiny-text"))
    corpus = tokenise(gp_corpus(4, seed=2), policy.tokenizer)
    batch = corpus.batch([0, 1, 2, 3], policy.tokenizer.pad_token_id)
    attention = (batch["labels"] != -100) | (batch["input_ids"] != policy.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = policy.model(**batch).loss
        masked = policy.model(**batch, attention_mask=attention.long()).loss
    assert plain.item() == pytest.approx(masked.item(), rel=1e-5)
    assert isinstance(corpus, TokenisedCorpus) and len(corpus.sha256) == 64


def test_pretraining_learns_and_writes_a_loadable_checkpoint_with_its_manifest(tmp_path):
    from sftvrl.models import ModelConfig, load_policy

    config = PretrainConfig(
        n_examples=256, steps=30, batch_size=16, warmup_steps=5, learning_rate=3e-3, threads=1
    )
    result = pretrain(config, tmp_path / "a", command="sftvrl pretrain-tiny test", eval_episodes=4)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5 - 1.0
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["command"] == "sftvrl pretrain-tiny test"
    assert manifest["weights_sha256"] == result.weights_sha256
    assert manifest["corpus_sha256"] == result.corpus_sha256
    assert set(manifest["scores"]) >= {"id_success_at_1", "rule_ood_success_at_5"}
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "a")))
    assert not policy.vision and policy.tokenizer.chat_template
    again = pretrain(config, tmp_path / "b", eval_episodes=4)
    assert again.weights_sha256 == result.weights_sha256  # same config, same weights


@pytest.mark.parametrize("name", ["tiny-text-gp", "tiny-text-virl", "tiny-vlm-gp", "tiny-vlm-virl"])
def test_a_shipped_foundation_matches_its_manifest_and_its_command_rebuilds_its_config(name):
    """The manifest's command, run today, would build with the manifest's config."""
    import shlex

    from sftvrl.config import apply_overrides, config_to_dict
    from sftvrl.models import ModelConfig, load_policy
    from sftvrl.tiny import PretrainExperiment, foundation_info

    info = foundation_info(name)
    program, _, options = info["command"].partition("sftvrl pretrain-tiny")
    assert program == ""
    experiment = apply_overrides(PretrainExperiment(), shlex.split(options))
    assert info["config"] == json.loads(json.dumps(config_to_dict(experiment.pretrain)))
    family = experiment.pretrain.family
    vision = family.endswith("_vl")
    gp = family.startswith("general_points")
    budget = "5" if gp else "2"
    splits = ("id", "rule_ood") + ((("visual_ood",) if gp else ("mini",)) if vision else ())
    for split in splits:
        assert 0 <= info["scores"][next(k for k in info["scores"] if k.startswith(split))] <= 1
        assert any(k.startswith(split) and k.endswith("_at_" + budget) for k in info["scores"])
        if vision:
            assert 0 <= info["scores"][f"{split}_recognition"] <= 1
    policy = load_policy(ModelConfig(name_or_path=name))
    assert policy.vision == vision and policy.model.num_parameters() > 1_000_000
    assert len(policy.tokenizer) == experiment.pretrain.vocab_size


def test_the_gp_foundation_scores_below_on_the_rule_it_never_saw():
    from sftvrl.tiny import foundation_info

    scores = foundation_info("tiny-text-gp")["scores"]
    assert 0 < scores["rule_ood_success_at_5"] < scores["id_success_at_5"] < 1


# -- the GP-VL foundation: the text foundation given eyes ------------------------------------------


def test_the_vision_corpus_holds_the_same_rules_and_hands_in_gp_vl_form():
    text, vision = gp_corpus(40, seed=5), gp_corpus(40, seed=5, vision=True)
    for t, v in zip(text, vision, strict=True):
        assert (t["face"], t["target"], t["cards"]) == (v["face"], v["target"], v["cards"])
        first = v["messages"][0]["content"]
        assert first[0]["type"] == "image" and "Cards: in the image." in first[1]["text"]
        assert "images" not in v  # rendered per batch at the model's size
        assert len(t["messages"]) == len(v["messages"])
    black = gp_corpus(60, seed=5, config=GPCorpusConfig(suits="black"), vision=True)
    assert {card[0] for example in black for card in example["cards"]} == {"S", "C"}


@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    st.integers(1, 60),
)
def test_expanding_the_image_token_repeats_it_without_loss(tokens, count):
    from sftvrl.tiny.vision import expand_image_token

    image = 7
    mask = [int(t % 2 == 0) for t in tokens]
    ids, out_mask = expand_image_token(tokens, mask, image, count)
    n_images = tokens.count(image)
    assert len(ids) == len(out_mask) == len(tokens) + n_images * (count - 1)
    assert [t for t in ids if t != image] == [t for t in tokens if t != image]
    assert all(m == 0 for t, m in zip(ids, out_mask, strict=True) if t == image)
    assert sum(out_mask) == sum(m for t, m in zip(tokens, mask, strict=True) if t != image)


def test_the_grafted_vlm_reads_text_exactly_as_its_text_foundation():
    from sftvrl.models import ModelConfig, load_policy
    from sftvrl.tiny.vision import VisionFoundationConfig, graft_vlm

    text = load_policy(ModelConfig(name_or_path="tiny-text-gp"))
    vlm = graft_vlm(VisionFoundationConfig(), seed=0)
    ids = text.tokenizer("Cards: 3 4 5 6. Use each card once", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = text.model(input_ids=ids).logits
        got = vlm.model(input_ids=ids).logits
    assert vlm.vision and vlm.tokenizer is not None
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_recognition_probe_reads_the_towers_last_pass():
    from sftvrl.tiny.vision import RecognitionProbe, VisionFoundationConfig, graft_vlm, hand_batch

    vlm = graft_vlm(VisionFoundationConfig(), seed=0)
    probe = RecognitionProbe(vlm.model)
    with pytest.raises(RuntimeError, match="run the model"):
        probe.loss(torch.zeros(1, 4, dtype=torch.long))
    hands = hand_batch([["SA", "C10", "SK", "C7"]], vlm.processor, 112)
    assert hands["targets"].tolist() == [[0, 9, 12, 6]]
    vlm.model.model.vision_tower(pixel_values=hands["pixel_values"])
    loss = probe.loss(hands["targets"])
    assert loss.item() == pytest.approx(torch.log(torch.tensor(13.0)).item(), rel=0.2)
    probe.remove()
    vlm.model.model.vision_tower(pixel_values=hands["pixel_values"])
    with pytest.raises(RuntimeError):  # detached: it heard nothing
        probe.loss(hands["targets"])


def test_vision_pretraining_learns_to_read_cards_and_saves_a_plain_llava(tmp_path):
    from sftvrl.models import ModelConfig, load_policy

    config = PretrainConfig(
        family="general_points_vl", n_examples=96, steps=40, batch_size=8, warmup_steps=4, threads=1
    )
    result = pretrain(config, tmp_path / "vl", command="sftvrl pretrain-tiny test", eval_episodes=2)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5 - 1.0
    assert {"visual_ood_success_at_5", "id_recognition", "rule_ood_n"} <= set(result.scores)
    policy = load_policy(ModelConfig(name_or_path=str(tmp_path / "vl")))
    assert policy.vision
    assert not any("read_out" in name for name, _ in policy.model.named_parameters())
    text = load_policy(ModelConfig(name_or_path="tiny-text-gp"))
    assert len(policy.tokenizer) == len(text.tokenizer)

"""SFT data: expert answers verify, trajectories carry real feedback, everything is reproducible."""

import pytest

from sftvrl.data import (
    build_sft_dataset,
    content_hash,
    expert_examples,
    make_task_env,
    save_sft_dataset,
    suboptimal_examples,
)
from sftvrl.envs.general_points import Hand, Rules, verify


def _text(content):
    return (
        content
        if isinstance(content, str)
        else next(p["text"] for p in content if p["type"] == "text")
    )


@pytest.mark.parametrize("task", ["gp-l", "gp-vl"])
@pytest.mark.parametrize("split", ["id", "rule_ood"])
def test_gp_expert_examples_are_correct_answers(task, split):
    vision = task == "gp-vl"
    examples = expert_examples(task, 20, split=split, seed=3, image_width=112)
    assert len(examples) == 20
    for example in examples:
        user, assistant = example["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        hand = Hand.from_cards(example["cards"], Rules.for_split(split, vision=vision))
        assert verify(_text(assistant["content"]), hand, vision=vision).success
        assert ("Cards:" in _text(user["content"])) != vision
        assert ("images" in example) == vision


@pytest.mark.parametrize("task", ["virl-l", "virl-vl"])
def test_virl_expert_examples_cover_every_point(task):
    kwargs = {"split": "mini"} | ({"view_size": 64} if task == "virl-vl" else {})
    examples = expert_examples(task, 3, **kwargs)
    env = make_task_env(task, **kwargs)
    points = 0
    for i in range(3):
        env.reset(seed=i)
        points += len(env.unwrapped.rail.entries)
    assert len(examples) == points
    assert {e["rail_index"] for e in examples} >= {0, 1}
    for example in examples:
        assert example["expected_action"] in _text(example["messages"][1]["content"])


def test_suboptimal_trajectories_end_correct_with_real_feedback():
    for example in suboptimal_examples(30, seed=5):
        messages = example["messages"]
        hand = Hand.from_cards(example["cards"], Rules.id())
        roles = [m["role"] for m in messages]
        assert roles == ["user"] + ["assistant", "user"] * ((len(messages) - 2) // 2) + [
            "assistant"
        ]
        for wrong, feedback in zip(messages[1:-1:2], messages[2:-1:2], strict=True):
            verdict = verify(wrong["content"], hand)
            assert not verdict.success
            assert feedback["content"] == "You failed this trial because " + verdict.message
        assert verify(messages[-1]["content"], hand).success


def test_rule_ood_mistakes_include_reading_faces_as_ten():
    texts = [
        m["content"]
        for e in suboptimal_examples(60, split="rule_ood", seed=1)
        for m in e["messages"][1:-1:2]
    ]
    assert any("you used invalid numbers: [10]" in t or '"10' in t for t in texts)


def test_determinism_and_hash():
    a = suboptimal_examples(5, vision=True, seed=1, image_width=112)
    b = suboptimal_examples(5, vision=True, seed=1, image_width=112)
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(
        suboptimal_examples(5, vision=True, seed=2, image_width=112)
    )
    assert content_hash(expert_examples("gp-l", 5, seed=4)) == content_hash(
        expert_examples("gp-l", 5, seed=4)
    )


def test_dataset_round_trip(tmp_path):
    from datasets import load_from_disk

    dataset = build_sft_dataset("gp-vl", 6, seed=0, image_width=112)
    path = save_sft_dataset(dataset, tmp_path / "gp_vl")
    loaded = load_from_disk(str(path))
    assert loaded.num_rows == 6 and loaded[0]["images"][0].size == (112, 42)
    assert '"sha256"' in (path / "meta.json").read_text()
    assert build_sft_dataset("gp-l", 4, suboptimal=True, split="rule_ood").num_rows == 4


def test_errors():
    with pytest.raises(ValueError, match="unknown task"):
        expert_examples("gp-xl", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="GeneralPoints"):
        build_sft_dataset("virl-l", 1, suboptimal=True)

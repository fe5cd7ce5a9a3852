"""SFT data: expert answers verify, trajectories carry real feedback, everything is reproducible."""

import pytest

from sftvrl.data import build_sft_dataset, content_hash, gp_examples, save_sft_dataset
from sftvrl.envs.general_points import Hand, Rules, verify


def _text(content):
    return (
        content
        if isinstance(content, str)
        else next(p["text"] for p in content if p["type"] == "text")
    )


@pytest.mark.parametrize("task", ["gp-l", "gp-vl"])
@pytest.mark.parametrize("split", ["id", "rule_ood"])
def test_expert_examples_are_correct_answers(task, split):
    vision = task == "gp-vl"
    for example in gp_examples(task, 20, split=split, seed=3):
        user, assistant = example["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        hand = Hand.from_cards(example["cards"], Rules.for_split(split, vision=vision))
        assert verify(_text(assistant["content"]), hand, vision=vision).success
        assert ("Cards:" in _text(user["content"])) != vision
        assert ("images" in example) == vision


def test_suboptimal_trajectories_end_correct_with_real_feedback():
    for example in gp_examples("gp-l", 30, split="id", seed=5, suboptimal=True):
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


def test_determinism_and_hash():
    a = gp_examples("gp-vl", 5, seed=1, suboptimal=True, image_width=112)
    b = gp_examples("gp-vl", 5, seed=1, suboptimal=True, image_width=112)
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(gp_examples("gp-vl", 5, seed=2, image_width=112))


def test_dataset_round_trip(tmp_path):
    from datasets import load_from_disk

    dataset = build_sft_dataset("gp-vl", 6, seed=0, image_width=112)
    path = save_sft_dataset(dataset, tmp_path / "gp_vl")
    loaded = load_from_disk(str(path))
    assert loaded.num_rows == 6 and loaded[0]["images"][0].size == (112, 42)
    assert '"sha256"' in (path / "meta.json").read_text()


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        gp_examples("gp-xl", 1)  # type: ignore[arg-type]

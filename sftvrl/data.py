"""SFT data: expert single-turn answers and sub-optimal multi-turn trajectories, reproducibly.

Every example is a chat (``messages``) in the prompt layout of the tier, exactly what the model will
see at evaluation time; vision examples carry their image in ``images`` and an image part in the
first user turn. Datasets are deterministic from a seed and carry a content hash, so two runs can
prove they trained on the same data.

- *Expert data* (paper App. C.1): one user turn (the task) and the optimal answer.
- *Sub-optimal trajectories* (paper Fig. 15): wrong answers, the verifier's real feedback
  ("You failed this trial because ..."), then the correct answer — every assistant turn is a target.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sftvrl.envs.general_points import (
    Hand,
    Rules,
    deal,
    expert_formula,
    render_hand,
    solutions,
    verify,
)
from sftvrl.envs.general_points.arithmetic import TOKEN_PATTERN
from sftvrl.prompts.general_points import Layout, feedback_prompt, response_text, task_prompt

Task = Literal["gp-l", "gp-vl"]
GP_TASKS: dict[str, bool] = {"gp-l": False, "gp-vl": True}
"""GeneralPoints task names and whether they are the vision variant."""


def _turn(role: str, text: str, vision: bool, image: bool = False) -> dict[str, Any]:
    """A chat turn; vision chats use content parts throughout (datasets needs one type per column)."""
    if not vision:
        return {"role": role, "content": text}
    parts: list[dict[str, Any]] = [{"type": "image", "text": None}] if image else []
    parts.append({"type": "text", "text": text})
    return {"role": role, "content": parts}


def _check_task(task: str) -> bool:
    if task not in GP_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(GP_TASKS)}")
    return GP_TASKS[task]


def gp_expert_example(
    hand: Hand, *, vision: bool, layout: Layout = "paper", image_width: int = 448
) -> dict[str, Any]:
    """One single-turn expert example for a hand."""
    prompt = task_prompt(hand, vision=vision, layout=layout)
    answer = response_text(hand, expert_formula(hand), layout=layout)
    example: dict[str, Any] = {
        "messages": [_turn("user", prompt, vision, image=True), _turn("assistant", answer, vision)],
        "cards": list(hand.cards),
        "numbers": list(hand.numbers),
    }
    if vision:
        example["images"] = [render_hand(hand.cards, width=image_width)]
    return example


def _wrong_answer(hand: Hand, rng: random.Random, layout: Layout) -> str:
    """A plausible mistake: a wrong value, a misread face card, a wrong number or a broken formula."""
    target = hand.rules.target
    formula = expert_formula(hand)
    tokens = TOKEN_PATTERN.findall(formula)
    kind = rng.choice(["value", "face", "number", "syntax"])
    if kind == "face" and hand.rules.face == "jqk" and max(hand.numbers) > 10:
        # the memorised training rule: J/Q/K read as 10
        tokens = [str(min(int(t), 10)) if t.isdigit() else t for t in tokens]
    elif kind in ("value", "face"):
        ops = [i for i, t in enumerate(tokens) if t in "+-*/"]
        for _ in range(20):
            candidate = list(tokens)
            candidate[rng.choice(ops)] = rng.choice("+-*/")
            if "".join(candidate) not in solutions(hand.numbers, target):
                tokens = candidate
                break
    elif kind == "number":
        digits = [i for i, t in enumerate(tokens) if t.isdigit()]
        index = rng.choice(digits)
        tokens[index] = str(int(tokens[index]) % 13 + 1)
    else:
        tokens = tokens[: rng.randrange(1, len(tokens))]
        tokens.append(rng.choice(["+", "(", "*"]))
    wrong = "".join(tokens)
    return response_text(hand, wrong, layout=layout)


def gp_suboptimal_example(
    hand: Hand,
    rng: random.Random,
    *,
    vision: bool,
    layout: Layout = "paper",
    max_mistakes: int = 3,
    mode: Literal["exact", "paper"] = "exact",
    image_width: int = 448,
) -> dict[str, Any]:
    """Wrong answers with the verifier's real feedback, then the expert answer (all trained on)."""
    example = gp_expert_example(hand, vision=vision, layout=layout, image_width=image_width)
    first_user, expert = example["messages"]
    messages = [first_user]
    for _ in range(rng.randint(1, max_mistakes)):
        wrong = _wrong_answer(hand, rng, layout)
        verdict = verify(wrong, hand, vision=vision, mode=mode)
        if verdict.success:  # a lucky "mistake" that is right after all: stop here
            break
        messages += [
            _turn("assistant", wrong, vision),
            _turn("user", feedback_prompt(verdict.message), vision),
        ]
    messages.append(expert)
    example["messages"] = messages
    return example


def _hands(rules: Rules, n: int, seed: int) -> Iterator[Hand]:
    rng = random.Random(seed)
    for _ in range(n):
        yield deal(rules, rng)


def gp_examples(
    task: Task,
    n: int,
    *,
    split: str = "id",
    layout: Layout = "paper",
    seed: int = 0,
    suboptimal: bool = False,
    image_width: int = 448,
) -> list[dict[str, Any]]:
    """``n`` examples for a GeneralPoints task and split, deterministic from ``seed``."""
    vision = _check_task(task)
    rules = Rules.for_split(split, vision=vision)
    rng = random.Random(seed + 1)
    examples = []
    for hand in _hands(rules, n, seed):
        if suboptimal:
            example = gp_suboptimal_example(
                hand, rng, vision=vision, layout=layout, image_width=image_width
            )
        else:
            example = gp_expert_example(hand, vision=vision, layout=layout, image_width=image_width)
        examples.append(example)
    return examples


def content_hash(examples: list[dict[str, Any]]) -> str:
    """SHA-256 over the canonical JSON of every example (images by their PNG bytes)."""
    digest = hashlib.sha256()
    for example in examples:
        row = {k: v for k, v in example.items() if k != "images"}
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        for image in example.get("images", []):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            digest.update(buffer.getvalue())
    return digest.hexdigest()


def build_sft_dataset(
    task: Task,
    n: int,
    *,
    split: str = "id",
    layout: Layout = "paper",
    seed: int = 0,
    suboptimal: bool = False,
    image_width: int = 448,
):
    """A ``datasets.Dataset`` of SFT examples with its content hash in ``dataset.info.description``."""
    from datasets import Dataset

    examples = gp_examples(
        task,
        n,
        split=split,
        layout=layout,
        seed=seed,
        suboptimal=suboptimal,
        image_width=image_width,
    )
    digest = content_hash(examples)
    columns = {key: [example[key] for example in examples] for key in examples[0]}
    dataset = Dataset.from_dict(columns)
    meta = {"task": task, "n": n, "split": split, "layout": layout, "seed": seed}
    meta |= {"suboptimal": suboptimal, "image_width": image_width, "sha256": digest}
    dataset.info.description = json.dumps(meta)
    return dataset


def save_sft_dataset(dataset, path: str | Path) -> Path:
    """Save a dataset to disk with its metadata (and hash) in ``meta.json`` next to it."""
    path = Path(path)
    dataset.save_to_disk(str(path))
    (path / "meta.json").write_text(dataset.info.description + "\n")
    return path

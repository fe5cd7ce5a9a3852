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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sftvrl.chat import text_of, turn
from sftvrl.envs.general_points import (
    GeneralPointsEnv,
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
from sftvrl.train.rollout import Request, Response, rollout

Task = Literal["gp-l", "gp-vl", "virl-l", "virl-vl"]
TASKS: dict[str, tuple[str, bool]] = {
    "gp-l": ("general_points", False),
    "gp-vl": ("general_points", True),
    "virl-l": ("virl", False),
    "virl-vl": ("virl", True),
}
"""The paper's four tasks: environment family and whether it is the vision variant."""

_STATE_KEYS = {
    "general_points": ("cards", "numbers"),
    "virl": ("route_id", "rail_index", "expected_action"),
}
"""What each example records about the state it was made from (for audits and diagnostics)."""


def _check_task(task: str) -> tuple[str, bool]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


def make_task_env(task: Task, **env_kwargs: Any):
    """The environment of a task (``gp-l``, ``gp-vl``, ``virl-l``, ``virl-vl``) with its options."""
    family, vision = _check_task(task)
    if family == "general_points":
        return GeneralPointsEnv(vision=vision, **env_kwargs)
    from sftvrl.envs.virl import VirlEnv

    return VirlEnv(vision=vision, **env_kwargs)


def expert_examples(
    task: Task, n_episodes: int, *, seed: int = 0, **env_kwargs: Any
) -> list[dict[str, Any]]:
    """Single-turn expert examples from ``n_episodes`` expert episodes (paper App. C.1).

    GeneralPoints gives one example per hand; V-IRL one per point of each route (the prompt is
    rebuilt at every point, so every point is a single-turn example). ``env_kwargs`` go to the
    environment: ``split``, ``prompt`` (the layout), ``image_width`` / ``view_size``, ...
    """
    family, vision = _check_task(task)
    keys = _STATE_KEYS[family]
    examples: list[dict[str, Any]] = []

    def record(requests: Sequence[Request]) -> list[Response]:
        responses = []
        for request in requests:
            answer = request.env.expert_response()
            text = text_of(request.conversation[-1])
            example = {
                "messages": [
                    turn("user", text, vision=vision, image=vision),
                    turn("assistant", answer, vision=vision),
                ],
                **{key: _jsonable(request.info[key]) for key in keys},
            }
            if vision:
                example["images"] = [request.image]
            examples.append(example)
            responses.append(Response(answer))
        return responses

    rollout(lambda: make_task_env(task, **env_kwargs), record, n_episodes, seed=seed)
    return examples


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
    prompt = task_prompt(hand, vision=vision, layout=layout)
    messages = [turn("user", prompt, vision=vision, image=vision)]
    for _ in range(rng.randint(1, max_mistakes)):
        wrong = _wrong_answer(hand, rng, layout)
        verdict = verify(wrong, hand, vision=vision, mode=mode)
        if verdict.success:  # a lucky "mistake" that is right after all: stop here
            break
        messages += [
            turn("assistant", wrong, vision=vision),
            turn("user", feedback_prompt(verdict.message), vision=vision),
        ]
    messages.append(
        turn("assistant", response_text(hand, expert_formula(hand), layout=layout), vision=vision)
    )
    example: dict[str, Any] = {
        "messages": messages,
        "cards": list(hand.cards),
        "numbers": list(hand.numbers),
    }
    if vision:
        example["images"] = [render_hand(hand.cards, width=image_width)]
    return example


def suboptimal_examples(
    n: int,
    *,
    vision: bool = False,
    split: str = "id",
    prompt: Layout = "paper",
    seed: int = 0,
    max_mistakes: int = 3,
    image_width: int = 448,
) -> list[dict[str, Any]]:
    """``n`` GeneralPoints trajectories with mistakes (the paper's Fig. 15 ablation), from ``seed``."""
    rules = Rules.for_split(split, vision=vision)
    deal_rng, mistake_rng = random.Random(seed), random.Random(seed + 1)
    return [
        gp_suboptimal_example(
            deal(rules, deal_rng),
            mistake_rng,
            vision=vision,
            layout=prompt,
            max_mistakes=max_mistakes,
            image_width=image_width,
        )
        for _ in range(n)
    ]


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
    task: Task, n: int, *, seed: int = 0, suboptimal: bool = False, **options: Any
):
    """A ``datasets.Dataset`` of SFT chats, its content hash in ``dataset.info.description``.

    Expert data for any task (``options`` go to the environment, e.g. ``split``, ``prompt``), or
    with ``suboptimal=True`` GeneralPoints trajectories with mistakes (``options``: ``split``,
    ``prompt``, ``max_mistakes``, ``image_width``).
    """
    from datasets import Dataset

    family, vision = _check_task(task)
    if suboptimal:
        if family != "general_points":
            raise ValueError("sub-optimal trajectories exist for GeneralPoints tasks only")
        examples = suboptimal_examples(n, vision=vision, seed=seed, **options)
    else:
        examples = expert_examples(task, n, seed=seed, **options)
    columns = {key: [example[key] for example in examples] for key in examples[0]}
    dataset = Dataset.from_dict(columns)
    meta = {"task": task, "n": n, "seed": seed, "suboptimal": suboptimal, **options}
    dataset.info.description = json.dumps(meta | {"sha256": content_hash(examples)})
    return dataset


def save_sft_dataset(dataset, path: str | Path) -> Path:
    """Save a dataset to disk with its metadata (and hash) in ``meta.json`` next to it."""
    path = Path(path)
    dataset.save_to_disk(str(path))
    (path / "meta.json").write_text(dataset.info.description + "\n")
    return path

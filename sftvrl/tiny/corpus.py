"""The tiny tier's foundation corpus for GeneralPoints: rule reading on rules it is never tested on.

The paper's question needs a base model that already reads a rule written in its prompt and
already knows how to revise an answer from a verifier's feedback. A pilot that pretrained on the
exact ID and OOD rules (``../shared/research/TINY_PILOT.md``) turned OOD into recall; so this
corpus follows its lessons:

- **Rules vary and are stated in the text**: J/Q/K get values drawn per example, either one value
  for all three ("J Q K count as 7.") or three values ("J Q K count as 3 11 6."), and the target
  varies. The two rules of the study never appear: not J/Q/K = 10 (the ID rule, which Init's
  short SFT must teach) and not J/Q/K = 11/12/13 (the rule-OOD test). Values 11-13 do appear on
  other rules, so OOD asks for a composition (read a new rule, do known arithmetic), not recall.
- **A procedure to sharpen**: a share of the examples are the paper's sequential revision
  (a wrong answer, the verifier's real feedback "You failed this trial because ...", the right
  answer), so the base model has seen feedback and revision before RL asks it to use them.
- **The paper's answer layout**, compact prompt: the same text the environment shows at evaluation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sftvrl.chat import turn
from sftvrl.data import gp_suboptimal_example
from sftvrl.envs.general_points import Rules, deal, expert_formula
from sftvrl.prompts.general_points import response_text, task_prompt

HELD_OUT_FACES: frozenset[tuple[int, int, int]] = frozenset({(10, 10, 10), (11, 12, 13)})
"""J/Q/K assignments the corpus never uses: the study's ID rule and its rule-OOD rule."""


@dataclass(frozen=True)
class GPCorpusConfig:
    """The mixture of the GeneralPoints foundation corpus (fractions of examples)."""

    uniform_face: float = 0.4
    """Share of rules with one value for J, Q and K (like the ID rule's shape); else three values."""
    target_24: float = 0.9
    """Share of examples whose target is 24; the rest draw from ``other_targets``."""
    other_targets: tuple[int, ...] = (12, 16, 18, 20, 21, 28, 30, 36)
    revision: float = 0.25
    """Share of examples that are sequential revision: mistakes, feedback, then the answer."""
    max_mistakes: int = 1
    suits: str = "all"
    """Suits the hands are dealt in: ``all``, or ``black`` to keep GP-VL's visual-OOD hands (red
    suits) out of a vision corpus, as the study's rules are kept out."""


def sample_rules(rng: random.Random, config: GPCorpusConfig) -> Rules:
    """A rule for one corpus example: random J/Q/K values (never the held-out ones) and target."""
    while True:
        if rng.random() < config.uniform_face:
            value = rng.randint(1, 13)
            face = (value, value, value)
        else:
            face = (rng.randint(1, 13), rng.randint(1, 13), rng.randint(1, 13))
        if face not in HELD_OUT_FACES:
            break
    target = 24 if rng.random() < config.target_24 else rng.choice(config.other_targets)
    return Rules(face=face, target=target, suits=config.suits)


_DROPPED_IMAGE_WIDTH = 32
"""The revision helper renders its hand; the corpus drops that image (a batch renders its own at
the model's size), so it asks for a small one."""


def gp_corpus_example(
    rng: random.Random, config: GPCorpusConfig, *, vision: bool = False
) -> dict[str, Any]:
    """One chat of the corpus (``messages`` plus the rule and hand it was made from).

    ``vision``: the GP-VL form of the same chat (the cards only in the image, which is not stored:
    ``cards`` says what to render). The random draws are the same, so ``vision`` changes the
    chats' form, never which rules and hands they hold.
    """
    rules = sample_rules(rng, config)
    hand = deal(rules, rng)
    if rng.random() < config.revision:
        example = gp_suboptimal_example(
            hand,
            rng,
            vision=vision,
            layout="compact",
            max_mistakes=config.max_mistakes,
            image_width=_DROPPED_IMAGE_WIDTH,
        )
        messages = example["messages"]
    else:
        messages = [
            turn(
                "user",
                task_prompt(hand, layout="compact", vision=vision),
                vision=vision,
                image=vision,
            ),
            turn(
                "assistant",
                response_text(hand, expert_formula(hand), layout="compact"),
                vision=vision,
            ),
        ]
    return {
        "messages": messages,
        "face": list(rules.face_values),
        "target": rules.target,
        "cards": list(hand.cards),
    }


def gp_corpus(
    n: int, *, seed: int = 0, config: GPCorpusConfig | None = None, vision: bool = False
) -> list[dict]:
    """``n`` corpus chats, deterministic from ``seed`` (``vision``: in GP-VL's form)."""
    config = config or GPCorpusConfig()
    rng = random.Random(seed)
    return [gp_corpus_example(rng, config, vision=vision) for _ in range(n)]

"""The tiny tier's foundation corpus for V-IRL: reading an action vocabulary it is never tested on.

V-IRL's rule shift is the action vocabulary: the ID rule turns to compass directions (all eight),
the rule-OOD rule turns left / right / slightly left / slightly right. Every turn sentence of an
instruction names both words ("Turn left to face west."), so a model that reads the allowed list
in its prompt can answer under either rule, and a model that memorised "answer the compass word"
fails OOD: the paper's situation. This corpus teaches the reading on other vocabularies, following
the lessons of ``../shared/research/TINY_PILOT.md`` as the GeneralPoints corpus does:

- **The vocabulary varies and is stated in the prompt**: each chat lists a random proper subset of
  the compass words or of the relative words (those the route needs, plus others), in random
  order. The study's two lists, all eight compass words and all four relative words, never
  appear; so Init's short SFT must teach the ID list and the OOD list is new to every model.
- **Other cities**: routes come from synthetic cities of other seeds than the study's (seed 0),
  so no evaluated route is in the corpus.
- **Revision**: a share of the chats are the paper's sequential revision (a wrong action, the
  verifier's real feedback, the right answer).
- **The layout the study uses**: the compact V-IRL-L prompt and answer of the environment, one
  chat per rail point (the prompt is rebuilt at every point, as in the paper's data).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from typing import Any

from sftvrl.chat import turn
from sftvrl.envs.virl import VirlEnv
from sftvrl.envs.virl.geometry import COMPASS, FORWARD, RELATIVE, STOP, turn_action, turn_word
from sftvrl.envs.virl.model import Rail
from sftvrl.envs.virl.verifier import verify
from sftvrl.prompts.feedback import feedback_prompt
from sftvrl.prompts.virl import COMPACT_SCHEMA, compact_prompt, expert_response

HELD_OUT_VOCABULARIES: frozenset[frozenset[str]] = frozenset(
    {frozenset(COMPASS), frozenset(RELATIVE)}
)
"""Turn vocabularies the corpus never lists: the study's ID rule and its rule-OOD rule."""


@dataclass(frozen=True)
class VirlCorpusConfig:
    """The mixture of the V-IRL foundation corpus (fractions of chats) and where routes come from."""

    compass: float = 0.5
    """Share of chats whose vocabulary is compass words; the rest list relative words."""
    revision: float = 0.15
    """Share of chats that are sequential revision: a wrong action, feedback, then the answer."""
    city_seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    """Synthetic cities the routes come from (the study's city is seed 0)."""


@cache
def city_env(city_seed: int) -> VirlEnv:
    """The V-IRL-L environment of a corpus city (cached: building a city takes a while)."""
    return VirlEnv(split="id", seed=city_seed, prompt="compact")


def needed_words(rail: Rail, *, absolute: bool) -> list[str]:
    """The turn words the rail's expert actions use under a rule (compass or relative)."""
    words: list[str] = []
    for entry in rail.entries:
        word = turn_word(entry.action(absolute))
        if word is not None and word not in words:
            words.append(word)
    return words


def sample_vocabulary(
    rng: random.Random, family: tuple[str, ...], needed: list[str]
) -> list[str] | None:
    """A random proper subset of ``family`` that contains ``needed``, shuffled; None if the rail
    needs the whole family (it cannot be stated without a held-out list)."""
    if len(needed) >= len(family):
        return None
    extra = [word for word in family if word not in needed]
    lowest = max(len(needed), 2) - len(needed)
    count = rng.randint(min(lowest, len(extra) - 1), len(extra) - 1)
    words = needed + rng.sample(extra, count)
    rng.shuffle(words)
    return words


def _wrong_answer(answer: str, words: list[str], rng: random.Random) -> str:
    """The expert ``answer`` with a wrong action from the listed vocabulary (or forward/stop)."""
    fields = json.loads(answer)
    right = fields["action"]
    options = [turn_action(word) for word in words] + [FORWARD, STOP]
    fields["action"] = rng.choice([option for option in options if option != right])
    return json.dumps(fields, ensure_ascii=False)


def virl_corpus_example(
    rng: random.Random, config: VirlCorpusConfig, *, vision: bool = False
) -> dict[str, Any]:
    """One chat of the corpus: ``messages``, the listed vocabulary, and the rail point it shows
    (``city_env(city_seed).reset(seed=episode_seed)`` rebuilds the rail).

    ``vision``: the V-IRL-VL form of the same chat. The current observation line no longer names
    the landmark (the image of the four views at that rail point does, and the answer's
    observation must say it); the random draws are the same, so ``vision`` changes the form only.
    """
    while True:
        city_seed, episode_seed = rng.choice(config.city_seeds), rng.randrange(2**31)
        env = city_env(city_seed)
        env.reset(seed=episode_seed)
        rail = env.rail
        absolute = rng.random() < config.compass
        words = sample_vocabulary(
            rng, COMPASS if absolute else RELATIVE, needed_words(rail, absolute=absolute)
        )
        if words is not None:
            break
    index = rng.randrange(len(rail.entries))
    prompt = compact_prompt(rail, index, absolute=absolute, turns=words, vision=vision)
    answer = expert_response(rail, index, absolute=absolute, style="compact")
    messages = [turn("user", prompt, vision=vision, image=vision)]
    if rng.random() < config.revision:
        wrong = _wrong_answer(answer, words, rng)
        verdict = verify(
            wrong, rail.entries[index], absolute=absolute, mode="exact", schema=COMPACT_SCHEMA
        )
        messages += [
            turn("assistant", wrong, vision=vision),
            turn("user", feedback_prompt(verdict.message), vision=vision),
        ]
    messages.append(turn("assistant", answer, vision=vision))
    return {
        "messages": messages,
        "vocabulary": words,
        "city_seed": city_seed,
        "episode_seed": episode_seed,
        "rail_index": index,
    }


def virl_corpus(
    n: int, *, seed: int = 0, config: VirlCorpusConfig | None = None, vision: bool = False
) -> list[dict]:
    """``n`` corpus chats, deterministic from ``seed`` (``vision``: in V-IRL-VL's form)."""
    config = config or VirlCorpusConfig()
    rng = random.Random(seed)
    return [virl_corpus_example(rng, config, vision=vision) for _ in range(n)]

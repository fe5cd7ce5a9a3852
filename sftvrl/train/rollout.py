"""Batched multi-turn rollouts with the paper's sequential revision, for evaluation and RL.

The official code generates one answer at a time. Here a pool of ``batch_size`` episodes advances
together: every round asks the responder for all waiting turns at once (one batched, KV-cached
``generate``), steps each environment, and refills finished slots with new episodes, so the batch
stays full across episodes *and* turns.

The conversation follows the paper: the task prompt (with the image first for vision tasks), the
model's answer, the verifier's "You failed this trial because ..." turn, the next answer, ... An
environment that moves to a new state (V-IRL after a correct action) says so with
``info["new_conversation"]``; the conversation then restarts from ``info["prompt"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from sftvrl.chat import turn

logger = logging.getLogger(__name__)

Conversation = list[dict[str, Any]]


@dataclass
class Request:
    """One turn waiting for an answer: the chat so far, its image (vision tasks), the env (for
    oracle responders) and the env's latest ``info``."""

    conversation: Conversation
    image: Image.Image | None
    env: Any
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Response:
    """An answer; model responders also return the token ids RL needs."""

    text: str
    prompt_ids: Any = None
    response_ids: Any = None


class Responder(Protocol):
    """Anything that answers a batch of requests: a model, the expert, a scripted agent."""

    def __call__(self, requests: Sequence[Request]) -> Sequence[Response]: ...


@dataclass
class Turn:
    """One verified (or step-limit) turn of an episode."""

    response: Response
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    image: Image.Image | None = None
    """The image the answer was given for (vision tasks), so RL can score the turn again."""


@dataclass
class Episode:
    """A finished episode; ``index`` is its position in the requested order."""

    index: int
    reset_info: dict[str, Any]
    turns: list[Turn] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.turns) and self.turns[-1].terminated and self.turns[-1].reward > 0

    @property
    def total_reward(self) -> float:
        return float(sum(turn.reward for turn in self.turns))


def _as_image(observation: Any) -> Image.Image | None:
    if isinstance(observation, np.ndarray) and observation.ndim == 3:
        return Image.fromarray(observation)
    return None


@dataclass
class _Slot:
    episode: Episode
    env: Any
    conversation: Conversation
    image: Image.Image | None
    vision: bool
    info: dict[str, Any]


def rollout(
    make_env: Callable[[], Any],
    responder: Responder,
    n_episodes: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    reset_options: Sequence[dict[str, Any] | None] | None = None,
    max_turns: int = 64,
    progress: bool = False,
) -> list[Episode]:
    """Play ``n_episodes`` episodes, ``batch_size`` at a time, and return them in order.

    Episode ``i`` is reset with ``seed + i`` (and ``reset_options[i]`` if given), so results do not
    depend on the batch size or on which slot an episode ran in. ``max_turns`` guards against an
    environment that never ends.
    """
    if reset_options is not None and len(reset_options) != n_episodes:
        raise ValueError(
            f"reset_options has {len(reset_options)} entries for {n_episodes} episodes"
        )
    envs = [make_env() for _ in range(min(batch_size, n_episodes))]
    free_envs = list(envs)
    finished: list[Episode] = []
    slots: list[_Slot] = []
    next_index = 0
    bar = tqdm(total=n_episodes, desc="rollout", unit="ep", disable=not progress)

    def start(env: Any, index: int) -> _Slot:
        options = reset_options[index] if reset_options is not None else None
        observation, info = env.reset(seed=seed + index, options=options)
        vision = bool(getattr(env.unwrapped, "vision", False))
        image = _as_image(observation) if vision else None
        conversation = [turn("user", info["prompt"], vision=vision, image=vision)]
        return _Slot(Episode(index, info), env, conversation, image, vision, info)

    while next_index < n_episodes or slots:
        while free_envs and next_index < n_episodes:
            slots.append(start(free_envs.pop(), next_index))
            next_index += 1
        requests = [Request(s.conversation, s.image, s.env.unwrapped, s.info) for s in slots]
        responses = responder(requests)
        if len(responses) != len(requests):
            raise RuntimeError(f"responder returned {len(responses)} answers for {len(requests)}")
        still_running = []
        for slot, response in zip(slots, responses, strict=True):
            observation, reward, terminated, truncated, info = slot.env.step(response.text)
            slot.episode.turns.append(
                Turn(response, float(reward), terminated, truncated, info, slot.image)
            )
            over = terminated or truncated or len(slot.episode.turns) >= max_turns
            if over:
                if not (terminated or truncated):
                    logger.warning(
                        "episode %d stopped after %d turns", slot.episode.index, max_turns
                    )
                finished.append(slot.episode)
                free_envs.append(slot.env)
                bar.update(1)
                continue
            slot.info = info
            if info.get("new_conversation"):
                image = _as_image(observation) if slot.vision else None
                slot.image = image
                slot.conversation = [
                    turn("user", info["prompt"], vision=slot.vision, image=slot.vision)
                ]
            else:
                slot.conversation = [
                    *slot.conversation,
                    turn("assistant", response.text, vision=slot.vision),
                    turn("user", info["prompt"], vision=slot.vision),
                ]
            still_running.append(slot)
        slots = still_running
    bar.close()
    for env in envs:
        env.close()
    return sorted(finished, key=lambda episode: episode.index)


class ExpertResponder:
    """Answers every request with the environment's expert response (an oracle agent)."""

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(request.env.expert_response()) for request in requests]


class ScriptedResponder:
    """Answers with a fixed function of the request (tests, baselines such as a random agent)."""

    def __init__(self, answer: Callable[[Request], str]) -> None:
        self.answer = answer

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(self.answer(request)) for request in requests]

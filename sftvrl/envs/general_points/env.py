"""``GeneralPointsEnv``: the GeneralPoints game as a gymnasium environment with sequential revision.

``reset`` deals a solvable hand; ``step(model_text)`` verifies the answer. A wrong answer does not
end the episode: the verifier's message comes back (``info["feedback"]``, and the next user turn
"You failed this trial because ..." in ``info["prompt"]``) and the model tries again, up to
``verify_iter`` verified attempts. A correct answer terminates the episode.

Step limit. ``step_limit="paper"`` (the default in ``mode="paper"``) reproduces the official env:
after ``verify_iter`` failed attempts the episode goes on for one more call, which is not verified
and returns -1 with feedback "step_limit_reached", ``truncated=True``. ``step_limit="exact"`` (the
default otherwise) truncates on the last verified attempt itself, so no answer is generated just
to be thrown away.

Observations: GP-L gives the next user turn as text; GP-VL gives the rendered table as a uint8
array (the same image every turn, as in the paper) with the text in ``info["prompt"]``. Once the
episode is over ``info["prompt"]`` is None and the GP-L observation is the verifier's message.
"""

from __future__ import annotations

import random
import string
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sftvrl.envs.general_points.cards import Hand, deal
from sftvrl.envs.general_points.expert import expert_formula
from sftvrl.envs.general_points.render import hand_to_array
from sftvrl.envs.general_points.rules import Rules
from sftvrl.envs.general_points.solver import solutions
from sftvrl.envs.general_points.verifier import REWARDS, Mode, Outcome, Verdict, verify
from sftvrl.prompts.general_points import Layout, feedback_prompt, response_text, task_prompt

STEP_LIMIT_REWARD = -1.0
STEP_LIMIT_MESSAGE = "step_limit_reached"
MAX_TEXT_LENGTH = 1 << 20


class GeneralPointsEnv(gym.Env):
    """Make ``rules.target`` from the dealt cards; text (GP-L) or image (GP-VL) observations.

    Args:
        vision: GP-VL (rendered cards, recognition checked) instead of GP-L.
        split: ``"id"``, ``"rule_ood"`` or ``"visual_ood"``; picks the preset :class:`Rules`.
        rules: an explicit rule instead of a split preset.
        verify_iter: verified attempts per episode (the paper uses 5; 1 for recognition tests).
        mode: verifier mode, ``"exact"`` or ``"paper"`` (see :mod:`.verifier`).
        prompt: prompt layout, ``"paper"`` or ``"compact"``.
        step_limit: ``"paper"`` or ``"exact"`` (see the module docstring); follows ``mode``.
        image_width: width of the GP-VL table image in pixels.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        *,
        vision: bool = False,
        split: str = "id",
        rules: Rules | None = None,
        verify_iter: int = 5,
        mode: Mode = "exact",
        prompt: Layout = "paper",
        step_limit: Literal["paper", "exact"] | None = None,
        image_width: int = 448,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if verify_iter < 1:
            raise ValueError(f"verify_iter must be at least 1, got {verify_iter}")
        if mode not in ("exact", "paper"):
            raise ValueError(f"unknown verifier mode {mode!r}; expected 'exact' or 'paper'")
        self.vision = vision
        self.split = split
        self.rules = rules or Rules.for_split(split, vision=vision)
        self.verify_iter = verify_iter
        self.mode: Mode = mode
        self.prompt_layout: Layout = prompt
        self.step_limit = step_limit or ("paper" if mode == "paper" else "exact")
        if self.step_limit not in ("paper", "exact"):
            raise ValueError(f"step_limit must be 'paper' or 'exact', got {step_limit!r}")
        self.image_width = image_width
        self.render_mode = render_mode

        text_space = spaces.Text(max_length=MAX_TEXT_LENGTH, charset=string.printable)
        self.action_space = text_space
        if vision:
            shape = hand_to_array(["SA"] * self.rules.n_cards, width=image_width).shape
            self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        else:
            self.observation_space = text_space

        self.hand: Hand | None = None
        self.attempts = 0
        self.done = False
        self.history: list[tuple[str, Verdict]] = []
        self._image: np.ndarray | None = None
        self._rng = random.Random()

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Deal a new hand; ``options={"cards": [...]}`` (or ``{"hand": Hand}``) sets it instead."""
        super().reset(seed=seed)
        if seed is not None:
            self._rng = random.Random(int(self.np_random.integers(2**63)))
        options = options or {}
        if "hand" in options:
            self.hand = options["hand"]
        elif "cards" in options:
            self.hand = Hand.from_cards(options["cards"], self.rules)
        else:
            self.hand = deal(self.rules, self._rng)
        self.attempts = 0
        self.done = False
        self.history = []
        self._image = (
            hand_to_array(self.hand.cards, width=self.image_width) if self.vision else None
        )
        prompt = task_prompt(self.hand, self.rules, vision=self.vision, layout=self.prompt_layout)
        return self._observation(prompt), self._info(prompt, None)

    def step(self, action: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Verify one answer; returns ``(obs, reward, terminated, truncated, info)``."""
        if self.hand is None or self.done:
            raise RuntimeError("the episode is over (or never started): call reset() first")
        if self.attempts >= self.verify_iter:  # only reachable with the paper's step limit
            self.done = True
            verdict = Verdict(STEP_LIMIT_REWARD, Outcome.STEP_LIMIT, STEP_LIMIT_MESSAGE)
            self.history.append((action, verdict))
            info = self._info(None, verdict, step_limit=True)
            return self._observation(STEP_LIMIT_MESSAGE), STEP_LIMIT_REWARD, False, True, info

        verdict = verify(action, self.hand, self.rules, vision=self.vision, mode=self.mode)
        self.attempts += 1
        self.history.append((action, verdict))
        terminated = verdict.success
        truncated = (
            not terminated and self.step_limit == "exact" and self.attempts >= self.verify_iter
        )
        self.done = terminated or truncated
        prompt = None if self.done else feedback_prompt(verdict.message)
        obs = self._observation(prompt or verdict.message)
        return obs, float(verdict.reward), terminated, truncated, self._info(prompt, verdict)

    def render(self) -> np.ndarray | None:
        """The table image of the current hand (both variants), or None before the first reset."""
        if self.hand is None:
            return None
        if self._image is None:
            self._image = hand_to_array(self.hand.cards, width=self.image_width)
        return self._image

    # -- helpers for trainers, evaluation and the widget ------------------------------------------
    def expert_response(self) -> str:
        """An optimal answer for the current hand, in the env's prompt layout."""
        if self.hand is None:
            raise RuntimeError("call reset() before asking for the expert response")
        return response_text(self.hand, expert_formula(self.hand), layout=self.prompt_layout)

    def solutions(self) -> list[str]:
        """Every solution formula of the current hand (the official solver's strings)."""
        if self.hand is None:
            raise RuntimeError("call reset() first")
        return solutions(self.hand.numbers, self.rules.target)

    def _observation(self, text: str) -> Any:
        if self.vision:
            assert self._image is not None
            return self._image.copy()  # callers may keep or modify observations
        return text

    def _info(self, prompt: str | None, verdict: Verdict | None, step_limit: bool = False) -> dict:
        assert self.hand is not None
        return {
            "cards": self.hand.cards,
            "ranks": self.hand.ranks,
            "numbers": self.hand.numbers,
            "prompt": prompt,
            "attempt": self.attempts,
            "attempts_left": max(self.verify_iter - self.attempts, 0),
            "feedback": None if verdict is None else verdict.message,
            "verdict": verdict,
            "outcome": None if verdict is None else verdict.outcome.value,
            "success": bool(verdict is not None and verdict.success),
            "step_limit": step_limit,
            "formula": None if verdict is None else verdict.formula,
            "new_conversation": verdict is None,
        }


__all__ = ["REWARDS", "GeneralPointsEnv"]

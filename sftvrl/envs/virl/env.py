"""The V-IRL navigation environment (V-IRL-L text, V-IRL-VL vision) as a gymnasium ``Env``.

One episode walks one route's expert rail. ``step`` takes the raw model text, grades it with the
verifier, and implements sequential revision as the official env does (VIRL.md §1.6): a correct
action moves the agent on (``stop()`` at the destination ends in success); a wrong one is not
executed and the next user turn is "You failed this trial because <feedback>"; each point allows
``verify_iter`` graded calls, and the next call ends the episode ungraded (reward −1, truncated).
Per-step accuracy counts every call, the ungraded one included, as the paper does.
After a correct action the prompt is rebuilt for the new point, so ``info["new_conversation"]`` is
True and a rollout starts a fresh chat from ``info["prompt"]`` (as the official trainer does).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Module import (not names): stays valid while sftvrl.prompts imports this package.
from sftvrl.prompts import virl as vprompts
from sftvrl.prompts.feedback import feedback_prompt

from .model import Rail
from .parser import MAX_CHARS
from .rail import DROP_RATE, STRAIGHT_LINE_LENGTH, build_rail
from .sources import SPLITS, RouteSource, SyntheticSource
from .verifier import MSG_STEP_LIMIT, STEP_LIMIT, Mode, verify
from .views import LAYOUTS

Rule = Literal["absolute", "relative"]
_CHARSET = (
    string.printable + "".join(chr(c) for c in range(0xA0, 0x250)) + "\u2018\u2019\u201c\u201d"
)


class VirlEnv(gym.Env):
    """V-IRL navigation by instructions; ``vision=False`` is V-IRL-L, ``vision=True`` V-IRL-VL.

    Args:
        vision: observe the 2×2 street-view grid (uint8 HxWx3) instead of the prompt text.
        split: ``id`` | ``heldout`` | ``rule_ood`` | ``visual_ood`` | ``mini`` (see ``sources``).
        source: ``"synthetic"`` or a folder with the released V-IRL data (``real.RealSource``).
        verify_iter: graded attempts per rail point (official V-IRL config: 2).
        mode: ``exact`` (default; fixes the official quirks) or ``paper`` (reproduces them).
        prompt: ``paper`` (official layout) or ``compact`` (short, for tiny models).
        rule: action space; default relative for ``rule_ood``, absolute otherwise.
        layout: view grid layout, ``prompt`` (front, right, back, left; exact default) or
            ``diagonal`` (the official code's −135/−45/+45/+135; paper default).
        view_size: pixels per view (the official code uses 1200 inside a 2405 canvas).
        seed: city seed of the synthetic source (the episode seed goes to ``reset``).
    """

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        vision: bool = False,
        split: str = "id",
        source: str | Path | RouteSource = "synthetic",
        *,
        verify_iter: int = 2,
        mode: Mode = "exact",
        prompt: vprompts.PromptStyle = "paper",
        rule: Rule | None = None,
        layout: str | None = None,
        view_size: int = 320,
        seed: int = 0,
        style: str | None = None,
        drop_rate: float = DROP_RATE,
        straight_line_length: int = STRAIGHT_LINE_LENGTH,
        only_json: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if mode not in ("exact", "paper"):
            raise ValueError(f"mode must be 'exact' or 'paper', got {mode!r}")
        if prompt not in ("paper", "compact"):
            raise ValueError(f"prompt must be 'paper' or 'compact', got {prompt!r}")
        if split not in SPLITS:
            raise ValueError(f"unknown V-IRL split {split!r}; use one of {list(SPLITS)}")
        if rule is None:
            rule = "relative" if split == "rule_ood" else "absolute"
        if rule not in ("absolute", "relative"):
            raise ValueError(f"rule must be 'absolute' or 'relative', got {rule!r}")
        layout = layout or ("diagonal" if mode == "paper" else "prompt")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown view layout {layout!r}; use one of {sorted(LAYOUTS)}")
        if not isinstance(verify_iter, int) or verify_iter < 1:
            raise ValueError(f"verify_iter must be a positive int, got {verify_iter!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.vision = vision
        self.split = split
        self.mode: Mode = mode
        self.prompt_style: vprompts.PromptStyle = prompt
        self.rule: Rule = rule
        self.layout = layout
        self.view_size = int(view_size)
        self.verify_iter = verify_iter
        self.drop_rate = drop_rate
        self.straight_line_length = straight_line_length
        self.only_json = only_json
        self.render_mode = render_mode
        self.source = self._make_source(source, split, seed, style)
        if len(self.source) == 0:
            raise ValueError(f"the {split!r} split of this source holds no routes")
        side = 2 * self.view_size + 5
        if vision:
            self.observation_space = spaces.Box(0, 255, (side, side, 3), dtype=np.uint8)
        else:
            self.observation_space = spaces.Text(max_length=200_000, charset=_CHARSET)
        self.action_space = spaces.Text(max_length=MAX_CHARS, charset=_CHARSET)
        self._rail: Rail | None = None
        self._route_index = -1
        self._next_ordered = 0
        self._index = 0
        self._remaining = verify_iter
        self._done = True
        self._grid: np.ndarray | None = None
        self.log: list[dict[str, Any]] = []

    @staticmethod
    def _make_source(
        source: str | Path | RouteSource, split: str, seed: int, style: str | None
    ) -> RouteSource:
        if isinstance(source, str) and source == "synthetic":
            return SyntheticSource(split, seed=seed, style=style)
        if isinstance(source, str | Path):
            from .real import RealSource

            return RealSource(Path(source), split)
        return source

    # -- properties ----------------------------------------------------------------------------
    @property
    def absolute(self) -> bool:
        """True under the absolute (compass) action rule."""
        return self.rule == "absolute"

    @property
    def rail(self) -> Rail:
        """The current episode's expert rail."""
        if self._rail is None:
            raise RuntimeError("no episode yet; call reset() first")
        return self._rail

    @property
    def rail_index(self) -> int:
        """Position of the agent on the rail."""
        return self._index

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start a route: ``options={"route_index": i}`` picks one, else random (or in order)."""
        super().reset(seed=seed)
        options = options or {}
        if "route_index" in options:
            i = int(options["route_index"])
            if not 0 <= i < len(self.source):
                raise ValueError(f"route_index {i} out of range 0..{len(self.source) - 1}")
        elif self.source.ordered:
            i = self._next_ordered % len(self.source)
            self._next_ordered += 1
        else:
            i = int(self.np_random.integers(len(self.source)))
        self._route_index = i
        self._rail = build_rail(
            self.source.route(i),
            self.np_random,
            self.source.snapper(i),
            wrap=self.mode == "exact",
            drop_rate=self.drop_rate,
            straight_line_length=self.straight_line_length,
        )
        self._index = 0
        self._remaining = self.verify_iter
        self._done = False
        self._grid = None
        self.log = []
        prompt = self._prompt()
        info = self._info(prompt=prompt)
        info.update(feedback=None, outcome=None, correct_action=False, new_conversation=True)
        return self._observation(prompt), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Grade the model text ``action`` at the current rail point (see the module docstring)."""
        if self._done:
            raise RuntimeError("the episode is over; call reset() before step()")
        rail = self.rail
        graded = self._index
        entry = rail.entries[graded]
        truth = entry.action(self.absolute)
        self._remaining -= 1
        attempt = self.verify_iter - self._remaining  # 1-based call number at this point
        terminated = truncated = False
        if self._remaining < 0:
            reward, outcome, feedback = STEP_LIMIT, "step_limit", MSG_STEP_LIMIT
            parsed_action = parsed_obs = None
            truncated = True
        else:
            verdict = verify(
                action,
                entry,
                absolute=self.absolute,
                mode=self.mode,
                schema=vprompts.output_schema(self.prompt_style),
            )
            reward, outcome, feedback = verdict.reward, verdict.outcome, verdict.message
            parsed_action, parsed_obs = verdict.action, verdict.parsed.observation
            if verdict.correct:
                if entry.kind == "stop":
                    terminated = True
                else:
                    self._index += 1
                    self._remaining = self.verify_iter
                    self._grid = None
        success = terminated
        self._done = terminated or truncated
        if outcome == "correct" and not terminated:
            prompt = self._prompt()
        else:
            prompt = feedback_prompt(feedback) if outcome != "correct" else ""
        record = {
            "graded_index": graded,
            "attempt": attempt,
            "model_text": action if isinstance(action, str) else repr(action),
            "parsed_action": parsed_action,
            "reward": reward,
            "outcome": outcome,
        }
        self.log.append(record)
        info = self._info(prompt=prompt)
        info.update(
            feedback=feedback,
            outcome=outcome,
            correct_action=outcome == "correct",
            new_conversation=outcome == "correct" and not self._done,
            graded_index=graded,
            graded_kind=entry.kind,
            graded_landmark_obs=entry.landmark_obs,
            attempt=attempt,
            gt_action=truth,
            parsed_action=parsed_action,
            parsed_observation=parsed_obs,
            route_done=self._done,
            is_success=success,
        )
        obs = self._observation(prompt)
        return obs, float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current view grid (``render_mode="rgb_array"``), also for V-IRL-L."""
        if self.render_mode != "rgb_array":
            return None
        return self._views()

    # -- helpers -------------------------------------------------------------------------------
    def expert_response(self) -> str:
        """The optimal answer text for the current state (the SFT target)."""
        return vprompts.expert_response(
            self.rail, self._index, absolute=self.absolute, style=self.prompt_style
        )

    def current_prompt(self) -> str:
        """The full prompt of the current rail position (as rebuilt after a correct step)."""
        return self._prompt()

    def _prompt(self) -> str:
        layout_text = (
            "[front, right / back, left]"
            if self.layout == "prompt"
            else "[left-behind, left-front / right-front, right-behind]"
        )
        return vprompts.build_prompt(
            self.rail,
            self._index,
            absolute=self.absolute,
            vision=self.vision,
            style=self.prompt_style,
            only_json=self.only_json,
            layout_text=layout_text,
        )

    def _views(self) -> np.ndarray:
        if self._grid is None:
            entry = self.rail.entries[self._index]
            self._grid = self.source.render(
                self._route_index, entry, layout=self.layout, size=self.view_size
            )
        return self._grid

    def _observation(self, prompt: str) -> Any:
        return self._views() if self.vision else prompt

    def _info(self, *, prompt: str) -> dict[str, Any]:
        rail = self.rail
        entry = rail.entries[self._index]
        return {
            "prompt": prompt,
            "base_prompt": self._prompt(),
            "route_id": rail.route.route_id,
            "route_index": self._route_index,
            "style": self.source.style(self._route_index),
            "split": self.split,
            "rule": self.rule,
            "mode": self.mode,
            "instruction": rail.instruction,
            "rail_index": self._index,
            "rail_length": len(rail.entries),
            "kind": entry.kind,
            "current_instruction": entry.instruction,
            "instruction_index": entry.instruction_index,
            "observation_text": entry.observation,
            "landmark": entry.landmark,
            "expected_action": entry.action(self.absolute),
            "remaining_attempts": max(self._remaining, 0),
        }

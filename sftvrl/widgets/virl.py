"""``VirlWalk``: step through a V-IRL route and compare the model's action with the expert's.

At each point of the route's expert rail the widget shows the instruction (the sentence to execute
now highlighted), what the agent observes (text for V-IRL-L, the 2×2 street-view grid for
V-IRL-VL), the expert's action, and, on request, the model's answer to the very prompt the
environment would give it, graded by the V-IRL verifier. "Expert step" walks on with the expert.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
from PIL import Image

from sftvrl.chat import turn
from sftvrl.envs.virl import SPLITS, VirlEnv
from sftvrl.envs.virl import verify as verify_action
from sftvrl.prompts.virl import output_schema
from sftvrl.train.rollout import Request
from sftvrl.widgets.common import (
    STYLE,
    VIRL_FOUNDATIONS,
    ModelPicker,
    box,
    check_variant,
    conversation_text,
    details,
    disabled,
    esc,
    guarded,
    png_bytes,
    responder_for,
)

_WIDE = {"description_width": "initial"}


class VirlWalk:
    """A V-IRL route walker: instruction, view grid, expert action vs the model's action.

    Args:
        split: the route split (``"id"``, ``"heldout"``, ``"rule_ood"``, ``"visual_ood"``,
            ``"mini"``); ``rule_ood`` uses the relative action rule, as in the paper.
        vision: V-IRL-VL (the model sees the view grid) instead of V-IRL-L.
        route: index of the route in the split.
        mode, prompt: the verifier mode and prompt layout of :class:`VirlEnv`.
        model: ``"tiny-text"``, ``"tiny-vlm"``, ``"expert"``, a checkpoint folder or an HF id.
        max_new_tokens, temperature: how the model samples.
        view_size: pixels per street view (the grid is twice that).
        seed: city seed of the synthetic routes and of the model's sampling.
    """

    def __init__(
        self,
        *,
        split: str = "id",
        vision: bool = False,
        route: int = 0,
        mode: str = "exact",
        prompt: str = "paper",
        model: str = "tiny-text",
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        view_size: int = 160,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown V-IRL split {split!r}; use one of {list(SPLITS)}")
        self.view_size = view_size
        self.seed = seed
        self.env: VirlEnv | None = None
        self.info: dict[str, Any] = {}
        self.done = False
        self.last_error: Exception | None = None
        self.last_answer: str | None = None
        self.last_verdict: Any = None
        self._asks = 0
        self._env_key: tuple[Any, ...] | None = None
        self._starting = False

        self.split = w.Dropdown(
            options=SPLITS, value=split, description="split", layout=w.Layout(width="200px")
        )
        self.variant = w.ToggleButtons(
            options=(("Text (V-IRL-L)", False), ("Vision (V-IRL-VL)", True)),
            value=vision,
            style={"button_width": "140px"},
        )
        self.mode = w.Dropdown(
            options=(("exact verifier", "exact"), ("paper verifier", "paper")),
            value=mode,
            layout=w.Layout(width="140px"),
        )
        self.prompt_layout = w.Dropdown(
            options=(("paper prompt", "paper"), ("compact prompt", "compact")),
            value=prompt,
            layout=w.Layout(width="140px"),
        )
        self.route = w.BoundedIntText(
            value=route,
            min=0,
            max=10**6,
            description="route",
            style=_WIDE,
            layout=w.Layout(width="130px"),
        )
        self.start_button = w.Button(description="Start route", icon="refresh")
        self.expert_button = w.Button(
            description="Expert step", button_style="primary", icon="step-forward"
        )
        self.ask_button = w.Button(description="Ask the model", button_style="warning", icon="play")
        self.picker = ModelPicker(model, VIRL_FOUNDATIONS)
        self.max_new_tokens = w.BoundedIntText(
            value=max_new_tokens,
            min=1,
            max=4096,
            description="max tokens",
            style=_WIDE,
            layout=w.Layout(width="150px"),
        )
        self.temperature = w.BoundedFloatText(
            value=temperature,
            min=0.0,
            max=5.0,
            step=0.1,
            description="temperature",
            style=_WIDE,
            layout=w.Layout(width="150px"),
        )
        self.header = w.HTML()
        self.instruction = w.HTML()
        side = 2 * view_size + 5
        self.image = w.Image(format="png", layout=w.Layout(width=f"{side}px", flex="none"))
        self.observation = w.HTML()
        self.model_view = w.HTML()
        self.status = w.HTML()
        for widget, name in [
            (self.expert_button, "expert"),
            (self.ask_button, "ask"),
            (self.start_button, "start"),
            (self.header, "header"),
            (self.image, "image"),
            (self.observation, "observation"),
            (self.model_view, "model"),
            (self.status, "status"),
        ]:
            widget.add_class(f"sftvrl-virl-{name}")

        title = w.HTML(
            STYLE + '<div class="sftvrl-title">V-IRL: follow the instructions through the city'
            "</div>"
        )
        self.widget = w.VBox(
            [
                title,
                w.HBox([self.variant, self.split, self.route, self.mode, self.start_button]),
                self.header,
                w.HBox([self.image, self.instruction]),
                self.observation,
                self.status,
                w.HBox([self.picker.choice, self.picker.path, self.ask_button, self.expert_button]),
                w.HBox([self.prompt_layout, self.max_new_tokens, self.temperature]),
                self.model_view,
            ]
        )
        self.widget.add_class("sftvrl-app")
        self.widget.add_class("sftvrl-virl")

        self.start_button.on_click(lambda _b: self.start())
        self.expert_button.on_click(lambda _b: self.expert_step())
        self.ask_button.on_click(lambda _b: self.ask_model())
        for control in (self.split, self.variant, self.mode, self.prompt_layout, self.route):
            control.observe(self._on_setting, "value")
        self.variant.observe(lambda c: self.picker.follow_variant(bool(c["new"])), "value")
        self.picker.choice.observe(self._on_model_choice, "value")
        self.start()

    @property
    def vision(self) -> bool:
        """Whether the walk is V-IRL-VL (the model sees the view grid)."""
        return bool(self.variant.value)

    # -- actions ------------------------------------------------------------------------------
    @guarded("status", "Starting the route")
    def start(self, route: int | None = None) -> dict[str, Any] | None:
        """(Re)start the walk at the first point of route ``route`` (default: the route box's)."""
        self._starting = True  # the route box may be clamped below: no nested restart
        try:
            env = self._environment()
            self.route.max = len(env.source) - 1
            if route is not None:
                self.route.value = min(max(int(route), 0), self.route.max)
            _, self.info = env.reset(seed=self.seed, options={"route_index": self.route.value})
        finally:
            self._starting = False
        self.done = False
        self.model_view.value = ""
        self.status.value = ""
        self._show()
        return self.info

    @guarded("status", "Expert step")
    def expert_step(self) -> dict[str, Any] | None:
        """Walk on with the expert's action (a route ends with ``stop()`` at the destination)."""
        env = self._require_env()
        if self.done:
            raise ValueError("the route is finished; press Start route to walk it again")
        _, _, terminated, truncated, info = env.step(env.expert_response())
        self.info = info
        self.done = terminated or truncated
        self.model_view.value = ""
        self._show()
        return info

    @guarded("model_view", "Asking the model")
    def ask_model(self) -> Any:
        """The model's answer at this point, graded against the expert action (not executed)."""
        env = self._require_env()
        if self.done:
            raise ValueError("the route is finished; press Start route to walk it again")
        vision = self.vision
        with disabled([self.ask_button, self.expert_button, self.start_button]):
            name = self.picker.name
            if not self.picker.loaded(name):
                self.model_view.value = box(f"Loading <b>{esc(name)}</b>…", "pending")
            name, model = self.picker.load()
            check_variant(name, model, vision)
            self.model_view.value = box(f"{esc(name)} is answering…", "pending")
            prompt = env.current_prompt()
            conversation = [turn("user", prompt, vision=vision, image=vision)]
            image = Image.fromarray(env.render()) if vision else None
            request = Request(conversation, image, env, dict(self.info))
            responder = responder_for(
                model,
                max_new_tokens=int(self.max_new_tokens.value),
                temperature=float(self.temperature.value),
                seed=self.seed * 1_000_003 + self._asks,
            )
            (response,) = responder([request])
        self._asks += 1
        entry = env.rail.entries[env.rail_index]
        verdict = verify_action(
            response.text,
            entry,
            absolute=env.absolute,
            mode=env.mode,
            schema=output_schema(env.prompt_style),
        )
        self.last_answer, self.last_verdict = response.text, verdict
        expert = entry.action(env.absolute)
        same = "matches" if verdict.correct else "differs from"
        action = esc(verdict.action) if verdict.action else '<span class="sftvrl-muted">none</span>'
        self.model_view.value = box(
            f"<b>{esc(name)}</b>: action <code>{action}</code> {same} the expert's "
            f"<code>{esc(expert)}</code> · reward {verdict.reward:+g} · {esc(verdict.outcome)}"
            f"<br>verifier: {esc(verdict.message, 600)}<br>answer:<pre>{esc(response.text)}</pre>"
            + details("prompt the model saw", conversation_text(model, conversation)),
            "ok" if verdict.correct else "bad",
            "sftvrl-virl-answer",
        )
        return verdict

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- helpers ------------------------------------------------------------------------------
    def _on_setting(self, _change: dict[str, Any]) -> None:
        if not self._starting:
            self.start()

    def _on_model_choice(self, change: dict[str, Any]) -> None:
        if change["new"] in ("tiny-text", "tiny-vlm"):
            self.variant.value = change["new"] == "tiny-vlm"

    def _environment(self) -> VirlEnv:
        key = (self.split.value, self.vision, self.mode.value, self.prompt_layout.value)
        if self.env is None or key != self._env_key:
            self.env = VirlEnv(
                vision=self.vision,
                split=self.split.value,
                mode=self.mode.value,
                prompt=self.prompt_layout.value,
                view_size=self.view_size,
                seed=self.seed,
                render_mode="rgb_array",
            )
            self._env_key = key
        return self.env

    def _require_env(self) -> VirlEnv:
        if self.env is None or not self.info:
            raise ValueError("start a route first")
        return self.env

    def _show(self) -> None:
        env, info = self._require_env(), self.info
        rail = env.rail
        index = env.rail_index
        entry = rail.entries[index]
        lines = []
        for number, line in enumerate(rail.instruction.splitlines(), 1):
            current = number == entry.instruction_index and not self.done
            cls = ' class="sftvrl-current"' if current else ""
            lines.append(f"<div{cls}>{esc(line)}</div>")
        self.instruction.value = (
            '<div style="padding-left: 12px; max-width: 560px">'
            f"<b>Instruction</b> ({esc(info.get('route_id'))}, {esc(info.get('style'))})"
            f"{''.join(lines)}</div>"
        )
        self.image.value = png_bytes(env.render())
        rule = "absolute (compass)" if env.absolute else "relative (left / right)"
        state = "<b>arrived</b> (the expert said stop())" if self.done else f"kind {entry.kind}"
        self.header.value = (
            f"<div>Point {index + 1} of {len(rail.entries)} · {state} · action rule: {rule}</div>"
        )
        grid = "front, right / back, left" if env.layout == "prompt" else "diagonal views"
        seen = f"the view grid ({grid})" if self.vision else "this text"
        self.observation.value = (
            f"<div>observation: <code>{esc(entry.observation)}</code> "
            f'<span class="sftvrl-muted">(the model sees {seen})</span><br>'
            f"expert action: <code>{esc(entry.action(env.absolute))}</code></div>"
            + details("prompt at this point", env.current_prompt())
        )

"""Parts both widgets share: the model picker, error handling, and HTML helpers.

Library code never prints: every message, error included, goes into an HTML widget, so a failed
model load or a bad card code shows up in the app instead of as a traceback in a dead cell (a
widget callback's exception is otherwise only visible in the kernel log).
"""

from __future__ import annotations

import functools
import html
import io
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import gymnasium as gym
import ipywidgets as w
from PIL import Image

from sftvrl.chat import text_of
from sftvrl.train.rollout import ExpertResponder, Request, Response

EXPERT = "expert"
"""Model choice: the environment's oracle answer (shows what a correct answer looks like)."""
CUSTOM = "custom"
"""Model choice: a checkpoint folder (a run's Init / SFT / RL checkpoint) or an HF id."""
TINY_CHOICES: tuple[tuple[str, str], ...] = (
    ("tiny-text (random init: answers garbage)", "tiny-text"),
    ("tiny-vlm (random init: answers garbage)", "tiny-vlm"),
)
"""The built-in tiny models. Untrained, they answer noise; useful to try the UI on any machine."""
# The shipped tiny foundations (``data/tiny``), offered by the game they were pretrained for: they
# solve some hands / routes, in the compact prompt layout they were trained on.
GP_FOUNDATIONS: tuple[tuple[str, str], ...] = (
    ("tiny-text-gp (GP-L foundation; compact prompt)", "tiny-text-gp"),
    ("tiny-vlm-gp (GP-VL foundation; compact prompt)", "tiny-vlm-gp"),
)
VIRL_FOUNDATIONS: tuple[tuple[str, str], ...] = (
    ("tiny-text-virl (V-IRL-L foundation; compact prompt)", "tiny-text-virl"),
    ("tiny-vlm-virl (V-IRL-VL foundation; compact prompt)", "tiny-vlm-virl"),
)
VISION_TWIN = {
    "tiny-text": "tiny-vlm",
    "tiny-text-gp": "tiny-vlm-gp",
    "tiny-text-virl": "tiny-vlm-virl",
}
"""Text model -> its vision counterpart, which a picker switches to with the game's variant."""

MAX_SHOWN_CHARS = 2_000
"""Model answers longer than this are cut in the display (the verifier still reads all of it)."""
POLICY_CACHE_SIZE = 2
"""Loaded models kept in memory, shared by every widget in the kernel (most recent first out)."""

_POLICIES: OrderedDict[str, Any] = OrderedDict()

STYLE = """<style>
.sftvrl-app {font-size: 13px; line-height: 1.45;}
.sftvrl-title {font-size: 17px; font-weight: 600; margin: 2px 0 4px 0;}
.sftvrl-muted {color: #666;}
.sftvrl-chip {display: inline-block; min-width: 34px; padding: 6px 8px; margin: 2px 4px 2px 0;
  border: 1px solid #aaa; border-radius: 6px; background: #fff; text-align: center;
  font: 600 18px monospace;}
.sftvrl-red {color: #c8102e;}
.sftvrl-black {color: #141414;}
.sftvrl-box {border-left: 4px solid #999; background: rgba(127,127,127,0.08);
  padding: 6px 10px; margin: 4px 0;}
.sftvrl-ok {border-left-color: #2e7d32;}
.sftvrl-bad {border-left-color: #c62828;}
.sftvrl-warn {border-left-color: #ef6c00;}
.sftvrl-pending {border-left-color: #1565c0;}
.sftvrl-app pre {white-space: pre-wrap; word-break: break-all; margin: 3px 0; padding: 4px 6px;
  background: rgba(127,127,127,0.10); font-size: 12px; max-height: 220px; overflow: auto;}
.sftvrl-app details summary {cursor: pointer; color: #1565c0;}
.sftvrl-current {background: rgba(255, 213, 79, 0.45); font-weight: 600;}
.sftvrl-sol {display: inline-block; font-family: monospace; margin: 1px 10px 1px 0;}
</style>"""

F = TypeVar("F", bound=Callable[..., Any])


# -- HTML ------------------------------------------------------------------------------------


def _visible(ch: str) -> str:
    """A control character as its escape (models emit them; a browser would swallow them)."""
    if ch in "\n\t" or ch.isprintable():
        return ch
    return f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"


def esc(text: object, limit: int | None = MAX_SHOWN_CHARS) -> str:
    """``text`` safe for HTML: control characters made visible, long text cut with a note."""
    raw = "" if text is None else str(text)
    cut = ""
    if limit is not None and len(raw) > limit:
        cut = f"… ({len(raw) - limit:,} more characters)"
        raw = raw[:limit]
    return html.escape("".join(_visible(ch) for ch in raw)) + cut


def box(body: str, kind: str = "", cls: str = "") -> str:
    """A bordered message block; ``kind`` is ok / bad / warn / pending (the border's colour)."""
    kind_class = f" sftvrl-{kind}" if kind else ""
    extra = f" {cls}" if cls else ""
    return f'<div class="sftvrl-box{kind_class}{extra}">{body}</div>'


def details(summary: str, text: str) -> str:
    """A collapsed section (e.g. the prompt a model saw) that the user can expand."""
    return (
        f"<details><summary>{html.escape(summary)}</summary><pre>{esc(text, None)}</pre></details>"
    )


def error_html(err: BaseException, what: str) -> str:
    """An error as the user should see it: its message first, the traceback folded away.

    ``ValueError`` (``ModelLoadError`` included) carries a message written for users; other
    exceptions are unexpected, so their type is named too.
    """
    label = f"<b>{html.escape(what)} failed</b>"
    if not isinstance(err, ValueError):
        label += f" ({type(err).__name__})"
    trace = "".join(traceback.format_exception(err))
    return box(f"{label}: {esc(err, None)}" + details("traceback", trace), "bad", "sftvrl-error")


def guarded(where: str, what: str, *, keep: bool = False) -> Callable[[F], F]:
    """Run a widget action so that any exception is shown in the HTML widget ``where``.

    ``keep=True`` appends the error to what the widget already shows (e.g. the model's turns
    before it failed). The action returns None on failure; the exception is kept as
    ``self.last_error`` for code that drives the widget (and for tests).
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.last_error = None
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                self.last_error = err
                target = getattr(self, where)
                shown = error_html(err, what)
                target.value = target.value + shown if keep else shown
                return None

        return run  # type: ignore[return-value]

    return decorate


@contextmanager
def disabled(controls: Sequence[w.DOMWidget]) -> Iterator[None]:
    """Disable controls while a long action runs (clicks would queue up in the kernel)."""
    before = [control.disabled for control in controls]
    for control in controls:
        control.disabled = True
    try:
        yield
    finally:
        for control, was in zip(controls, before, strict=True):
            control.disabled = was


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image or a uint8 HxWx3 array, for an ``ipywidgets.Image``."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def on_commit(text: w.Text, callback: Callable[[str], Any]) -> None:
    """Call ``callback(value)`` when the user commits a non-empty value (Enter, or leaving the box).

    The box must have ``continuous_update=False``. Not the browser's ``submit`` event (what the
    deprecated ``Text.on_submit`` uses): ipywidgets sends it at once but holds back value updates
    while the kernel is busy, so it can arrive before the last keystrokes and read a stale value.
    """

    def handle(change: dict[str, Any]) -> None:
        if change["new"].strip():
            callback(change["new"])

    text.observe(handle, "value")


# -- models ----------------------------------------------------------------------------------


def is_policy(model: object) -> bool:
    """A loaded :class:`~sftvrl.models.Policy` (duck-typed: importing it costs seconds)."""
    return hasattr(model, "chat_inputs") and hasattr(model, "tokenizer")


def forget_models() -> None:
    """Drop the loaded models every widget of this kernel shares (frees their memory)."""
    _POLICIES.clear()


def load_cached(name: str) -> Any:
    """``load_policy`` by name, keeping the last few loaded models for the next question."""
    if name in _POLICIES:
        _POLICIES.move_to_end(name)
        return _POLICIES[name]
    from sftvrl.models import ModelConfig, load_policy

    policy = load_policy(ModelConfig(name_or_path=name))
    _POLICIES[name] = policy
    while len(_POLICIES) > POLICY_CACHE_SIZE:
        _POLICIES.popitem(last=False)
    return policy


def responder_for(model: Any, *, max_new_tokens: int, temperature: float, seed: int) -> Any:
    """A rollout responder for a policy (sampling as set in the widget) or a responder as is."""
    if not is_policy(model):
        return model
    from sftvrl.train.generation import PolicyResponder, SamplingConfig

    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    return PolicyResponder(model, sampling, seed=seed)


def conversation_text(model: Any, conversation: list[dict[str, Any]]) -> str:
    """What the model read: the chat-template text for a policy, role-tagged turns otherwise."""
    if is_policy(model):
        return model.render(conversation)
    return "\n\n".join(f"[{m['role']}]\n{text_of(m)}" for m in conversation)


def check_variant(name: str, model: Any, vision: bool) -> None:
    """A text model cannot see the cards, and a VLM needs the image: say so before generating."""
    if not is_policy(model) or bool(model.vision) == vision:
        return
    if model.vision:
        raise ValueError(
            f"{name} is a vision-language model but the game is in the text variant; "
            "switch the variant to Vision or pick a text model"
        )
    raise ValueError(
        f"{name} is a text-only model and cannot see the cards of the vision variant; "
        "switch the variant to Text or pick a vision-language model"
    )


class ModelPicker:
    """Choose who answers: a tiny model, the expert, a checkpoint folder or HF id, or a model
    added from code with :meth:`add` (e.g. a policy trained earlier in the notebook)."""

    def __init__(
        self, model: str = "tiny-text", foundations: tuple[tuple[str, str], ...] = ()
    ) -> None:
        options = [*TINY_CHOICES, *foundations, ("expert (oracle answers)", EXPERT)]
        options.append(("checkpoint folder or HF id…", CUSTOM))
        self.choice = w.Dropdown(
            options=options,
            description="Model",
            style={"description_width": "initial"},
            layout=w.Layout(width="330px"),
        )
        self.path = w.Text(
            placeholder="runs/<run>/checkpoint-… or org/model",
            description="folder / id",
            style={"description_width": "initial"},
            layout=w.Layout(width="360px"),
        )
        self.path.add_class("sftvrl-model-path")
        self._added: dict[str, Any] = {}
        self.choice.observe(self._show_path, "value")
        self.select(model)

    @property
    def name(self) -> str:
        """The chosen model's name: a tiny name, ``expert``, a folder, an HF id or an added name."""
        return self.path.value.strip() if self.choice.value == CUSTOM else self.choice.value

    def select(self, model: str) -> None:
        """Choose a listed model by name, or type anything else into the folder / id box."""
        values = [value for _, value in self.choice.options]
        if model in values:
            self.choice.value = model
        else:
            self.choice.value = CUSTOM
            self.path.value = model
        self._show_path()

    def add(self, name: str, model: Any) -> None:
        """Offer ``model`` (a loaded ``Policy`` or any rollout responder) under ``name``; select it."""
        if not name or name in (EXPERT, CUSTOM):
            raise ValueError(f"pick another name for the added model than {name!r}")
        self._added[name] = model
        options = [(label, value) for label, value in self.choice.options if value != name]
        self.choice.options = [*options[:-1], (name, name), options[-1]]
        self.choice.value = name

    def load(self) -> tuple[str, Any]:
        """The chosen model, loaded (cached) on first use; errors say what to type instead."""
        name = self.name
        if not name:
            raise ValueError(
                "type a checkpoint folder (e.g. a run's checkpoint) or a Hugging Face id into "
                "the folder / id box, or choose tiny-text / tiny-vlm"
            )
        if name in self._added:
            return name, self._added[name]
        if name == EXPERT:
            return name, ExpertResponder()
        return name, load_cached(name)

    def loaded(self, name: str) -> bool:
        """Whether asking ``name`` needs no loading first."""
        return name in self._added or name == EXPERT or name in _POLICIES

    def follow_variant(self, vision: bool) -> None:
        """Switch a tiny model to its text / vision twin with the game's variant (others stay)."""
        values = {value for _, value in self.choice.options}
        for text, image in VISION_TWIN.items():
            twin = image if vision else text
            if self.choice.value in (text, image) and twin in values:
                self.choice.value = twin
                return

    def _show_path(self, _change: object = None) -> None:
        self.path.layout.display = None if self.choice.value == CUSTOM else "none"


class RecordingResponder:
    """Wraps a responder to hear about each request before it is answered (turn-by-turn UI)."""

    def __init__(self, inner: Any, on_request: Callable[[Request], None]) -> None:
        self.inner = inner
        self.on_request = on_request

    def __call__(self, requests: Sequence[Request]) -> Sequence[Response]:
        for request in requests:
            self.on_request(request)
        return self.inner(requests)


class StepObserver(gym.Wrapper):
    """Reports every ``step`` of the wrapped env, so each verdict shows as soon as it exists."""

    def __init__(self, env: gym.Env, on_step: Callable[..., None]) -> None:
        super().__init__(env)
        self.on_step = on_step

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.on_step(action, float(reward), terminated, truncated, info)
        return observation, reward, terminated, truncated, info

"""``GeneralPointsGame``: play GeneralPoints in JupyterLab, against (or beside) a model.

Choose a rule (J/Q/K = 10 or 11/12/13, the target, the suits), the text or vision variant and a
model; deal a hand; type a formula and get the verifier's verdict; or ask the model and watch its
sequential revision turn by turn: each answer, what the parser read from it, the verifier's
feedback, until it succeeds or the verification budget runs out. Everything is scored by the same
:func:`~sftvrl.envs.general_points.verify` that RL rewards and evaluation use, and the model plays
through the same :class:`~sftvrl.envs.general_points.GeneralPointsEnv` and
:func:`~sftvrl.train.rollout.rollout` as training does, so what you see is what the model is
trained and measured on.
"""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from sftvrl.envs.general_points import (
    GeneralPointsEnv,
    Hand,
    Outcome,
    Rules,
    Verdict,
    parse_response,
    render_hand,
    solutions,
    verify,
)
from sftvrl.envs.general_points import deal as deal_hand
from sftvrl.prompts.general_points import response_text, task_prompt
from sftvrl.train.rollout import Episode, Request, rollout
from sftvrl.widgets.common import (
    GP_FOUNDATIONS,
    STYLE,
    ModelPicker,
    RecordingResponder,
    StepObserver,
    box,
    check_variant,
    conversation_text,
    details,
    disabled,
    esc,
    guarded,
    on_commit,
    png_bytes,
    responder_for,
)

CUSTOM_RULE = "custom"
SPLIT_CHOICES: tuple[tuple[str, str], ...] = (
    ("ID: the training rule", "id"),
    ("Rule OOD: J/Q/K = 11, 12, 13", "rule_ood"),
    ("Visual OOD: red suits", "visual_ood"),
    ("custom rule", CUSTOM_RULE),
)
PRESETS = ("id", "rule_ood", "visual_ood")
FACE_CHOICES = (("J, Q, K = 10", "10"), ("J, Q, K = 11, 12, 13", "jqk"))
SUIT_CHOICES = (("all suits", "all"), ("black ♠ ♣", "black"), ("red ♥ ♦", "red"))
SUIT_MARKS = {"S": "♠", "C": "♣", "H": "♥", "D": "♦"}
MAX_SHOWN_SOLUTIONS = 60
TABLE_WIDTH = 560
"""Width in pixels of the table as shown to the human (drawn at that size, so it stays sharp)."""

_WIDE = {"description_width": "initial"}


@dataclass
class Scoreboard:
    """Hands the human played and solved; the model's games (one per ask) and wins.

    A hand counts for the human once, at the first answer; solving it after the solutions were
    shown does not count as a win.
    """

    human_wins: int = 0
    human_hands: int = 0
    model_wins: int = 0
    model_games: int = 0

    def html(self) -> str:
        return (
            '<div class="sftvrl-score">'
            f"<b>You</b> {self.human_wins} / {self.human_hands} hands &nbsp;·&nbsp; "
            f"<b>Model</b> {self.model_wins} / {self.model_games} games</div>"
        )


def _card_chip(card: str) -> str:
    suit, rank = card[0], card[1:]
    colour = "red" if suit in "HD" else "black"
    return f'<span class="sftvrl-chip sftvrl-{colour}">{rank}{SUIT_MARKS[suit]}</span>'


def _fields(verdict: Verdict | None, text: str) -> str:
    """What the parser read from an answer: the cards, the numbers and the formula."""
    parsed = verdict.parsed if verdict is not None and verdict.parsed is not None else None
    parsed = parsed or parse_response(text)

    def show(value: object) -> str:
        if value is None:
            return '<span class="sftvrl-muted">missing</span>'
        if isinstance(value, tuple):
            value = list(value)
        return f"<code>{esc(value, 200)}</code>"

    return (
        f"read: cards {show(parsed.cards)} · numbers {show(parsed.numbers)} · "
        f"formula {show(parsed.formula)}"
    )


def _verdict_head(verdict: Verdict) -> str:
    mark = "✔ Correct!" if verdict.success else "✘"
    value = ""
    if verdict.value is not None and not verdict.success:
        value = f" · your formula = {esc(verdict.value, 100)}"
    return f"<b>{mark}</b> reward {verdict.reward:+g} · {verdict.outcome.value}{value}"


class GeneralPointsGame:
    """The GeneralPoints game as an ipywidget app; display it by ending a cell with it.

    Args:
        split: start from a preset rule: ``"id"``, ``"rule_ood"`` or ``"visual_ood"``.
        vision: the vision variant (GP-VL: the model sees the rendered cards).
        rules: an explicit :class:`Rules` instead of the split's preset.
        mode: the verifier's mode, ``"exact"`` (default) or ``"paper"``.
        prompt: the prompt layout the model sees, ``"paper"`` or ``"compact"``.
        verify_iter: the model's verification budget (verified attempts per hand).
        model: ``"tiny-text"``, ``"tiny-vlm"``, ``"expert"``, a checkpoint folder or an HF id.
        max_new_tokens, temperature: how the model samples (temperature 0 is greedy).
        seed: seeds the deals and the model's sampling, so a session can be replayed.
        image_width: width in pixels of the table image the model sees (vision variant).

    Controls are attributes (``answer_box``, ``submit_button``, ``ask_button``, ...), actions
    are methods (:meth:`deal`, :meth:`submit`, :meth:`ask_model`, :meth:`show_solutions`); a
    click calls the method, so code and tests can play exactly as a user does.
    """

    def __init__(
        self,
        *,
        split: str = "id",
        vision: bool = False,
        rules: Rules | None = None,
        mode: str = "exact",
        prompt: str = "paper",
        verify_iter: int = 5,
        model: str = "tiny-text",
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        seed: int = 0,
        image_width: int = 448,
    ) -> None:
        if split not in PRESETS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(PRESETS)}")
        self.image_width = image_width
        self.hand: Hand | None = None
        self.hands_dealt = 0
        self.score = Scoreboard()
        self.last_verdict: Verdict | None = None
        self.last_episode: Episode | None = None
        self.last_error: Exception | None = None
        self.model_turns: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._seed = seed
        self._asks = 0
        self._syncing = False
        self._quiet = False
        self._new_hand_state()

        rules = rules or Rules.for_split(split, vision=vision)
        self._build_controls(rules, vision, mode, prompt, verify_iter, model)
        self.max_new_tokens.value = max_new_tokens
        self.temperature.value = temperature
        self.split.value = self._matching_preset(rules, vision)
        self._wire()
        self.widget = self._layout()
        self.deal()

    # -- what the controls say ------------------------------------------------------------------
    @property
    def rules(self) -> Rules:
        """The rule the controls describe (new hands are dealt under it)."""
        return Rules(
            target=int(self.target.value),
            face=self.face.value,
            suits=self.suits.value,
            require_face=bool(self.require_face.value),
        )

    @property
    def vision(self) -> bool:
        """Whether the game is in the vision variant (GP-VL)."""
        return bool(self.variant.value)

    # -- actions ------------------------------------------------------------------------------
    @guarded("status", "Dealing")
    def deal(self, cards: Sequence[str] | str | None = None) -> Hand | None:
        """Deal a solvable hand under the current rule, or put ``cards`` (e.g. ``"SA H3 DK C6"``)
        on the table."""
        rules = self.rules
        if cards is None:
            hand = deal_hand(rules, self._rng)
        else:
            if isinstance(cards, str):
                cards = cards.replace(",", " ").split()
            if len(cards) != rules.n_cards:
                raise ValueError(
                    f"a hand has {rules.n_cards} cards; got {len(cards)} ({' '.join(cards)!r}). "
                    "Type card codes such as SA H3 DK C6 (suit S/H/D/C, then the rank)"
                )
            hand = Hand.from_cards(cards, rules)
        self.hand = hand
        self.hands_dealt += 1
        self._new_hand_state()
        self._set_quietly(self.cards_box, " ".join(hand.cards))
        self._set_quietly(self.answer_box, "")
        self.verdict.value = ""
        self.model_log.value = ""
        self.solutions_box.value = ""
        self.solutions_button.description = "Show solutions"
        self.status.value = ""
        self._show_table()
        return hand

    @guarded("verdict", "Checking your answer")
    def submit(self, formula: str | None = None) -> Verdict | None:
        """Verify the human's formula (the answer box's, or ``formula``) and show the verdict.

        A bare formula such as ``(1+2+3)*4`` is wrapped into the answer format the model writes;
        text with a ``"formula"`` field is verified as it is, like a model's answer.
        """
        if formula is not None:
            self._set_quietly(self.answer_box, formula)
        text = self.answer_box.value.strip()
        if self.hand is None:
            raise ValueError("deal a hand first")
        if not text:
            self.verdict.value = box(
                "Type a formula that makes the target from the four numbers, e.g. "
                "<code>(1+2+3)*4</code>, then press Enter.",
                "warn",
            )
            return None
        hand = self.hand
        if "formula" in text.lower():
            response = text
        else:
            response = response_text(hand, text, layout=self.prompt_layout.value)
        verdict = verify(response, hand, hand.rules, vision=self.vision, mode=self.mode.value)
        self.last_verdict = verdict
        note = self._count_human(verdict)
        body = _verdict_head(verdict) + f"<br>verifier: {esc(verdict.message, 500)}"
        if "formula" in text.lower():
            body += "<br>" + _fields(verdict, text)
        if note:
            body += f'<br><span class="sftvrl-muted">{note}</span>'
        self.verdict.value = box(body, "ok" if verdict.success else "bad", "sftvrl-human-verdict")
        self.scoreboard.value = self.score.html()
        return verdict

    @guarded("model_log", "Asking the model", keep=True)
    def ask_model(self) -> Episode | None:
        """Let the chosen model play the hand on the table, turn by turn (sequential revision).

        If it fails half-way (a model that cannot generate), the turns so far stay on show.
        """
        self.model_log.value = ""
        if self.hand is None:
            raise ValueError("deal a hand first")
        hand, vision = self.hand, self.vision
        self.model_turns = []
        self._prompts = []
        controls = [self.ask_button, self.deal_button, self.set_cards_button, self.submit_button]
        with disabled(controls):
            name = self.picker.name
            if not self.picker.loaded(name):
                self.model_log.value = box(f"Loading <b>{esc(name)}</b>…", "pending")
            name, model = self.picker.load()
            check_variant(name, model, vision)
            responder = responder_for(
                model,
                max_new_tokens=int(self.max_new_tokens.value),
                temperature=float(self.temperature.value),
                seed=self._seed * 1_000_003 + self._asks,
            )
            self._model_name, self._model = name, model
            self._show_turns(pending=True)
            env_kwargs = {
                "vision": vision,
                "rules": hand.rules,
                "verify_iter": int(self.verify_iter.value),
                "mode": self.mode.value,
                "prompt": self.prompt_layout.value,
                "image_width": self.image_width,
            }
            try:
                episodes = rollout(
                    lambda: StepObserver(GeneralPointsEnv(**env_kwargs), self._on_model_step),
                    RecordingResponder(responder, self._on_model_request),
                    1,
                    batch_size=1,
                    seed=self._asks,
                    reset_options=[{"hand": hand}],
                )
            except Exception:
                self._show_turns(pending=False)  # the turns so far; the error goes below
                raise
        self._asks += 1
        episode = episodes[0]
        self.last_episode = episode
        self.score.model_games += 1
        self.score.model_wins += int(episode.success)
        self.scoreboard.value = self.score.html()
        self._show_turns(pending=False, episode=episode)
        return episode

    @guarded("solutions_box", "Solving")
    def show_solutions(self) -> list[str]:
        """Show (or, on a second click, hide) every solution the solver finds for the hand."""
        if self.hand is None:
            raise ValueError("deal a hand first")
        found = solutions(self.hand.numbers, self.hand.rules.target)
        if self.solutions_box.value and self.solutions_button.description == "Hide solutions":
            self.solutions_box.value = ""
            self.solutions_button.description = "Show solutions"
            return found
        self._revealed = True
        self.solutions_button.description = "Hide solutions"
        if not found:
            self.solutions_box.value = box("This hand has no solution under this rule.", "warn")
            return found
        shown = "".join(
            f'<span class="sftvrl-sol">{esc(s)}</span>' for s in found[:MAX_SHOWN_SOLUTIONS]
        )
        more = len(found) - MAX_SHOWN_SOLUTIONS
        tail = f'<br><span class="sftvrl-muted">… and {more} more</span>' if more > 0 else ""
        self.solutions_box.value = box(
            f"<b>{len(found)} solutions</b> (the solver's strings; any formula equal to "
            f"{self.hand.rules.target} is accepted)<br>{shown}{tail}",
            "",
            "sftvrl-solutions",
        )
        return found

    def add_model(self, name: str, model: Any) -> None:
        """Offer a loaded ``Policy`` (e.g. trained in this notebook) or a responder as a player."""
        self.picker.add(name, model)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- model turns --------------------------------------------------------------------------
    def _on_model_request(self, request: Request) -> None:
        self._prompts.append(conversation_text(self._model, request.conversation))
        self._show_turns(pending=True)

    def _on_model_step(
        self, action: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
    ) -> None:
        self.model_turns.append(
            {
                "answer": action,
                "reward": reward,
                "verdict": info.get("verdict"),
                "feedback": info.get("feedback"),
                "outcome": info.get("outcome"),
                "prompt": self._prompts[-1] if self._prompts else "",
            }
        )
        self._show_turns(pending=not (terminated or truncated))

    def _show_turns(self, *, pending: bool, episode: Episode | None = None) -> None:
        name = esc(self._model_name)
        budget = int(self.verify_iter.value)
        parts = [f"<b>{name}</b> plays this hand (verification budget: {budget} attempts)"]
        for k, t in enumerate(self.model_turns, 1):
            verdict: Verdict | None = t["verdict"]
            if verdict is not None and verdict.outcome is not Outcome.STEP_LIMIT:
                head = f"Turn {k} · " + _verdict_head(verdict)
                body = f"verifier: {esc(t['feedback'], 500)}<br>" + _fields(verdict, t["answer"])
            else:
                head = f"Turn {k} · <b>step limit</b> reward {t['reward']:+g} (not verified)"
                body = f"env: {esc(t['feedback'], 500)}"
            kind = "ok" if verdict is not None and verdict.success else "bad"
            parts.append(
                box(
                    f"{head}<br>answer:<pre>{esc(t['answer'])}</pre>{body}"
                    + details(f"prompt the model saw at turn {k}", t["prompt"]),
                    kind,
                    "sftvrl-turn",
                )
            )
        if pending:
            k = len(self.model_turns) + 1
            parts.append(box(f"Turn {k}: {name} is answering…", "pending"))
        elif episode is not None:
            n = len(episode.turns)
            if episode.success:
                final = box(f"<b>{name} solved it</b> on turn {n}.", "ok", "sftvrl-model-final")
            else:
                final = box(
                    f"<b>{name} did not solve it</b>: the verification budget ran out after "
                    f"{n} turns.",
                    "bad",
                    "sftvrl-model-final",
                )
            parts.append(final)
        self.model_log.value = "".join(parts)

    # -- state --------------------------------------------------------------------------------
    def _new_hand_state(self) -> None:
        self._revealed = False
        self._human_tried = False
        self._human_won = False
        self.last_verdict = None
        self.last_episode = None
        self.model_turns = []
        self._model_name = ""
        self._model: Any = None
        self._prompts: list[str] = []

    def _count_human(self, verdict: Verdict) -> str:
        if not self._human_tried:
            self._human_tried = True
            self.score.human_hands += 1
        if not verdict.success or self._human_won:
            return ""
        self._human_won = True
        if self._revealed:
            return "Solved after the solutions were shown: not counted as a win."
        self.score.human_wins += 1
        return "Deal a new hand to play on."

    def _show_table(self) -> None:
        hand = self.hand
        assert hand is not None
        rules = hand.rules
        if self.vision:
            self.image.value = png_bytes(render_hand(hand.cards, width=TABLE_WIDTH))
            self.image.layout.display = None
            cards = ""
        else:
            self.image.layout.display = "none"
            chips = "".join(_card_chip(card) for card in hand.cards)
            cards = f"<div>{chips}</div>"
        seen = "the rendered cards above" if self.vision else f"Cards: {list(hand.ranks)}"
        values = ", ".join(str(n) for n in hand.numbers)
        unsolvable = "" if hand.solvable else " · <b>this hand has no solution</b>"
        self.table.value = (
            f'<div class="sftvrl-hand" data-cards="{" ".join(hand.cards)}" '
            f'data-numbers="{" ".join(map(str, hand.numbers))}" data-target="{rules.target}">'
            f"{cards}<div>Hand {self.hands_dealt} · make <b>{rules.target}</b> · values under "
            f"this rule: <b>{values}</b>{unsolvable}</div>"
            f'<div class="sftvrl-muted">the model reads {html.escape(seen)}</div></div>'
        )
        prompt = task_prompt(hand, rules, vision=self.vision, layout=self.prompt_layout.value)
        self.prompt_view.value = details("task prompt (first user turn)", prompt)
        self.scoreboard.value = self.score.html()

    # -- controls -----------------------------------------------------------------------------
    def _build_controls(
        self, rules: Rules, vision: bool, mode: str, prompt: str, verify_iter: int, model: str
    ) -> None:
        self.split = w.Dropdown(
            options=SPLIT_CHOICES,
            value=CUSTOM_RULE,
            description="Rule",
            style=_WIDE,
            layout=w.Layout(width="280px"),
        )
        self.face = w.Dropdown(
            options=FACE_CHOICES, value=rules.face, layout=w.Layout(width="170px")
        )
        self.target = w.BoundedIntText(
            value=rules.target,
            min=1,
            max=100_000,
            description="target",
            style=_WIDE,
            layout=w.Layout(width="120px"),
        )
        self.suits = w.Dropdown(
            options=SUIT_CHOICES, value=rules.suits, layout=w.Layout(width="120px")
        )
        self.require_face = w.Checkbox(
            value=rules.require_face,
            description="at least one J/Q/K",
            indent=False,
            layout=w.Layout(width="150px"),
        )
        self.variant = w.ToggleButtons(
            options=(("Text (GP-L)", False), ("Vision (GP-VL)", True)),
            value=vision,
            style={"button_width": "125px"},
        )
        self.mode = w.Dropdown(
            options=(("exact verifier", "exact"), ("paper verifier", "paper")),
            value=mode,
            layout=w.Layout(width="140px"),
        )
        self.cards_box = w.Text(
            continuous_update=False,
            description="cards",
            placeholder="e.g. SA H3 DK C6",
            style=_WIDE,
            layout=w.Layout(width="210px"),
        )
        self.set_cards_button = w.Button(description="Use these cards")
        self.deal_button = w.Button(description="Deal", button_style="primary", icon="refresh")
        self.table = w.HTML()
        self.image = w.Image(
            format="png",
            layout=w.Layout(display="none", width=f"{TABLE_WIDTH}px", max_width="100%"),
        )
        self.prompt_view = w.HTML()

        self.answer_box = w.Text(
            continuous_update=False,
            placeholder="your formula, e.g. (1+2+3)*4, then Enter",
            description="Your answer",
            style=_WIDE,
            layout=w.Layout(width="420px"),
        )
        self.submit_button = w.Button(description="Submit", button_style="success")
        self.solutions_button = w.Button(description="Show solutions")
        self.verdict = w.HTML()
        self.solutions_box = w.HTML()

        self.picker = ModelPicker(model, GP_FOUNDATIONS)
        self.prompt_layout = w.Dropdown(
            options=(("paper prompt", "paper"), ("compact prompt", "compact")),
            value=prompt,
            layout=w.Layout(width="140px"),
        )
        self.max_new_tokens = w.BoundedIntText(
            min=1,
            max=4096,
            description="max tokens",
            style=_WIDE,
            layout=w.Layout(width="150px"),
        )
        self.temperature = w.BoundedFloatText(
            min=0.0,
            max=5.0,
            step=0.1,
            description="temperature",
            style=_WIDE,
            layout=w.Layout(width="150px"),
        )
        self.verify_iter = w.BoundedIntText(
            value=verify_iter,
            min=1,
            max=50,
            description="budget",
            style=_WIDE,
            layout=w.Layout(width="120px"),
        )
        self.ask_button = w.Button(description="Ask the model", button_style="warning", icon="play")
        self.model_log = w.HTML()
        self.scoreboard = w.HTML()
        self.status = w.HTML()

        for widget, name in [
            (self.answer_box, "answer"),
            (self.submit_button, "submit"),
            (self.ask_button, "ask"),
            (self.deal_button, "deal"),
            (self.cards_box, "cards"),
            (self.set_cards_button, "set-cards"),
            (self.solutions_button, "solutions"),
            (self.verdict, "verdict"),
            (self.model_log, "model-log"),
            (self.table, "table"),
            (self.image, "image"),
            (self.scoreboard, "scoreboard"),
            (self.status, "status"),
        ]:
            widget.add_class(f"sftvrl-gp-{name}")

    def _layout(self) -> w.VBox:
        title = w.HTML(
            STYLE + '<div class="sftvrl-title">GeneralPoints: make the target from the four '
            "cards, each used once, with + − × ÷ and brackets</div>"
        )
        row = w.HBox
        app = w.VBox(
            [
                row([title, self.scoreboard], layout=w.Layout(justify_content="space-between")),
                row([self.split, self.face, self.target, self.suits, self.require_face]),
                row(
                    [
                        self.variant,
                        self.mode,
                        self.deal_button,
                        self.cards_box,
                        self.set_cards_button,
                    ]
                ),
                self.image,
                self.table,
                self.prompt_view,
                self.status,
                row([self.answer_box, self.submit_button, self.solutions_button]),
                self.verdict,
                self.solutions_box,
                row([self.picker.choice, self.picker.path, self.ask_button]),
                row([self.prompt_layout, self.max_new_tokens, self.temperature, self.verify_iter]),
                self.model_log,
            ]
        )
        app.add_class("sftvrl-app")
        app.add_class("sftvrl-gp")
        return app

    def _wire(self) -> None:
        self.deal_button.on_click(lambda _b: self.deal())
        self.set_cards_button.on_click(lambda _b: self._use_typed_cards())
        on_commit(self.cards_box, self._typed_cards)
        self.submit_button.on_click(lambda _b: self.submit())
        on_commit(self.answer_box, self._typed_answer)
        self.ask_button.on_click(lambda _b: self.ask_model())
        self.solutions_button.on_click(lambda _b: self.show_solutions())
        self.split.observe(self._on_split, "value")
        for control in (self.face, self.target, self.suits, self.require_face):
            control.observe(self._on_rule_control, "value")
        self.variant.observe(self._on_variant, "value")
        self.picker.choice.observe(self._on_model_choice, "value")
        self.prompt_layout.observe(lambda _c: self._refresh_table(), "value")
        self.mode.observe(lambda _c: self._refresh_table(), "value")

    def _set_quietly(self, box: w.Text, value: str) -> None:
        """Set a text box from code without its commit handler taking it for user input."""
        self._quiet = True
        try:
            box.value = value
        finally:
            self._quiet = False

    def _typed_cards(self, value: str) -> None:
        if not self._quiet:
            self.deal(value)

    def _typed_answer(self, _value: str) -> None:
        if not self._quiet:
            self.submit()

    def _use_typed_cards(self) -> None:
        # leaving the box already dealt the typed cards; the click must not deal them twice
        typed = self.cards_box.value.replace(",", " ").upper().split()
        if self.hand is None or tuple(typed) != self.hand.cards:
            self.deal(self.cards_box.value)

    def _refresh_table(self) -> None:
        if self.hand is not None:
            self._show_table()

    def _matching_preset(self, rules: Rules, vision: bool) -> str:
        for split in PRESETS:
            if Rules.for_split(split, vision=vision) == rules:
                return split
        return CUSTOM_RULE

    def _set_rule_controls(self, rules: Rules) -> None:
        self._syncing = True
        try:
            self.face.value = rules.face
            self.target.value = rules.target
            self.suits.value = rules.suits
            self.require_face.value = rules.require_face
        finally:
            self._syncing = False

    def _on_split(self, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] == CUSTOM_RULE:
            return
        self._set_rule_controls(Rules.for_split(change["new"], vision=self.vision))
        self.deal()

    def _on_rule_control(self, _change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self.split.value = self._matching_preset(self.rules, self.vision)
        finally:
            self._syncing = False
        self.deal()

    def _on_variant(self, change: dict[str, Any]) -> None:
        if self.split.value != CUSTOM_RULE:
            self._set_rule_controls(Rules.for_split(self.split.value, vision=change["new"]))
        self.picker.follow_variant(bool(change["new"]))
        self.deal()

    def _on_model_choice(self, change: dict[str, Any]) -> None:
        if change["new"] in ("tiny-text", "tiny-vlm"):
            self.variant.value = change["new"] == "tiny-vlm"

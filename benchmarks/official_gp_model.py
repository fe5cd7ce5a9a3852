"""A model of the official GeneralPoints environment's work, re-implemented from its specification.

This is NOT the official code (``gym_cards.envs:GeneralPointEnv_oneline`` in LeslieTrue/SFTvsRL),
which we neither run nor copy. It is our own code that does the same *work* the official
``reset()`` and ``step()`` do, as ``../shared/spec/PAPER.md`` §1.2-1.4 documents it, so that
``bench_gp.py`` can put a realistic price on that work next to ours:

``reset()``
    Draw four ranks with ``random.randint(1, 13)`` and uniform suits (with replacement); value
    them (ID rule: ``min(rank, 10)``); run the exhaustive "Rosetta-code" 24 solver, which keeps
    *every* solution string, and re-deal until there is at least one; then paint the 1200x1200
    table: a ``#35654d`` canvas and four cards, each opened from a 750x1050 RGBA PNG on disk,
    resized to 270x378 and pasted at ``x = 5 + int(i * 270 * 1.1)``, ``y = 411``; the observation
    is ``np.array(canvas)``.

``step(text)``
    Parse the formula (``json.loads`` of the whole text, which fails on the schema's trailing
    comma, then the regex ``"formula": "(.*?)"``), cut it at '=', and score it with the official
    reward algorithm: regex tokens, a grammar loop, ``collections.Counter`` number checks, Python
    ``eval`` of the formula, and the prefix walk ``any(sol.startswith(register) ...)`` over the
    stored solution strings.

Where the specification leaves a detail open, the model takes the cheaper reading, so the
speed-ups ``bench_gp.py`` reports are, if anything, understated:

- the card PNGs are 8-bit RGBA drawn by our own renderer (the official art is 16-bit RGBA, which is
  slower to decode); they are written once into a temporary directory and opened from disk on
  every reset, as the official env opens its files;
- the solver builds its strings from per-shape templates rather than by list insertion;
- ``step`` returns the stored canvas array without copying it and builds no info dictionary.

The text-only variant (GP-L) of the official env still paints the image: ``language_only`` only
changes the prompt, and the observation is always the numpy canvas. The model therefore renders in
both variants.

``eval`` appears twice below, exactly where the official code calls it. It only ever sees strings
this benchmark builds itself (solver formulas, and the expert / wrong / malformed answers of
``bench_gp.py``); it is a cost model, never library code, and nothing in ``sftvrl`` evaluates text.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import re
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from sftvrl.envs.general_points import render_card

TARGET = 24
RESOLUTION = 1200
TABLE_GREEN = "#35654d"
CARD_PNG_SIZE = (750, 1050)
RANK_LETTERS = "A23456789TJQK"
"""Official card codes: suit letter + one rank letter (T for ten)."""
SUIT_SETS = {"mixed": "HSDC", "red": "HD", "black": "SC"}

# The seven bracket placements of the solver, for four numbers a, b, c, d and operators x, y, z:
# none; (ab); (abc); (bc); (bcd); (cd); (ab)(cd).
_SHAPES = (
    "{a}{x}{b}{y}{c}{z}{d}",
    "({a}{x}{b}){y}{c}{z}{d}",
    "({a}{x}{b}{y}{c}){z}{d}",
    "{a}{x}({b}{y}{c}){z}{d}",
    "{a}{x}({b}{y}{c}{z}{d})",
    "{a}{x}{b}{y}({c}{z}{d})",
    "({a}{x}{b}){y}({c}{z}{d})",
)
_EVAL_GLOBALS = {"F": Fraction, "__builtins__": {}}

_FORMULA = re.compile(r'"formula": "(.*?)"')
_CARDS = re.compile(r'"cards": \[([^\]]+)\]')
_TOKENS = re.compile(r"\d+|[+\-*/()]")


def rosetta_solutions(
    numbers: list[int], target: int = TARGET, rng: random.Random | None = None
) -> list[str]:
    """Every solution string of the exhaustive 24 solver, in its (shuffled) search order.

    Each distinct ordering of the numbers (``sorted(set(itertools.permutations(...)))``, then
    shuffled) x each operator triple x each bracket placement is written out and evaluated with
    ``eval`` -- with every number wrapped as ``F(n)`` (``Fraction``) when a '/' occurs -- and the
    plain-number string is kept when the value equals the target. The search never stops early.
    """
    if len(numbers) != 4:
        raise ValueError(f"the official solver model handles four numbers, got {numbers!r}")
    orderings = sorted(set(itertools.permutations(numbers)))
    (rng or random).shuffle(orderings)
    found = []
    for a, b, c, d in orderings:
        plain = {"a": a, "b": b, "c": c, "d": d}
        wrapped = {"a": f"F({a})", "b": f"F({b})", "c": f"F({c})", "d": f"F({d})"}
        for x, y, z in itertools.product("+-*/", repeat=3):
            ops = {"x": x, "y": y, "z": z}
            slots = wrapped if "/" in (x, y, z) else plain
            for shape in _SHAPES:
                try:
                    # benchmark model of the official solver: evaluates strings built right here
                    value = eval(shape.format(**slots, **ops), _EVAL_GLOBALS)
                except ZeroDivisionError:
                    continue
                if value == target:
                    found.append(shape.format(**plain, **ops))
    return found


class CardFiles:
    """52 synthetic 750x1050 RGBA card PNGs in a temporary directory, named ``SK.png``, ``HT.png``.

    A file is drawn (with our renderer) the first time its card is asked for and then only read:
    drawing all 52 up front takes seconds, so the benchmark draws the cards its warm-up deals and
    times only the resets that follow, which open existing files.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._tmp = None if directory is not None else tempfile.TemporaryDirectory()
        self.directory = Path(directory if directory is not None else self._tmp.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.created = 0

    def path(self, code: str) -> Path:
        """The PNG of an official card code (``'SK'``, ``'HT'``), drawn on first use."""
        path = self.directory / f"{code}.png"
        if not path.exists():
            rank = "10" if code[1] == "T" else code[1]
            card = render_card(code[0] + rank, height=CARD_PNG_SIZE[1]).convert("RGBA")
            assert card.size == CARD_PNG_SIZE, card.size
            card.save(path)
            self.created += 1
        return path

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class OfficialGeneralPointsModel:
    """The official env's ``reset``/``step`` work (see the module docstring), for timing only."""

    def __init__(
        self,
        cards: CardFiles,
        *,
        face_cards_color: str = "mixed",
        treat_face_cards_as_10: bool = True,
        target: int = TARGET,
        resolution: int = RESOLUTION,
        verify_iter: int = 5,
        language_only: bool = True,
        seed: int | None = None,
    ) -> None:
        self.card_files = cards
        self.suits = SUIT_SETS[face_cards_color]
        self.face_as_10 = treat_face_cards_as_10
        self.target = target
        self.resolution = resolution
        self.verify_iter = verify_iter
        self.language_only = language_only  # changes the prompt only; the canvas is always drawn
        # The official env uses the global ``random`` module; a private generator draws the same
        # way and keeps the benchmark's hand sequence reproducible.
        self.rng = random.Random(seed)
        self.cards: list[str] = []
        self.plain_cards: list[str] = []
        self.numbers: list[int] = []
        self.solutions: list[str] = []
        self.canvas: np.ndarray | None = None
        self.remaining_step = verify_iter

    # -- reset ----------------------------------------------------------------------------------
    def deal(self) -> None:
        """Draw hands until the solver finds a solution (the reset's first half)."""
        while True:
            ranks = [self.rng.randint(1, 13) for _ in range(4)]
            self.cards = [self.rng.choice(self.suits) + RANK_LETTERS[r - 1] for r in ranks]
            self.plain_cards = [c[1:].replace("T", "10") for c in self.cards]
            self.numbers = [min(r, 10) if self.face_as_10 else r for r in ranks]
            self.solutions = rosetta_solutions(self.numbers, self.target, self.rng)
            if self.solutions:
                return

    def render(self) -> np.ndarray:
        """Paint the 1200x1200 table from the card PNGs on disk (the reset's second half)."""
        canvas = Image.new("RGB", (self.resolution, self.resolution), TABLE_GREEN)
        width = int(self.resolution / 4 * 0.9)
        height = int(width * 7 / 5)
        y = (self.resolution - height) // 2
        for i, code in enumerate(self.cards):
            with Image.open(self.card_files.path(code)) as card:
                canvas.paste(card.resize((width, height)), (5 + int(i * width * 1.1), y))
        return np.array(canvas)

    def reset(self) -> tuple[np.ndarray, dict]:
        self.deal()
        self.canvas = self.render()
        self.remaining_step = self.verify_iter
        info = {
            "Cards": self.cards,
            "Plain Cards": self.plain_cards,
            "Numbers": self.numbers,
            "Solution": self.solutions,
            "Verify Info": None,
        }
        return self.canvas, info

    # -- step -----------------------------------------------------------------------------------
    def step(self, text: str) -> tuple[np.ndarray | None, float, bool, bool, str]:
        """Score one answer; returns ``(obs, reward, terminated, truncated, message)``."""
        self.remaining_step -= 1
        if self.remaining_step < 0:
            return self.canvas, -1.0, False, True, "step_limit_reached"
        if not self.language_only:
            cards = _robust_list(_field(text, "cards"))
            if sorted(cards) != sorted(self.plain_cards):
                return self.canvas, -1.5, False, False, "you recognized wrong cards."
        formula = str(_field(text, "formula")).split("=")[0]
        reward, message = official_reward(formula, self.numbers, self.solutions, self.target)
        return self.canvas, reward, reward == 5, False, message


def _field(text: str, key: str) -> object:
    """Whole-text ``json.loads`` first, then the field's regex; the string "None" when absent."""
    try:
        return json.loads(text)[key]
    except Exception:
        match = (_FORMULA if key == "formula" else _CARDS).search(text)
        if match is None:
            return "None"
        if key == "cards":
            try:
                return [int(part) for part in match.group(1).split(", ")]
            except ValueError:
                return "[" + match.group(1) + "]"
        return match.group(1)


def _robust_list(value: object) -> list[str]:
    if not isinstance(value, str):
        return []
    for char in "[]' ":
        value = value.replace(char, "")
    items = value.split(",")
    return items if len(items) == 4 else []


def official_reward(
    formula: str, numbers: list[int], solutions: list[str], target: int = TARGET
) -> tuple[float, str]:
    """The official reward algorithm as PAPER.md §1.4 specifies it: ``(reward, message)``."""
    tokens = _TOKENS.findall(formula)
    if "".join(tokens) != formula:
        return -3.0, "illegal characters."
    reward = 0.0
    messages = []
    previous = None  # 'number', 'operator', '(' or ')'
    depth = 0
    for token in tokens:
        if token.isdigit():
            if previous not in (None, "operator", "("):
                reward -= 3
                messages.append("invalid sequence after number")
            kind = "number"
        elif token in "+-*/":
            if previous not in ("number", ")"):
                reward -= 3
                messages.append("invalid sequence after operator")
            kind = "operator"
        elif token == "(":
            if previous in (None, "operator", "("):
                depth += 1
            else:
                reward -= 3
                messages.append("invalid sequence before '('")
            kind = "("
        else:
            if previous in ("number", ")"):
                if depth:
                    depth -= 1
                else:
                    reward -= 3
                    messages.append("unmatched closing parenthesis")
            else:
                reward -= 3
                messages.append("invalid sequence after ')'")
            kind = ")"
        previous = kind

    used = collections.Counter(int(t) for t in tokens if t.isdigit())
    have = collections.Counter(numbers)
    invalid = [n for n in used if n not in have]
    overused = [n for n in used if used[n] > have[n]]
    if invalid:
        reward -= 2
        messages.append(f"you used invalid numbers: {invalid}")
    elif overused:
        reward -= 2
        messages.append(f"you used numbers: {overused} too many times")
    unused = [n for n in have if have[n] > used[n]]
    if unused:
        reward -= 2
        messages.append(f"you didn't use numbers: {unused}")
    if reward != 0:
        return reward, ", ".join(messages) + "."

    try:
        # benchmark model of the official verifier: only ever sees this benchmark's own strings
        value = eval(formula)
    except Exception:
        if any(sol.startswith(formula) for sol in solutions):
            return 1.0, "partial solution."
        value = None
    if value == target:
        return 5.0, "Correct solution."
    register = ""
    for token in tokens:
        previous_register, register = register, register + token
        if not any(sol.startswith(register) for sol in solutions):
            if not previous_register:
                return -1.0, "your formula does not match any solution."
            return -1.0, (
                f"{previous_register} is partially correct but the full formula does not match "
                "any solution."
            )
    return 0.0, "."

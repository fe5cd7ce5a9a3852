"""Evaluation: the paper's metrics over batched rollouts, with confidence intervals.

- GeneralPoints *success rate*: episodes with a correct answer within ``verify_iter`` tries.
- GP-VL *recognition accuracy*: 1 - (wrongly recognised answers / answers), measured as the paper
  does with one try and no revision: on each episode's first answer, whatever ``verify_iter``.
- V-IRL *per-step accuracy* (correct actions / graded actions) and *route success*; V-IRL-VL
  *landmark recognition*: at points with a landmark in view, first answers that say where it is.

Every rate comes with the paper's binomial standard error sqrt(p(1-p)/n) and a Wilson interval
(which stays inside [0, 1] and behaves at 0% and 100%). GeneralPoints can be scored exhaustively:
one hand per solvable value multiset of the split instead of a random sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from sftvrl.envs.general_points import GeneralPointsEnv, Rules, enumerate_hands
from sftvrl.envs.general_points.parser import normalise_rank, parse_response
from sftvrl.envs.general_points.rules import FACE_RANKS
from sftvrl.train.rollout import Episode, Responder, rollout


@dataclass(frozen=True)
class Rate:
    """A proportion ``k / n`` with its standard error and a Wilson confidence interval."""

    k: int
    n: int
    confidence: float = 0.95

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def se(self) -> float:
        """The paper's error bar: sqrt(p (1 - p) / n)."""
        p = self.value
        return math.sqrt(p * (1 - p) / self.n) if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n, self.confidence)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        low, high = self.interval
        return {
            f"{prefix}rate": self.value,
            f"{prefix}k": self.k,
            f"{prefix}n": self.n,
            f"{prefix}se": self.se,
            f"{prefix}ci_low": low,
            f"{prefix}ci_high": high,
        }

    def __str__(self) -> str:
        low, high = self.interval
        return (
            f"{100 * self.value:.1f}% ({self.k}/{self.n}, 95% CI {100 * low:.1f}-{100 * high:.1f})"
        )


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired successes of two models on the same episodes."""
    if len(a) != len(b):
        raise ValueError("paired outcomes need the same episodes")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


# -- metrics from episodes ---------------------------------------------------------------------


def success_rate(episodes: Sequence[Episode]) -> Rate:
    """Episodes that ended with a correct answer (the paper's success rate)."""
    return Rate(sum(e.success for e in episodes), len(episodes))


def recognition_accuracy(episodes: Sequence[Episode]) -> Rate:
    """First answers whose cards were recognised: 1 - INCORRECT_VISION / answers (paper Fig. 8).

    The paper measures recognition with one try and no revision. An episode's first answer is
    that answer whatever the budget (nothing differs before the first verdict), so every GP-VL
    evaluation reports it. Later tries are left out: after "You failed this trial", a model may
    rewrite the cards to make its arithmetic work, which is revision, not reading (measured: the
    tiny GP-VL foundation reads 100% of first answers right but only 55% of all answers in 5 tries).
    """
    firsts = [e.turns[0] for e in episodes if e.turns]
    turns = [t for t in firsts if t.info.get("outcome") != "STEP_LIMIT"]
    wrong = sum(t.info.get("outcome") == "INCORRECT_VISION" for t in turns)
    return Rate(len(turns) - wrong, len(turns))


def landmark_recognition(episodes: Sequence[Episode]) -> Rate:
    """V-IRL-VL: at rail points with a landmark in view, first answers that say where it is.

    The answer's "current observation" begins with the landmark part of the oracle line ("Copper
    Comet Cinema is on your left front"), which V-IRL-VL's prompt leaves to the image. Only
    points with a landmark count: most points have none, and a model blind to the image that
    always says "No landmarks nearby" would otherwise score about 80%; here it scores 0. As for
    GP-VL, only the first answer at each point counts (later tries follow feedback). Text is
    compared case-insensitively, spaces trimmed.
    """
    from sftvrl.envs.virl.model import NO_LANDMARKS

    hits = []
    for episode in episodes:
        for turn in episode.turns:
            info = turn.info
            truth = str(info.get("graded_landmark_obs", NO_LANDMARKS)).strip().lower()
            first = info.get("attempt") == 1 and info.get("outcome") not in (None, "step_limit")
            if not first or truth == NO_LANDMARKS.lower():
                continue
            said = (info.get("parsed_observation") or "").split(";")[0].strip().lower()
            hits.append(said == truth)
    return Rate(sum(hits), len(hits))


def per_step_accuracy(episodes: Sequence[Episode]) -> Rate:
    """V-IRL: correct actions among graded actions."""
    turns = [t for e in episodes for t in e.turns]
    return Rate(sum(bool(t.info.get("correct_action")) for t in turns), len(turns))


# -- GeneralPoints evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class GPEvalSettings:
    """How a GeneralPoints evaluation is run (the paper: 234 episodes, 5 tries, seed 42)."""

    split: str = "id"
    vision: bool = False
    n_episodes: int | None = None
    """None scores every hand of the split (exhaustive); a number samples that many deals."""
    verify_iter: int = 5
    mode: str = "exact"
    prompt: str = "paper"
    seed: int = 42
    batch_size: int = 32
    image_width: int = 448


@dataclass
class GPEvalResult:
    settings: GPEvalSettings
    success: Rate
    recognition: Rate | None
    episodes: list[Episode]

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {f"settings.{k}": v for k, v in asdict(self.settings).items()}
        row |= self.success.as_dict("success_")
        row["success_outcomes"] = outcome_string(self.episodes)
        if self.recognition is not None:
            row |= self.recognition.as_dict("recognition_")
        row |= numbers_read(self.episodes).as_dict("numbers_read_")
        row |= face_as_ten(self.episodes).as_dict("face_as_ten_")
        return row


def outcome_string(episodes: Sequence[Episode]) -> str:
    """Per-episode success as '0'/'1' in episode order: the same hands pair up across checkpoints
    (exhaustive or seeded evaluation), which is what a paired test such as McNemar's needs."""
    return "".join("1" if e.success else "0" for e in episodes)


def _first_answer_numbers(episode: Episode) -> tuple[int, ...] | None:
    if not episode.turns:
        return None
    return parse_response(episode.turns[0].response.text).numbers


def numbers_read(episodes: Sequence[Episode]) -> Rate:
    """First answers whose ``number`` field is exactly the hand's values under the stated rule.

    The rule-reading diagnostic: a model can read the rule right and still miss the formula
    ("forgot the solutions"), or read it wrong ("memorised the training rule")."""
    hits = [
        _first_answer_numbers(e) == tuple(e.turns[0].info["numbers"]) for e in episodes if e.turns
    ]
    return Rate(sum(hits), len(hits))


def face_as_ten(episodes: Sequence[Episode]) -> Rate:
    """Among hands with a face card not worth 10, first answers that read a face card as 10.

    Under the rule-OOD split (J/Q/K = 11/12/13) this is the paper's memorisation failure: the
    model applies the training rule (J/Q/K = 10) instead of the one stated in its prompt."""
    hits = []
    for episode in episodes:
        if not episode.turns:
            continue
        info = episode.turns[0].info
        faces = [
            i
            for i, (card, number) in enumerate(zip(info["cards"], info["numbers"], strict=True))
            if normalise_rank(card) in FACE_RANKS and number != 10
        ]
        if not faces:
            continue
        read = _first_answer_numbers(episode)
        hits.append(
            read is not None
            and len(read) == len(info["numbers"])
            and any(read[i] == 10 for i in faces)
        )
    return Rate(sum(hits), len(hits))


def evaluate_general_points(
    responder: Responder, settings: GPEvalSettings, *, progress: bool = False
) -> GPEvalResult:
    """Success rate (and recognition accuracy for GP-VL) of a responder on one split."""

    def make_env() -> GeneralPointsEnv:
        return GeneralPointsEnv(
            vision=settings.vision,
            split=settings.split,
            verify_iter=settings.verify_iter,
            mode=settings.mode,  # type: ignore[arg-type]
            prompt=settings.prompt,  # type: ignore[arg-type]
            image_width=settings.image_width,
        )

    options: list[dict[str, Any] | None] | None = None
    n = settings.n_episodes
    if n is None:
        rules = Rules.for_split(settings.split, vision=settings.vision)
        options = [{"hand": hand} for hand in enumerate_hands(rules, seed=settings.seed)]
        n = len(options)
    episodes = rollout(
        make_env,
        responder,
        n,
        batch_size=settings.batch_size,
        seed=settings.seed,
        reset_options=options,
        progress=progress,
    )
    recognition = recognition_accuracy(episodes) if settings.vision else None
    return GPEvalResult(settings, success_rate(episodes), recognition, episodes)


# -- V-IRL evaluation --------------------------------------------------------------------------


def route_success_rate(episodes: Sequence[Episode]) -> Rate:
    """V-IRL: routes finished with a correct ``stop()`` at the destination."""
    return Rate(
        sum(bool(e.turns and e.turns[-1].info.get("is_success")) for e in episodes), len(episodes)
    )


@dataclass(frozen=True)
class VirlEvalSettings:
    """How a V-IRL evaluation is run (the paper: 48 routes for ID / rule OOD, VIter 2, 18 mini)."""

    split: str = "id"
    vision: bool = False
    n_routes: int | None = None
    """None: all 18 routes for ``mini`` (never more than those), 48 sampled routes otherwise."""
    verify_iter: int = 2
    mode: str = "exact"
    prompt: str = "paper"
    seed: int = 42
    batch_size: int = 32
    view_size: int = 320


@dataclass
class VirlEvalResult:
    settings: VirlEvalSettings
    per_step: Rate
    route_success: Rate
    episodes: list[Episode]
    recognition: Rate | None = None
    """V-IRL-VL: :func:`landmark_recognition` (None for V-IRL-L, whose prompt states it)."""

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {f"settings.{k}": v for k, v in asdict(self.settings).items()}
        row |= self.per_step.as_dict("per_step_") | self.route_success.as_dict("route_")
        row |= other_vocabulary(self.episodes).as_dict("other_vocabulary_")
        if self.recognition is not None:
            row |= self.recognition.as_dict("recognition_")
        return row | {"route_outcomes": outcome_string(self.episodes)}


def other_vocabulary(episodes: Sequence[Episode]) -> Rate:
    """Among graded answers at turn points, those that turn with the other rule's words.

    Under the rule-OOD split (left / right) a compass word is V-IRL's memorisation failure, as a
    face card read as 10 is GeneralPoints': the model answers in the training vocabulary instead
    of the one listed in its prompt."""
    from sftvrl.envs.virl.geometry import COMPASS, RELATIVE, turn_word

    hits = []
    for episode in episodes:
        for turn in episode.turns:
            info = turn.info
            graded = info.get("outcome") not in (None, "step_limit")  # a step limit reads nothing
            if not (graded and turn_word(info.get("gt_action"))):
                continue
            other = RELATIVE if info["rule"] == "absolute" else COMPASS
            hits.append(turn_word(info.get("parsed_action")) in other)
    return Rate(sum(hits), len(hits))


def evaluate_virl(
    responder: Responder, settings: VirlEvalSettings, *, progress: bool = False
) -> VirlEvalResult:
    """Per-step accuracy and route success of a responder on one V-IRL split."""
    from sftvrl.envs.virl import VirlEnv

    def make_env() -> VirlEnv:
        return VirlEnv(
            vision=settings.vision,
            split=settings.split,
            verify_iter=settings.verify_iter,
            mode=settings.mode,  # type: ignore[arg-type]
            prompt=settings.prompt,  # type: ignore[arg-type]
            view_size=settings.view_size,
        )

    ordered = settings.split == "mini"
    if ordered:  # the mini benchmark's 18 routes, each once (never more, whatever was asked)
        available = len(make_env().source)
        n = min(settings.n_routes or available, available)
    else:
        n = settings.n_routes or 48
    options = [{"route_index": i} for i in range(n)] if ordered else None
    episodes = rollout(
        make_env,
        responder,
        n,
        batch_size=settings.batch_size,
        seed=settings.seed,
        reset_options=options,
        progress=progress,
    )
    recognition = landmark_recognition(episodes) if settings.vision else None
    return VirlEvalResult(
        settings, per_step_accuracy(episodes), route_success_rate(episodes), episodes, recognition
    )


def evaluate_task(
    responder: Responder,
    task: str,
    split: str,
    *,
    n_episodes: int | None = None,
    image_size: int | None = None,
    verify_iter: int | None = None,
    **options: Any,
) -> GPEvalResult | VirlEvalResult:
    """Evaluate on a task by name (``gp-l``, ``gp-vl``, ``virl-l``, ``virl-vl``) and split.

    The task-neutral names map to each family's own: ``n_episodes`` is hands for GeneralPoints
    (None: every hand) and routes for V-IRL; ``image_size`` is the table width or the view size
    (vision tasks only); ``verify_iter=None`` keeps the paper's budget for the task.
    """
    from sftvrl.data import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    family, vision = TASKS[task]
    if verify_iter is not None:
        options["verify_iter"] = verify_iter
    gp = family == "general_points"
    if vision and image_size is not None:
        options["image_width" if gp else "view_size"] = image_size
    if gp:
        settings = GPEvalSettings(split=split, vision=vision, n_episodes=n_episodes, **options)
        return evaluate_general_points(responder, settings)
    settings = VirlEvalSettings(split=split, vision=vision, n_routes=n_episodes, **options)
    return evaluate_virl(responder, settings)

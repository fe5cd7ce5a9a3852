"""Per-step accuracy and route success, counted exactly as the paper does (App. C.3).

Per-step accuracy is the fraction of ``step`` calls with reward +1, every graded retry and the
final ungraded call included; a route succeeds when its episode ends with a correct ``stop()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EpisodeStats:
    """Totals over episodes, with binomial standard errors (paper App. C.3)."""

    episodes: int
    steps: int
    correct_steps: int
    successes: int

    @property
    def per_step_accuracy(self) -> float:
        """Correct calls / all calls."""
        return self.correct_steps / self.steps if self.steps else 0.0

    @property
    def success_rate(self) -> float:
        """Successful routes / routes."""
        return self.successes / self.episodes if self.episodes else 0.0

    def stderr(self, metric: str = "success_rate") -> float:
        """sqrt(p(1-p)/n) for ``success_rate`` (n = episodes) or ``per_step_accuracy`` (steps)."""
        p = getattr(self, metric)
        n = self.episodes if metric == "success_rate" else self.steps
        return math.sqrt(p * (1 - p) / n) if n else 0.0


def summarize(episodes: Iterable[Iterable[dict]]) -> EpisodeStats:
    """Aggregate per-episode lists of ``step`` infos (each with ``correct_action``, ``is_success``)."""
    n_ep = steps = correct = wins = 0
    for infos in episodes:
        n_ep += 1
        last: dict | None = None
        for info in infos:
            steps += 1
            correct += bool(info["correct_action"])
            last = info
        wins += bool(last and last.get("is_success"))
    return EpisodeStats(n_ep, steps, correct, wins)

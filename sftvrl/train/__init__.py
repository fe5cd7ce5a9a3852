"""Training: batched multi-turn rollouts (shared by evaluation and RL), SFT and PPO loops."""

from sftvrl.train.rollout import (
    Episode,
    ExpertResponder,
    Request,
    Responder,
    Response,
    ScriptedResponder,
    Turn,
    rollout,
)

__all__ = [
    "Episode",
    "ExpertResponder",
    "Request",
    "Responder",
    "Response",
    "ScriptedResponder",
    "Turn",
    "rollout",
]

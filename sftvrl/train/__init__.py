"""Training: batched multi-turn rollouts (shared by evaluation and RL), SFT, PPO and GRPO.

The rollout engine is imported here; ``sft``, ``ppo``, ``grpo`` and ``generation`` load torch,
transformers and TRL, so import them as submodules (``from sftvrl.train.ppo import train_ppo``).
"""

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

"""sftvrl: a reproducible, runnable-anywhere companion to "SFT Memorizes, RL Generalizes".

Importing the package registers its gymnasium environments: ``sftvrl/GP-L-v0``, ``sftvrl/GP-VL-v0``,
``sftvrl/VIRL-L-v0`` and ``sftvrl/VIRL-VL-v0``.
"""

from sftvrl import envs
from sftvrl.envs.general_points import (
    GeneralPointsEnv,
    Hand,
    Outcome,
    Rules,
    Verdict,
    deal,
    is_solvable,
    parse_response,
    solutions,
    verify,
)
from sftvrl.envs.virl import VirlEnv

__version__ = "0.1.0"

_LAZY = {"models", "LoraSettings", "ModelConfig", "ModelLoadError", "Policy", "load_policy"}
"""Model names load transformers and peft (seconds); they are imported on first use only."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        models = importlib.import_module("sftvrl.models")
        return models if name == "models" else getattr(models, name)
    raise AttributeError(f"module 'sftvrl' has no attribute {name!r}")


__all__ = [
    "GeneralPointsEnv",
    "Hand",
    "LoraSettings",
    "ModelConfig",
    "ModelLoadError",
    "Outcome",
    "Policy",
    "Rules",
    "Verdict",
    "VirlEnv",
    "__version__",
    "deal",
    "envs",
    "is_solvable",
    "load_policy",
    "models",
    "parse_response",
    "solutions",
    "verify",
]

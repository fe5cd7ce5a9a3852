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

__all__ = [
    "GeneralPointsEnv",
    "Hand",
    "Outcome",
    "Rules",
    "Verdict",
    "VirlEnv",
    "__version__",
    "deal",
    "envs",
    "is_solvable",
    "parse_response",
    "solutions",
    "verify",
]

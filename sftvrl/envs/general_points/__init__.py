"""GeneralPoints (make 24 from four cards): rules, dealing, solver, parser, verifier, images, env."""

from sftvrl.envs.general_points.arithmetic import FormulaError, evaluate_exact
from sftvrl.envs.general_points.cards import (
    Hand,
    deal,
    enumerate_hands,
    number_multisets,
    parse_card,
)
from sftvrl.envs.general_points.env import GeneralPointsEnv
from sftvrl.envs.general_points.expert import expert_formula
from sftvrl.envs.general_points.parser import ParsedResponse, parse_response
from sftvrl.envs.general_points.render import hand_to_array, render_card, render_hand
from sftvrl.envs.general_points.rules import FACE_RANKS, RANKS, SUITS, Rules
from sftvrl.envs.general_points.solver import is_solvable, solutions, solvability_table
from sftvrl.envs.general_points.verifier import REWARDS, Outcome, Verdict, verify

__all__ = [
    "FACE_RANKS",
    "RANKS",
    "REWARDS",
    "SUITS",
    "FormulaError",
    "GeneralPointsEnv",
    "Hand",
    "Outcome",
    "ParsedResponse",
    "Rules",
    "Verdict",
    "deal",
    "enumerate_hands",
    "evaluate_exact",
    "expert_formula",
    "hand_to_array",
    "is_solvable",
    "number_multisets",
    "parse_card",
    "parse_response",
    "render_card",
    "render_hand",
    "solutions",
    "solvability_table",
    "verify",
]

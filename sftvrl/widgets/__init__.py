"""ipywidgets apps for JupyterLab: play GeneralPoints against a model, walk a V-IRL route.

``GeneralPointsGame().widget`` (or just ``GeneralPointsGame()`` as a cell's last line) shows the
game; ``VirlWalk()`` the route walker. Both are plain classes whose controls are attributes and
whose actions are methods (``deal``, ``submit``, ``ask_model``, ...), so code and tests drive them
exactly as a click does. Models load lazily, on the first "Ask the model".
"""

from sftvrl.widgets.common import EXPERT, TINY_CHOICES, ModelPicker, forget_models
from sftvrl.widgets.general_points import GeneralPointsGame, Scoreboard
from sftvrl.widgets.virl import VirlWalk

__all__ = [
    "EXPERT",
    "TINY_CHOICES",
    "GeneralPointsGame",
    "ModelPicker",
    "Scoreboard",
    "VirlWalk",
    "forget_models",
]

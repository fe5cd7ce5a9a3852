"""Environments of the study, registered with gymnasium on import.

``gymnasium.make("sftvrl/GP-L-v0", split="rule_ood")`` and friends; the keyword arguments are those
of :class:`~sftvrl.envs.general_points.GeneralPointsEnv` (GP-L, GP-VL) and
:class:`~sftvrl.envs.virl.VirlEnv` (VIRL-L, VIRL-VL).
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    "sftvrl/GP-L-v0": ("sftvrl.envs.general_points:GeneralPointsEnv", {"vision": False}),
    "sftvrl/GP-VL-v0": ("sftvrl.envs.general_points:GeneralPointsEnv", {"vision": True}),
    "sftvrl/VIRL-L-v0": ("sftvrl.envs.virl:VirlEnv", {"vision": False}),
    "sftvrl/VIRL-VL-v0": ("sftvrl.envs.virl:VirlEnv", {"vision": True}),
}


def register_envs() -> None:
    """Register every sftvrl environment id with gymnasium (idempotent)."""
    for env_id, (entry_point, kwargs) in _ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=kwargs)


register_envs()

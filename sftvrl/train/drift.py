"""How far training has moved the weights from where it started: ||theta - theta_start||_2.

Equal compute does not mean equal change: an RL step and an SFT step of the same FLOPs can move
a model by very different amounts (``../shared/research/TINY_PILOT.md``). Logging the drift next
to every evaluation lets SFT and RL be compared at matched drift as well as at matched compute.
"""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable parameters (the reference drift is measured from)."""
    return {
        name: parameter.detach().to("cpu", torch.float32).clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def parameter_drift(model: nn.Module, reference: dict[str, torch.Tensor]) -> float:
    """The L2 distance between the model's trainable parameters and ``reference``.

    Parameters are matched by name, ignoring wrappers' prefixes (``module.``, ``_orig_mod.``), so
    a model wrapped by accelerate after the snapshot still matches.
    """
    total = 0.0
    matched = 0
    strip = ("module.", "_orig_mod.")
    lookup = {_strip(name, strip): tensor for name, tensor in reference.items()}
    for name, parameter in model.named_parameters():
        ref = lookup.get(_strip(name, strip))
        if ref is None:
            continue
        diff = parameter.detach().to("cpu", torch.float32) - ref
        total += float(diff.pow(2).sum())
        matched += 1
    if reference and not matched:
        raise ValueError("no parameter of the model matches the drift reference by name")
    return total**0.5


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name

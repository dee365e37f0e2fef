"""A live module's weight, with weight normalisation folded in.

``torch.nn.utils.parametrizations.weight_norm`` keeps ``g`` and ``v`` as
``module.parametrizations.weight.original0`` / ``original1`` and computes
the weight on access; the older ``torch.nn.utils.weight_norm`` keeps
``weight_g`` / ``weight_v`` and recomputes ``weight`` in a forward pre-hook
(so ``module.weight`` is stale until the next forward). Either way the
weight is ``g * v / ||v||``, the norm taken over every axis but ``dim``
(over the whole tensor when ``dim`` is -1 or None). The tensors are read
here and folded in float64; no parametrization or hook code is called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError

__all__ = ["as_array", "weight"]


def as_array(t: Any) -> np.ndarray:
    """A tensor as float64 numpy: every source precision kept exactly (the
    Model converts to its dtype)."""
    return t.detach().to("cpu").double().numpy()


def _fold(g: np.ndarray, v: np.ndarray, dim: Any) -> np.ndarray:
    if dim is None or dim == -1:
        return g * v / np.sqrt(np.sum(v * v))
    axes = tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    return g * v / np.sqrt(np.sum(v * v, axis=axes, keepdims=True))


def weight(torch: Any, mod: Any, name: str) -> np.ndarray:
    """``mod.weight`` as float64, weight norm (either API) folded in."""
    parametrize = torch.nn.utils.parametrize
    if parametrize.is_parametrized(mod, "weight"):
        plist = mod.parametrizations["weight"]
        kinds = [type(p).__name__ for p in plist]
        if len(plist) != 1 or not isinstance(plist[0], torch.nn.utils.parametrizations._WeightNorm):
            raise WeightsError(
                f"module {name} ({type(mod).__name__}): its weight is parametrized by "
                f"{', '.join(kinds)}; streamgru folds weight_norm only (or call "
                f"torch.nn.utils.parametrize.remove_parametrizations(module, 'weight') first)")
        # parametrizations.weight_norm: original0 is g, original1 is v
        return _fold(as_array(plist.original0), as_array(plist.original1), plist[0].dim)
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in mod._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == "weight":
            # torch.nn.utils.weight_norm: weight_g, weight_v; weight is set by the hook
            return _fold(as_array(mod.weight_g), as_array(mod.weight_v), hook.dim)
    return as_array(mod.weight)

"""EvoNorm-S0 (Liu et al., 2020, "Evolving Normalization-Activation Layers"), as
timm's EvoNorm2dS0: a normalisation and activation in one layer.

Where the layer is activated it computes x * sigmoid(v * x) / std(x) over groups of
channels, then scales and shifts per channel: its own activation takes the place of
the layer's (timm passes it no activation; the network's SiLU is not applied).
Where the layer is not activated (a block's linear projection) it only scales and
shifts, with no v and no statistics (timm's `apply_act=False`). No running
statistics: nothing to fold.
"""

from __future__ import annotations

from typing import Any, Literal

from .base import GroupedSettings, Norm, NormType, grouped_attrs, grouping_problem


class EvoNormS0Settings(GroupedSettings):
    """EvoNorm-S0 everywhere (timm: `norm_layer=partial(EvoNorm2dS0, group_size=8)`)."""

    type: Literal["evonorm_s0"]


def attrs(norm: Norm, channels: int, activated: bool) -> dict[str, Any]:
    return {**grouped_attrs(norm, channels), "act": activated}


def per_element(attrs: dict[str, Any]) -> dict[str, int]:
    """Its arithmetic per element. Activated: v * x, the sigmoid, x * sigmoid, the
    group's variance (its mean, x - mean, the square, the sum: 4), the division by
    the standard deviation, scale and shift; otherwise scale and shift. fvcore
    counts none of it (elementwise ops)."""
    if attrs["act"]:
        return {"elementwise_ops": 9, "act_ops": 1}
    return {"elementwise_ops": 2}


NORM = NormType(
    name="evonorm_s0",
    kind="evonorm_s0",
    tensor_names=("weight", "bias", "v"),
    settings=EvoNormS0Settings,
    attrs=attrs,
    trainable=lambda attrs: 3 if attrs["act"] else 2,  # weight, bias[, v]
    per_element=per_element,
    check=grouping_problem,  # timm asserts it, activated or not
    activates=True,
    helpers=frozenset({"keras_ops"}),
)

"""group norm: statistics of each input over groups of channels and all positions
(Wu and He, 2018), as timm's GroupNormAct: PyTorch's GroupNorm then the layer's
activation. No running statistics: nothing to fold."""

from __future__ import annotations

from typing import Any, Literal

from .base import GroupedSettings, Norm, NormType, grouped_attrs, grouping_problem


class GroupNormSettings(GroupedSettings):
    """GroupNorm everywhere (timm: `norm_layer=partial(GroupNormAct, group_size=8)`)."""

    type: Literal["group_norm"]


def attrs(norm: Norm, channels: int, activated: bool) -> dict[str, Any]:
    return grouped_attrs(norm, channels)


NORM = NormType(
    name="group_norm",
    kind="group_norm",
    settings=GroupNormSettings,
    attrs=attrs,
    trainable=lambda attrs: 2,  # weight, bias
    # fvcore's count of group_norm with an affine: statistics, normalising, scale
    # and shift, "5 is just a rough estimate" per element
    per_element=lambda attrs: {"bn_ops": 5},
    check=grouping_problem,
    helpers=frozenset({"keras_ops"}),  # its Keras layer computes from static shapes
)

"""layer norm over channels: statistics of each position's channels, as timm's
LayerNormAct2d (PyTorch's LayerNorm on channels-last, then the layer's
activation); Keras' LayerNormalization on its channels-last maps. No running
statistics: nothing to fold."""

from __future__ import annotations

from typing import Literal

from ...frontend.fields import Positive, Strict
from .base import NormType, eps_attrs


class LayerNormSettings(Strict):
    """LayerNorm over channels everywhere (timm: `norm_layer=LayerNormAct2d`)."""

    type: Literal["layer_norm"]
    eps: Positive = 1e-5


NORM = NormType(
    name="layer_norm",
    kind="layer_norm",
    settings=LayerNormSettings,
    attrs=eps_attrs,
    trainable=lambda attrs: 2,  # weight, bias
    per_element=lambda attrs: {"bn_ops": 5},  # fvcore's count of layer_norm
)

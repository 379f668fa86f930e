"""RMSNorm over channels (Zhang and Sennrich, 2019), as timm's RmsNorm2d and
RmsNormAct2d (MobileNetV5's norm): at each position, x / sqrt(mean of x² over the
channels + eps), times a learned weight per channel — no mean subtracted, no bias,
no running statistics (nothing to fold). Keras' RMSNormalization computes the same
on its channels-last maps."""

from __future__ import annotations

from typing import Literal

from ...frontend.fields import Positive, Strict
from .base import NormType, eps_attrs


class RmsNormSettings(Strict):
    """RMSNorm over channels everywhere (timm's MobileNetV5: `norm_layer=RmsNorm2d`,
    eps 1e-6)."""

    type: Literal["rms_norm"]
    eps: Positive = 1e-6


NORM = NormType(
    name="rms_norm",
    kind="rms_norm",
    tensor_names=("weight",),
    settings=RmsNormSettings,
    attrs=eps_attrs,
    trainable=lambda attrs: 1,  # weight
    # the square, its sum over channels, the scaling by 1/rms and by the weight;
    # fvcore counts none of it (elementwise ops: no aten norm op computes it)
    per_element=lambda attrs: {"elementwise_ops": 4},
)

"""batch norm: per-channel statistics of the training batches, kept as running
averages for inference (torchvision's and keras.applications' BatchNorm2d, timm's
BatchNormAct2d). Its epsilon and momentum are the conventions' (`bn_epsilon`,
`bn_momentum`); it is the one norm that folds into the convolution before it."""

from __future__ import annotations

from typing import Any, Literal

from ...frontend.conventions import PROFILES
from ...frontend.fields import Strict
from .base import Norm, NormType


class BatchNormSettings(Strict):
    """Batch norm everywhere (the default); eps and momentum from `conventions`."""

    type: Literal["batch_norm"] = "batch_norm"


def attrs(norm: Norm, channels: int, activated: bool) -> dict[str, Any]:
    return {
        "eps": norm.conventions.bn_epsilon,
        "momentum": norm.conventions.bn_momentum,  # PyTorch's convention
        "foldable": norm.foldable,
    }


NORM = NormType(
    name="batch_norm",
    kind="bn",
    tensor_names=("weight", "bias", "running_mean", "running_var"),
    settings=BatchNormSettings,
    attrs=attrs,
    trainable=lambda attrs: 2,  # gamma, beta
    statistics=2,  # running mean and variance
    per_element=lambda attrs: {"bn_ops": 2},  # x * scale + shift once folded
    folds=True,
    dense=True,  # BatchNorm1d after a dense layer
    profiles=PROFILES,
)

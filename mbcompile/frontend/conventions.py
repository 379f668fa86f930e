"""Reference-implementation conventions, as data.

torchvision and keras.applications build "the same" MobileNets with different
details (see DESIGN.md). A spec names a profile and may override single fields; the
expansion stage reads only the resolved `Conventions`, never the profile name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

PROFILES = ("torchvision", "keras_applications", "timm")
# Network families (the spec's `family`): which paper a network follows. Profiles
# give a value per family where the references differ; families a profile does not
# name take its "default".
FAMILIES = (
    "v1",
    "v2",
    "v3",
    "v4",
    "v5",
    "efficientnet",
    "mnasnet",
    "lcnet",
    "fbnet",
)


@dataclass(frozen=True)
class Conventions:
    profile: str
    # Padding of stride-2 convolutions: "symmetric" = (k-1)//2 on each side;
    # "same" = TensorFlow's SAME (the extra pixel, if any, at the bottom/right);
    # "end" = always (k//2 - 1, k//2), keras.applications' fixed MobileNet V1 pad.
    stride2_padding: str
    stem_padding: str
    bn_epsilon: float
    bn_momentum: float  # PyTorch convention; Keras momentum = 1 - this
    # "round" the exact c*width; "truncate" it to int first (keras V1, every layer);
    # "truncate_stages": truncate stage-table outputs only (keras V2: not stem/head).
    width_rounding: str
    # Ratio rows: "round" (torchvision: int(round(in*t))), "floor" (keras: in*t) or
    # "divisible" (timm: make_divisible(in*t), whatever the width multiplier).
    expansion_rounding: str
    expanded_size: str  # absolute expanded sizes: "scale" by width, or "ratio" of input
    # "when_needed": the block changes width (torchvision: t != 1 for ratio rows,
    # expanded != input for absolute sizes); "except_first": every block but the
    # first; "always" (timm: an inverted residual always has its 1x1 expansion).
    expand_conv: str
    stem_width: str  # "scaled" or "fixed"
    head_width: str  # "scaled", "scaled_above_one" or "fixed"
    # Squeeze channels from width*ratio: make_divisible of it truncated ("floor") or
    # exact ("exact"), or Python's round of it with no divisor ("round": timm's
    # EfficientNet, MnasNet and LCNet).
    se_rounding: str
    # "linear" (Dense / nn.Linear), "conv1x1" (keras.applications: the hidden and
    # logits layers as 1x1 convs on the pooled map) or "conv_head" (timm: the hidden
    # layer as a 1x1 conv on the pooled map, the logits a Linear).
    classifier: str
    input_rescaling: bool  # Keras V3's Rescaling(1/127.5, offset=-1) at the input
    # How build_model() initialises weights: "torchvision" (kaiming-normal fan-out
    # convolutions, N(0, 0.01) linear layers), "timm" (TensorFlow's EfficientNet
    # scheme: N(0, sqrt(2 / fan_out)) convolutions counting groups, U(+-1/sqrt(out))
    # classifier, xavier-uniform attention projections) or "keras" (glorot-uniform
    # kernels, Keras' layer defaults); batch norm always ones and zeros.
    initialization: str


# Values that differ per network family are given as {family: value, "default": ...}.
_PROFILE_TABLE: dict[str, dict[str, Any]] = {
    "torchvision": {
        "stride2_padding": "symmetric",
        "stem_padding": "symmetric",
        "bn_epsilon": {"v1": 1e-5, "v2": 1e-5, "default": 1e-3},
        "bn_momentum": {"v1": 0.1, "v2": 0.1, "default": 0.01},
        "width_rounding": "round",
        "expansion_rounding": "round",
        "expanded_size": "scale",
        "expand_conv": "when_needed",
        "stem_width": "scaled",
        "head_width": {"v2": "scaled_above_one", "default": "scaled"},
        "se_rounding": "floor",
        "classifier": "linear",
        "input_rescaling": False,
        "initialization": "torchvision",
    },
    "keras_applications": {
        "stride2_padding": {"v1": "end", "default": "same"},
        "stem_padding": "same",
        "bn_epsilon": 1e-3,
        "bn_momentum": {"v1": 0.01, "default": 0.001},
        "width_rounding": {
            "v1": "truncate",
            "v2": "truncate_stages",
            "default": "round",
        },
        "expansion_rounding": "floor",
        "expanded_size": "ratio",
        "expand_conv": "except_first",
        "stem_width": {"v1": "scaled", "v2": "scaled", "default": "fixed"},
        "head_width": "scaled_above_one",
        "se_rounding": "exact",
        "classifier": {"v2": "linear", "default": "conv1x1"},
        "input_rescaling": {"v1": False, "v2": False, "default": True},
        "initialization": "keras",
    },
    # timm 1.0 (timm/models/mobilenetv3.py, efficientnet.py, _efficientnet_builder.py):
    # PyTorch's BN defaults, make_divisible everywhere, the MobileNetV3 class's head
    # (pooling, then a 1x1 conv_head of fixed width). Its `tf_` variants set
    # stride2_padding/stem_padding: same and bn_epsilon: 1.0e-3; its EfficientNet
    # class scales the head (head_width: scaled) and rounds SE widths (round).
    "timm": {
        "stride2_padding": "symmetric",
        "stem_padding": "symmetric",
        "bn_epsilon": 1e-5,
        "bn_momentum": 0.1,
        "width_rounding": "round",
        "expansion_rounding": "divisible",
        "expanded_size": "scale",
        "expand_conv": "always",
        "stem_width": "scaled",
        "head_width": "fixed",
        "se_rounding": "exact",
        "classifier": "conv_head",
        "input_rescaling": False,
        "initialization": "timm",
    },
}


def profile_values() -> dict[str, dict[str, Any]]:
    """Each profile's values, {family: value, "default": value} where they differ
    per family (a copy: for documentation)."""
    return copy.deepcopy(_PROFILE_TABLE)


FIELD_NAMES = tuple(f.name for f in fields(Conventions) if f.name != "profile")


def resolve(profile: str, family: str, overrides: dict[str, Any]) -> Conventions:
    """The profile's values for this family, with explicitly given fields on top."""
    values: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = _PROFILE_TABLE[profile][name]
        if isinstance(value, dict):
            value = value.get(family, value.get("default"))
        values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Conventions(profile=profile, **values)

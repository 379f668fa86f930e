"""Reference-implementation conventions, as data.

torchvision and keras.applications build "the same" MobileNets with different
details (see DESIGN.md). A spec names a profile and may override single fields; the
expansion stage reads only the resolved `Conventions`, never the profile name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PROFILES = ("torchvision", "keras_applications")


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
    expansion_rounding: str  # ratio rows: "round" (torchvision) or "floor" (keras)
    expanded_size: str  # absolute expanded sizes: "scale" by width, or "ratio" of input
    # "when_needed": the block changes width (torchvision: t != 1 for ratio rows,
    # expanded != input for absolute sizes); "except_first": every block but the first.
    expand_conv: str
    stem_width: str  # "scaled" or "fixed"
    head_width: str  # "scaled" or "scaled_above_one"
    se_rounding: str  # squeeze channels from expanded*ratio: "floor" first, or "exact"
    classifier: str  # "linear" (Dense / nn.Linear) or "conv1x1" (Keras 1x1 conv head)
    input_rescaling: bool  # Keras V3's Rescaling(1/127.5, offset=-1) at the input


# Values that differ per network family are given as {family: value}.
_PROFILE_TABLE: dict[str, dict[str, Any]] = {
    "torchvision": {
        "stride2_padding": "symmetric",
        "stem_padding": "symmetric",
        "bn_epsilon": {"v1": 1e-5, "v2": 1e-5, "v3": 1e-3},
        "bn_momentum": {"v1": 0.1, "v2": 0.1, "v3": 0.01},
        "width_rounding": "round",
        "expansion_rounding": "round",
        "expanded_size": "scale",
        "expand_conv": "when_needed",
        "stem_width": "scaled",
        "head_width": {"v1": "scaled", "v2": "scaled_above_one", "v3": "scaled"},
        "se_rounding": "floor",
        "classifier": "linear",
        "input_rescaling": False,
    },
    "keras_applications": {
        "stride2_padding": {"v1": "end", "v2": "same", "v3": "same"},
        "stem_padding": "same",
        "bn_epsilon": 1e-3,
        "bn_momentum": {"v1": 0.01, "v2": 0.001, "v3": 0.001},
        "width_rounding": {"v1": "truncate", "v2": "truncate_stages", "v3": "round"},
        "expansion_rounding": "floor",
        "expanded_size": "ratio",
        "expand_conv": "except_first",
        "stem_width": {"v1": "scaled", "v2": "scaled", "v3": "fixed"},
        "head_width": "scaled_above_one",
        "se_rounding": "exact",
        "classifier": {"v1": "conv1x1", "v2": "linear", "v3": "conv1x1"},
        "input_rescaling": {"v1": False, "v2": False, "v3": True},
    },
}

FIELD_NAMES = tuple(f.name for f in fields(Conventions) if f.name != "profile")


def resolve(profile: str, family: str, overrides: dict[str, Any]) -> Conventions:
    """The profile's values for this family, with explicitly given fields on top."""
    values: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = _PROFILE_TABLE[profile][name]
        values[name] = value[family] if isinstance(value, dict) else value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Conventions(profile=profile, **values)

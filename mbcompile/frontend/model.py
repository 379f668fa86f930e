"""The spec as pydantic models: the network header, stem, stage table and head.

Validation is strict (unknown keys and wrong types are errors, no string-to-number
coercion). The stage table's row types are the block modules' own row models, read
from the registry in `mbcompile.ir.blocks`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..ir.blocks import ROW_MODELS, ROW_TYPES
from . import conventions as conv
from .conventions import PROFILES
from .fields import (
    Activation,
    Channels,
    Identifier,
    Kernel,
    Positive,
    Ratio,
    Strict,
    Stride,
    check,
)


class ConventionsSpec(Strict):
    """A named profile plus optional per-field overrides (see conventions.py)."""

    profile: Literal[PROFILES]  # type: ignore[valid-type]
    stride2_padding: Literal["symmetric", "same", "end"] | None = None
    stem_padding: Literal["symmetric", "same", "end"] | None = None
    bn_epsilon: Positive | None = None
    bn_momentum: Ratio | None = None
    width_rounding: Literal["round", "truncate", "truncate_stages"] | None = None
    expansion_rounding: Literal["round", "floor"] | None = None
    expanded_size: Literal["scale", "ratio"] | None = None
    expand_conv: Literal["when_needed", "except_first"] | None = None
    stem_width: Literal["scaled", "fixed"] | None = None
    head_width: Literal["scaled", "scaled_above_one"] | None = None
    se_rounding: Literal["floor", "exact"] | None = None
    classifier: Literal["linear", "conv1x1"] | None = None
    input_rescaling: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _profile_name(cls, data: Any) -> Any:
        # `conventions: keras_applications` is shorthand for {profile: keras_applications}
        return {"profile": data} if isinstance(data, str) else data


class StemSpec(Strict):
    """The first conv-bn-act."""

    c: Channels
    k: Kernel = 3
    s: Stride = 2
    act: Activation = "relu6"


# A stage-table row: one of the registered row models, told apart by `block:`.
StageRow = Annotated[
    Union[tuple(ROW_MODELS.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="block"),
]


class HeadConvSpec(Strict):
    """The last 1x1 conv-bn-act: absolute channels `c`, or `t` times its input."""

    c: Channels | None = None
    t: Positive | None = None
    act: Activation = "relu6"

    @model_validator(mode="after")
    def _one_size(self) -> HeadConvSpec:
        check((self.c is None) != (self.t is None), "give exactly one of 'c' or 't'")
        return self


class HiddenSpec(Strict):
    """A hidden fully connected layer before the logits (MobileNet V3)."""

    c: Channels
    act: Activation = "hardswish"


class HeadSpec(Strict):
    conv: HeadConvSpec | None = None
    pool: Literal["avg", "max", "none"] = "avg"  # "none": only with include_top: false
    hidden: HiddenSpec | None = None
    dropout: Ratio = 0.0


def _tap(v: int | str) -> int | str:
    if isinstance(v, str):
        check(
            v in STRIDE_TAPS,
            f"unknown feature tap '{v}'; expected a block index or one of "
            f"{', '.join(STRIDE_TAPS)}",
        )
    else:
        check(0 <= v < 1024, "block index must be between 0 and 1023")
    return v


def _taps(v: list | str) -> list | str:
    if isinstance(v, str):
        check(v == "each_stride", "expected a list of taps or 'each_stride'")
    else:
        check(len(set(v)) == len(v), "feature taps must not repeat")
    return v


# A tap is a block index in `features` (0 = stem) or the last block at a total stride;
# `each_stride` taps the last block of every resolution.
STRIDE_TAPS = ("stride2", "stride4", "stride8", "stride16", "stride32")
FeatureTap = Annotated[int | str, AfterValidator(_tap)]
FeatureTaps = Annotated[
    list[FeatureTap] | str, Field(min_length=1), AfterValidator(_taps)
]


class Spec(Strict):
    name: Identifier
    family: Literal["v1", "v2", "v3"]
    resolution: Annotated[int, Field(ge=1, le=4096)]
    in_channels: Annotated[int, Field(ge=1, le=64)] = 3
    num_classes: Annotated[int, Field(ge=1, le=100_000)]
    width_multiplier: Annotated[float, Field(gt=0, le=8)] = 1.0
    depth_multiplier: Annotated[int, Field(ge=1, le=8)] = 1
    channel_divisor: Annotated[int, Field(ge=1, le=256)] = 8
    conventions: ConventionsSpec
    # Backbone use: no classifier, dilation instead of stride, named feature outputs.
    include_top: bool = True
    # Inference form: batch norm folded into the preceding convolution's bias
    # (`mbcompile weights --fold-bn` converts trained weights to it).
    fold_batch_norm: bool = False
    output_stride: Literal[8, 16, 32] | None = None
    features: FeatureTaps | None = None
    block: Literal[ROW_TYPES] | None = None  # type: ignore[valid-type]
    stem: StemSpec
    stages: Annotated[list[StageRow], Field(min_length=1, max_length=256)]
    head: HeadSpec

    @field_validator("features")
    @classmethod
    def _features_need_headless(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("include_top", True):
            raise ValueError("feature outputs need include_top: false")
        return v

    @field_validator("head")
    @classmethod
    def _top_needs_pooling(cls, v: HeadSpec, info: ValidationInfo) -> HeadSpec:
        if v.pool == "none" and info.data.get("include_top", True):
            raise ValueError(
                "pool: none needs include_top: false (logits need pooling)"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_block(cls, data: Any) -> Any:
        # `block:` at the top names the block type of every row that does not say.
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            default = data.get("block")
            data = dict(data)
            data["stages"] = [
                {"block": default, **row}
                if isinstance(row, dict) and "block" not in row and default is not None
                else row
                for row in data["stages"]
            ]
        return data

    def resolved_conventions(self) -> conv.Conventions:
        given = self.conventions.model_dump(exclude={"profile"})
        return conv.resolve(self.conventions.profile, self.family, given)

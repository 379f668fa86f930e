"""The spec as pydantic models: the network header, stem, stage table and head.

Validation is strict (unknown keys and wrong types are errors, no string-to-number
coercion). The stage table's row types are the block modules' own row models, read
from the registry in `mbcompile.ir.blocks`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..ir.blocks import ROW_MODELS, ROW_TYPES
from . import conventions as conv
from .conventions import FAMILIES, PROFILES
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


def _scale_depth(repeats: list[int], coefficient: float) -> list[int]:
    total, scaled_total = sum(repeats), math.ceil(sum(repeats) * coefficient)
    scaled = []
    for n in reversed(repeats):
        share = max(1, round(n / total * scaled_total))
        scaled.append(share)
        total -= n
        scaled_total -= share
    return scaled[::-1]


class ConventionsSpec(Strict):
    """A named profile plus optional per-field overrides (see conventions.py)."""

    profile: Literal[PROFILES]  # type: ignore[valid-type]
    stride2_padding: Literal["symmetric", "same", "end"] | None = None
    stem_padding: Literal["symmetric", "same", "end"] | None = None
    bn_epsilon: Positive | None = None
    bn_momentum: Ratio | None = None
    width_rounding: Literal["round", "truncate", "truncate_stages"] | None = None
    expansion_rounding: Literal["round", "floor", "divisible"] | None = None
    expanded_size: Literal["scale", "ratio"] | None = None
    expand_conv: Literal["when_needed", "except_first", "always"] | None = None
    stem_width: Literal["scaled", "fixed"] | None = None
    head_width: Literal["scaled", "scaled_above_one", "fixed"] | None = None
    se_rounding: Literal["floor", "exact", "round"] | None = None
    classifier: Literal["linear", "conv1x1", "conv_head"] | None = None
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


def _stage_item_kind(value: Any) -> str:
    return "group" if isinstance(value, list) else "row"


# An item of `stages`: a row, or a list of rows that form one stage (timm builds each
# such group as one nn.Sequential: `blocks.<group>.<block>`).
StageItem = Annotated[
    Annotated[StageRow, Tag("row")]
    | Annotated[list[StageRow], Tag("group"), Field(min_length=1, max_length=64)],
    Discriminator(_stage_item_kind),
]
# Tags pydantic puts into error locations for the two kinds of stage items.
STAGE_ITEM_TAGS = ("row", "group")


class SqueezeExciteSpec(Strict):
    """How every squeeze-excite of the network is built (rows switch it on with `se`)."""

    act: Activation = "relu"  # between the two 1x1 convs
    gate: Literal["hardsigmoid", "sigmoid"] = "hardsigmoid"
    # Squeeze width as se_ratio of the block's expanded width (MobileNetV3) or of its
    # input (EfficientNet, MnasNet: se_ratio / t of the expanded width).
    width_from: Literal["expanded", "input"] = "expanded"


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
    """A hidden fully connected layer before the logits (MobileNet V3), with batch
    norm (and then no bias) where `norm` (MobileNetV4's head)."""

    c: Channels
    act: Activation = "hardswish"
    norm: bool = False


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
    family: Literal[FAMILIES]  # type: ignore[valid-type]
    resolution: Annotated[int, Field(ge=1, le=4096)]
    in_channels: Annotated[int, Field(ge=1, le=64)] = 3
    num_classes: Annotated[int, Field(ge=1, le=100_000)]
    width_multiplier: Annotated[float, Field(gt=0, le=8)] = 1.0
    # MobileNet V1's depthwise channel multiplier (keras.applications' name).
    depth_multiplier: Annotated[int, Field(ge=1, le=8)] = 1
    # EfficientNet's compound depth scaling: a stage of n blocks repeats ceil(n * d)
    # times (over a group of rows, the extra repeats go to its last rows, as timm).
    depth_coefficient: Annotated[float, Field(gt=0, le=8)] = 1.0
    channel_divisor: Annotated[int, Field(ge=1, le=256)] = 8
    conventions: ConventionsSpec
    # Backbone use: no classifier, dilation instead of stride, named feature outputs.
    include_top: bool = True
    # Inference form: batch norm folded into the preceding convolution's bias
    # (`mbcompile weights --fold-bn` converts trained weights to it).
    fold_batch_norm: bool = False
    output_stride: Literal[8, 16, 32] | None = None
    features: FeatureTaps | None = None
    # Stochastic depth: residual branches dropped in training, at rates rising
    # linearly from 0 at the first stage-table block to this (timm's rule).
    drop_path_rate: Ratio = 0.0
    squeeze_excite: SqueezeExciteSpec = SqueezeExciteSpec()
    block: Literal[ROW_TYPES] | None = None  # type: ignore[valid-type]
    stem: StemSpec
    stages: Annotated[list[StageItem], Field(min_length=1, max_length=256)]
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

    @field_validator("depth_multiplier", mode="before")
    @classmethod
    def _depth_multiplier_is_v1s(cls, v: Any) -> Any:
        check(
            not isinstance(v, float),
            "depth_multiplier is MobileNet V1's depthwise channel multiplier (an "
            "integer); EfficientNet's depth scaling is depth_coefficient",
        )
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_block(cls, data: Any) -> Any:
        # `block:` at the top names the block type of every row that does not say.
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            default = data.get("block")

            def named(row: Any) -> Any:
                if isinstance(row, list):
                    return [named(r) for r in row]
                if isinstance(row, dict) and "block" not in row and default is not None:
                    return {"block": default, **row}
                return row

            data = dict(data)
            data["stages"] = [named(item) for item in data["stages"]]
        return data

    def rows(self) -> list[tuple[tuple[int, ...], Any]]:
        """(path within `stages`, row) for every row in order: (i,) for a row,
        (i, j) for row j of a group."""
        found = []
        for i, item in enumerate(self.stages):
            if isinstance(item, list):
                found += [((i, j), row) for j, row in enumerate(item)]
            else:
                found.append(((i,), item))
        return found

    def repeats(self) -> list[tuple[tuple[int, ...], Any, int]]:
        """(path, row, blocks) for every row: its `n`, scaled by `depth_coefficient`.

        A stage of n blocks in all becomes ceil(n * d); over the rows of a group the
        extra repeats are given from its last row backwards, each row keeping at
        least one (timm's `_scale_stage_depth`, so EfficientNet-B1..B7 match it).
        """
        groups: dict[int, list] = {}
        for path, row in self.rows():
            groups.setdefault(path[0], []).append((path, row))
        found = []
        for members in groups.values():
            counts = [row.n for _, row in members]
            if self.depth_coefficient != 1:
                counts = _scale_depth(counts, self.depth_coefficient)
            found += [(p, r, n) for (p, r), n in zip(members, counts, strict=True)]
        return found

    def resolved_conventions(self) -> conv.Conventions:
        given = self.conventions.model_dump(exclude={"profile"})
        return conv.resolve(self.conventions.profile, self.family, given)

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
from ..ir.blocks.multi_scale_fusion import MultiScaleFusionSpec
from ..ir.layers import ANTI_ALIASING, SQUEEZE_EXCITE_UNITS
from ..ir.norms import NORM_MODELS
from . import conventions as conv
from .conventions import FAMILIES, PROFILES
from .fields import (
    Activation,
    Channels,
    GroupSize,
    Identifier,
    Kernel,
    Positive,
    Ratio,
    SeActivation,
    Strict,
    Stride,
    check,
)


def _scale_depth(repeats: list[int], coefficient: float, rounding: str) -> list[int]:
    total = sum(repeats)
    if rounding == "round":
        scaled_total = max(1, round(total * coefficient))
    else:
        scaled_total = math.ceil(total * coefficient)
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
    """The reference library whose conventions apply: `torchvision`,
    `keras_applications` or `timm`. Every other key overrides one of the profile's
    values; an absent one keeps the profile's value for the spec's family."""
    stride2_padding: Literal["symmetric", "same", "end"] | None = None
    """Padding of stride-2 convolutions: `symmetric`, (k-1)//2 on each side; `same`,
    TensorFlow's SAME (the extra pixel, if any, at the bottom/right); `end`, always
    (k//2 - 1, k//2), keras.applications' fixed MobileNet V1 pad."""
    stem_padding: Literal["symmetric", "same", "end"] | None = None
    """Padding of the stem convolution, in the words of `stride2_padding`."""
    bn_epsilon: Positive | None = None
    """Batch norm epsilon."""
    bn_momentum: Ratio | None = None
    """Batch norm momentum in PyTorch's convention (Keras' momentum is 1 minus it)."""
    width_rounding: Literal["round", "truncate", "truncate_stages"] | None = None
    """How widths are scaled by `width_multiplier`: `round`, make_divisible(c ×
    width); `truncate`, int(c × width) first, in every layer (keras.applications'
    V1); `truncate_stages`, truncated for stage-table outputs only
    (keras.applications' V2: not the stem and head)."""
    expansion_rounding: Literal["round", "floor", "divisible"] | None = None
    """Expanded widths of ratio rows: `round`, int(round(in × t)) (torchvision);
    `floor`, in × t (keras.applications); `divisible`, make_divisible(in × t)
    whatever the width multiplier (timm)."""
    expanded_size: Literal["scale", "ratio"] | None = None
    """Absolute expanded sizes (`exp`): `scale`, make_divisible(exp × width);
    `ratio`, make_divisible(in × exp / in_table), the table's ratio applied to the
    actual input."""
    expand_conv: Literal["when_needed", "except_first", "always"] | None = None
    """When a block has its 1×1 expansion: `when_needed`, when it changes the width
    (torchvision: t ≠ 1 for ratio rows, expanded ≠ input for absolute sizes);
    `except_first`, every block but the first (keras.applications); `always` (timm)."""
    stem_width: Literal["scaled", "fixed"] | None = None
    """The stem's width: `scaled` by `width_multiplier`, or `fixed`."""
    head_width: Literal["scaled", "scaled_above_one", "fixed"] | None = None
    """The head conv's width: `scaled` by `width_multiplier`, `scaled_above_one`
    (only when the multiplier exceeds 1), or `fixed`."""
    se_rounding: Literal["floor", "exact", "round"] | None = None
    """Squeeze widths from width × ratio: make_divisible of it truncated (`floor`) or
    exact (`exact`), or Python's round of it without a divisor (`round`: timm's
    EfficientNet, MnasNet and LCNet)."""
    classifier: Literal["linear", "conv1x1", "conv_head"] | None = None
    """The classifier's layers: `linear` (Dense / nn.Linear), `conv1x1`
    (keras.applications: the hidden and logits layers as 1×1 convs on the pooled map)
    or `conv_head` (timm: the hidden layer a 1×1 conv on the pooled map, the logits a
    Linear)."""
    input_rescaling: bool | None = None
    """Keras V3's Rescaling(1/127.5, offset=-1) at the input, for pixels in [0, 255]."""
    initialization: Literal["torchvision", "timm", "keras"] | None = None
    """How `build_model()` initialises weights: `torchvision` (kaiming-normal fan-out
    convolutions, N(0, 0.01) linear layers), `timm` (TensorFlow's EfficientNet
    scheme: N(0, sqrt(2 / fan_out)) convolutions counting groups, U(±1/sqrt(out))
    classifier, xavier-uniform attention projections) or `keras` (glorot-uniform
    kernels, Keras' layer defaults); batch norm always ones and zeros."""

    @model_validator(mode="before")
    @classmethod
    def _profile_name(cls, data: Any) -> Any:
        # `conventions: keras_applications` is shorthand for {profile: keras_applications}
        return {"profile": data} if isinstance(data, str) else data


# The network's normalisation: one of the registered norms' settings, told apart
# by `type:`; `norm: group_norm` is short for {type: group_norm}.
NormSettings = Annotated[
    Union[tuple(NORM_MODELS.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="type"),
]
DEFAULT_NORM = NORM_MODELS["batch_norm"]()


class StemSpec(Strict):
    """The first conv-bn-act."""

    c: Channels
    """Output channels of the first convolution (scaled as the conventions'
    `stem_width` says)."""
    k: Kernel = 3
    """Kernel size (odd, 1–11)."""
    s: Stride = 2
    """Stride: 1 or 2."""
    act: Activation = "relu6"
    """Activation after its batch norm."""
    bias: bool = False
    """A bias on the stem's convolution, before its norm (MobileNetV5's stem)."""


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


# Squeeze-excite itself, or an attention unit built in its place.
SQUEEZE_EXCITE_TYPES = ("squeeze_excite", *SQUEEZE_EXCITE_UNITS)


class SqueezeExciteSpec(Strict):
    """How every squeeze-excite of the network is built (rows switch it on with `se`)."""

    type: Literal[SQUEEZE_EXCITE_TYPES] = "squeeze_excite"  # type: ignore[valid-type]
    """What rows with `se` build: `squeeze_excite` (x × gate(fc2(act(fc1(pool(x)))))),
    or `global_context`, Global Context attention in its place (GCNet; timm's
    `se_layer="gc"`, gc_efficientnetv2_rw_t): the map's positions pooled by the
    softmax of a 1×1 conv to one channel, then fc1, a layer norm over its channels
    (epsilon 1e-6), the activation and fc2 gate the channels. Its activation, gate
    and `width_from` are the settings below, its width rounded half up to a whole
    channel (timm's rule for it, whatever `se_rounding` says); timm's module names
    (`se.conv_attn`, `se.mlp_scale.fc1`, `.norm`, `.fc2`)."""
    act: SeActivation = "relu"
    """Activation between the two 1×1 convolutions, or `block`: the activation of
    the block it sits in (timm's EfficientNet, FBNetV3, mobilenetv3_rw)."""
    gate: Literal["hardsigmoid", "sigmoid"] = "hardsigmoid"
    """The gate that scales the channels: `hardsigmoid` or `sigmoid`."""
    width_from: Literal["expanded", "input"] = "expanded"
    """The squeeze width is `se_ratio` of the block's expanded width (`expanded`,
    MobileNetV3) or of its input (`input`, EfficientNet and MnasNet: se_ratio / t of
    the expanded width); rounded by the conventions' `se_rounding`."""


class HeadConvSpec(Strict):
    """The last 1x1 conv-bn-act: absolute channels `c`, or `t` times its input."""

    c: Channels | None = None
    """Output channels of the last 1×1 conv-bn-act (scaled as the conventions'
    `head_width` says). Give `c` or `t`."""
    t: Positive | None = None
    """Its width as t × its input width instead of `c`."""
    act: Activation = "relu6"
    """Activation after its batch norm."""

    @model_validator(mode="after")
    def _one_size(self) -> HeadConvSpec:
        check((self.c is None) != (self.t is None), "give exactly one of 'c' or 't'")
        return self


class HiddenSpec(Strict):
    """A hidden fully connected layer before the logits (MobileNet V3), with batch
    norm (and then no bias) where `norm` (MobileNetV4's head); `bias: false` leaves
    out the bias of a layer without norm (timm's `head_bias=False`: FBNetV3,
    mobilenetv3_rw)."""

    c: Channels
    """Width of the hidden fully connected layer between pooling and the logits."""
    act: Activation = "hardswish"
    """Its activation."""
    norm: bool = False
    """Batch norm after the hidden layer, which then has no bias (MobileNetV4's
    head)."""
    bias: bool | None = None
    """`false`: no bias in a hidden layer without norm (timm's `head_bias=False`:
    FBNetV3, mobilenetv3_rw); default: a bias unless `norm`."""

    @property
    def has_bias(self) -> bool:
        return not self.norm if self.bias is None else self.bias


class HeadSpec(Strict):
    """What follows the stages: the last 1×1 conv-bn-act, global pooling, a hidden
    layer and dropout before the classifier."""

    conv: HeadConvSpec | None = None
    """The last 1×1 conv-bn-act, before pooling; none: no such convolution."""
    pool: Literal["avg", "max", "none"] = "avg"
    """Global pooling: `avg`, `max`, or `none` (only with `include_top: false`)."""
    hidden: HiddenSpec | None = None
    """A hidden fully connected layer before the logits (MobileNet V3); none: none."""
    dropout: Ratio = 0.0
    """Dropout rate before the logits (0 ≤ rate < 1)."""


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
    """The network's name in the generated code and reports: a Python identifier of
    at most 64 characters."""
    family: Literal[FAMILIES]  # type: ignore[valid-type]
    """The paper the network follows: `v1`, `v2`, `v3`, `v4`, `v5` (MobileNetV5),
    `efficientnet`, `mnasnet`, `lcnet` or `fbnet`. The conventions profiles give some
    values per family."""
    resolution: Annotated[int, Field(ge=1, le=4096)]
    """Input height and width in pixels (1–4096): shapes, MACs and TensorFlow SAME
    padding are computed for it."""
    in_channels: Annotated[int, Field(ge=1, le=64)] = 3
    """Channels of the input images (1–64)."""
    num_classes: Annotated[int, Field(ge=0, le=100_000)]
    """Classes of the classifier: the width of the logits (0–100,000). 0: no logits
    layer, the pooled features are the output (timm's `num_classes=0`;
    `build_model(num_classes=N)` still adds one for fine-tuning)."""
    width_multiplier: Annotated[float, Field(gt=0, le=8)] = 1.0
    """Scales every width (MobileNet's α), rounded to multiples of `channel_divisor`
    as the conventions' `width_rounding` says."""
    depth_multiplier: Annotated[int, Field(ge=1, le=8)] = 1
    """MobileNet V1's depthwise channel multiplier (keras.applications' name): each
    depthwise convolution outputs this many channels per input channel.
    EfficientNet's depth scaling is `depth_coefficient`."""
    depth_coefficient: Annotated[float, Field(gt=0, le=8)] = 1.0
    """EfficientNet's compound depth scaling: a stage of n blocks becomes ceil(n ×
    d) (or as `depth_rounding` says); over a list of rows, the extra repeats go to
    its last rows first, each row keeping at least one (timm's rule)."""
    depth_rounding: Literal["ceil", "round"] = "ceil"
    """How a stage's scaled depth n × d becomes a number of blocks: `ceil`
    (EfficientNet) or `round`, at least 1 (timm's `depth_trunc="round"`: MixNet-XL
    and -XXL)."""
    channel_divisor: Annotated[int, Field(ge=1, le=256)] = 8
    """Channels are rounded to multiples of this (never more than 10% below the exact
    width: see `round_limit`)."""
    round_limit: Annotated[float, Field(ge=0, le=1)] = 0.9
    """Rounding to `channel_divisor` never goes below this fraction of the exact
    width (0.9, make_divisible's rule; timm's EfficientNetV2-B and test models use 0,
    FBNetV3 0.95)."""
    conventions: ConventionsSpec
    """Whose conventions the network follows: a profile name (`torchvision`,
    `keras_applications`, `timm`), or a profile with single values overridden."""
    include_top: bool = True
    """`false`: no classifier; the output is the last feature map, pooled by
    `head.pool` (a backbone)."""
    fold_batch_norm: bool = False
    """The inference form: batch norm folded into the preceding convolution's bias
    (`--fold-bn`; `mbcompile weights --fold-bn` converts trained weights to it)."""
    output_stride: Literal[8, 16, 32] | None = None
    """8 or 16: later strides become 1 and their dilation grows instead, from the
    block that would have strided on (torchvision's dilated MobileNetV3 for
    segmentation)."""
    features: FeatureTaps | None = None
    """Named feature outputs: `strideN` is the last block at total stride N, an
    integer a block index (0 = stem); `each_stride` taps the last block of every
    resolution. Needs `include_top: false`; nothing after the last tap is built, and
    taps are never pooled."""
    drop_path_rate: Ratio = 0.0
    """Stochastic depth: in training, the residual branch of a block is dropped per
    sample at drop_path_rate × index / blocks (the index of the stage-table block
    from 0, as timm), kept ones scaled by 1/(1 − rate); inference is unchanged.
    PyTorch: a `DropPath` module; Keras: `Dropout(rate, noise_shape=(None, 1, 1, 1))`."""
    squeeze_excite: SqueezeExciteSpec = SqueezeExciteSpec()
    """How every squeeze-excite of the network is built; rows switch it on with `se`."""
    norm: NormSettings = DEFAULT_NORM
    """Every norm of the network, stem to head (timm's `norm_layer`): `batch_norm`
    (default), one that timm builds its EfficientNets with (`group_norm`,
    `layer_norm`, `evonorm_s0`), or MobileNetV5's `rms_norm`, as a name or a mapping
    with its settings. Norms other than batch norm need the timm conventions and
    cannot be folded."""
    group_size: GroupSize | None = None
    """Channels per group of the grouped convolutions of every row that does not give
    its own `group_size` (timm's `group_size`); none: each block's own."""
    anti_aliasing: Literal[tuple(ANTI_ALIASING)] | None = None  # type: ignore[valid-type]
    """Anti-aliased downsampling (timm's `aa_layer`): every block's strided
    convolution runs at stride 1 and this pooling downsamples after its batch norm
    and activation: `avg` (2×2 average pooling) or `blur` (BlurPool: the 3×3
    binomial filter [1, 2, 1]² / 16 at stride 2, zero padding; timm's `blurpc`). The
    stem and attention's keys and values keep their strides. None: strided
    convolutions."""
    experts_multiplier: Annotated[int, Field(ge=1, le=16)] = 1
    """Multiplies the `experts` of every `cond_conv_residual` row (timm's
    `experts_multiplier`: efficientnet_cc_b0_8e is the 4-expert table times 2)."""
    block: Literal[ROW_TYPES] | None = None  # type: ignore[valid-type]
    """The block type of the stage rows that do not name one."""
    stem: StemSpec
    """The first convolution, with batch norm and activation."""
    stages: Annotated[list[StageItem], Field(min_length=1, max_length=256)]
    """The stage table: each item is a row (a block type repeated `n` times) or a
    list of rows that form one stage (timm builds each as one nn.Sequential:
    `blocks.<stage>.<block>`)."""
    msfa: MultiScaleFusionSpec | None = None
    """MobileNetV5's multi-scale fusion neck after the stages (its block module,
    `multi_scale_fusion`, says what each setting does)."""
    head: HeadSpec
    """What follows the stages: the last 1×1 convolution, pooling, a hidden layer and
    dropout before the classifier."""

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
        if v.conv is not None and info.data.get("msfa") is not None:
            raise ValueError(
                "a head conv and msfa exclude each other: the neck is the last "
                "feature layer (as timm's MobileNetV5)"
            )
        return v

    @field_validator("msfa")
    @classmethod
    def _neck_ends_the_features(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("features") is not None:
            raise ValueError("msfa and feature outputs (features) exclude each other")
        return v

    @field_validator("norm", mode="before")
    @classmethod
    def _norm_name(cls, v: Any) -> Any:
        # `norm: group_norm` is shorthand for {type: group_norm}
        return {"type": v} if isinstance(v, str) else v

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

        A stage of n blocks in all becomes ceil(n * d) (or round(n * d), at least 1,
        by `depth_rounding`); over the rows of a group the
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
                counts = _scale_depth(
                    counts, self.depth_coefficient, self.depth_rounding
                )
            found += [(p, r, n) for (p, r), n in zip(members, counts, strict=True)]
        return found

    def resolved_conventions(self) -> conv.Conventions:
        given = self.conventions.model_dump(exclude={"profile"})
        return conv.resolve(self.conventions.profile, self.family, given)

"""depthwise-separable (MobileNet V1): [space-to-depth] -> depthwise k x k + BN +
act, [squeeze-excite], pointwise 1x1 + BN [+ act] [+ input].

V1 rows activate both convolutions and have no shortcut; timm's `ds` rows (the first
block of MobileNetV3, EfficientNet, MnasNet) leave the pointwise conv linear
(`pw_act: false`) and add the input where the shape allows (`residual: true`);
LCNet's `dsa` rows add squeeze-excite to V1's form.

Space-to-depth (`s2d: true`, timm's `d1`, EfficientNet-X/H): a 2x2 stride-2 conv-bn-
act first folds each 2x2 patch into 4x the channels, and the depthwise kernel
shrinks to (k + 1) // 2 (a 2x2 one padded as TensorFlow's SAME), as timm builds it.
The row starts a space-to-depth region (see expand.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import model_validator

from ...frontend.fields import (
    Activation,
    Channels,
    Dilation,
    GroupSize,
    Kernel,
    Repeats,
    RowModel,
    SeRatio,
    check,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph, IRError
from . import base
from .base import BlockType, Context, Spatial, SqueezeExcite


class DepthwiseSeparableRow(RowModel):
    """MobileNet V1 row: depthwise k x k (+BN+act), then pointwise 1x1 to c (+BN+act)."""

    block: Literal["depthwise_separable"]
    """The row's block type; default: the spec's top-level `block`."""
    c: Channels
    """Output channels of the pointwise convolution (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: StrideField = 1
    """Stride of the row's first block: 1 or 2."""
    k: Kernel = 3
    """Kernel size of the depthwise convolution (odd, 1–11)."""
    act: Activation = "relu6"
    """Activation after the depthwise convolution, and after the pointwise one unless
    `pw_act: false`."""
    dilation: Dilation = 1
    """Dilation of the spatial convolution (1–16; needs `s: 1`)."""
    se: bool = False
    """Squeeze-excite after the depthwise convolution; how it is built is the spec's
    `squeeze_excite`."""
    se_ratio: SeRatio = 0.25
    """Squeeze width as this ratio of the width `squeeze_excite.width_from` names
    (0–1)."""
    se_c: Channels | None = None
    """Squeeze width in channels, instead of `se_ratio` (not width-scaled nor rounded:
    timm's pruned models give every block's)."""
    pw_act: bool = True
    """`false`: the pointwise convolution is linear (timm's `ds` rows; V1 and LCNet
    activate it)."""
    residual: bool = False
    """`true`: add the input where stride 1 and widths agree; depthwise-separable
    rows have no shortcut by default."""
    group_size: GroupSize | None = None
    """Channels per group of the depthwise convolution; none: 1 (depthwise)."""
    s2d: bool = False
    """Space-to-depth first (timm's `d1`, EfficientNet-X/H): the row's first block
    folds each 2x2 patch into 4x the channels with a 2x2 stride-2 conv-bn-act and
    its depthwise kernel shrinks to (k + 1) // 2; widths are 4x until the next
    strided block, which does not stride and expands a quarter as much. Needs
    `s: 1`."""

    @model_validator(mode="after")
    def _space_to_depth(self) -> DepthwiseSeparableRow:
        check(
            not self.s2d or self.s == 1,
            "s2d (space-to-depth) halves the resolution itself; the row needs s: 1",
        )
        return self


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    s2d: Spatial | None  # the space-to-depth conv (2x2, stride 2), if any
    dw: Spatial
    multiplier: int  # depthwise channel multiplier (V1's depth_multiplier)
    group_size: int  # channels per group of the k x k conv: 1 is depthwise
    act: str
    se: SqueezeExcite | None
    pw_act: bool
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(ctx: Context, row: DepthwiseSeparableRow, stride: int, size) -> Params:
    out_c = ctx.stage_width(row.c)
    multiplier = ctx.spec.depth_multiplier
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    s2d, kernel, rule = None, row.k, None
    if row.s2d:
        if multiplier != 1:
            raise IRError("s2d (space-to-depth) rows need depth_multiplier: 1")
        s2d = Spatial(2, 2, 1, base.padding("same", 2, 2, 1, size))
        size = base.output_size(s2d, size)
        kernel = (row.k + 1) // 2
        rule = "same" if kernel == 2 else None  # timm pads a 2x2 kernel as TF does
        residual, drop_path = False, 0.0  # the shortcut has another size
    # timm's squeeze on 4x the input with a quarter of the ratio: the input's width
    se_on = ctx.in_c if s2d else ctx.in_c * multiplier
    return Params(
        in_c=ctx.in_c,
        out_c=out_c,
        s2d=s2d,
        dw=base.spatial(ctx, kernel, stride, row.dilation, size, rule),
        multiplier=multiplier,
        group_size=base.group_size(ctx, row, 1),
        act=row.act,
        se=base.squeeze(ctx, row, se_on),
        pw_act=row.pw_act,
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    if p.s2d is not None:
        x = base.conv_bn_act(
            graph,
            x,
            f"{name}.s2d",
            out_c=4 * p.in_c,
            conv=p.s2d,
            act=p.act,
            bn=ctx.bn(),
        )
    x = base.depthwise(
        graph,
        x,
        f"{name}.dw",
        conv=p.dw,
        act=p.act,
        bn=ctx.bn(),
        group_size=p.group_size,
        multiplier=p.multiplier,
    )
    if p.se is not None:
        x = base.squeeze_excite(graph, x, f"{name}.se", p.se)
    act = p.act if p.pw_act else None
    x = base.pointwise(graph, x, f"{name}.pw", p.out_c, act, ctx.bn())
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="depthwise_separable",
    row=DepthwiseSeparableRow,
    resolve=resolve,
    expand=expand,
    template="depthwise_separable",
    class_name="DepthwiseSeparable",
    colour="#a6d4f2",
)

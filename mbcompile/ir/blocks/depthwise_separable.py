"""depthwise-separable (MobileNet V1): depthwise k x k + BN + act, [squeeze-excite],
pointwise 1x1 + BN [+ act] [+ input].

V1 rows activate both convolutions and have no shortcut; timm's `ds` rows (the first
block of MobileNetV3, EfficientNet, MnasNet) leave the pointwise conv linear
(`pw_act: false`) and add the input where the shape allows (`residual: true`);
LCNet's `dsa` rows add squeeze-excite to V1's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...frontend.fields import (
    Activation,
    Channels,
    Dilation,
    Kernel,
    Repeats,
    RowModel,
    SeRatio,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
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
    pw_act: bool = True
    """`false`: the pointwise convolution is linear (timm's `ds` rows; V1 and LCNet
    activate it)."""
    residual: bool = False
    """`true`: add the input where stride 1 and widths agree; depthwise-separable
    rows have no shortcut by default."""


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    dw: Spatial
    multiplier: int  # depthwise channel multiplier (V1's depth_multiplier)
    act: str
    se: SqueezeExcite | None
    pw_act: bool
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(ctx: Context, row: DepthwiseSeparableRow, stride: int, size) -> Params:
    out_c = ctx.scale(row.c, stage=True)
    mid_c = ctx.in_c * ctx.spec.depth_multiplier
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(
        in_c=ctx.in_c,
        out_c=out_c,
        dw=base.spatial(ctx, row.k, stride, row.dilation, size),
        multiplier=ctx.spec.depth_multiplier,
        act=row.act,
        se=base.squeeze(ctx, row.se, mid_c, row.se_ratio),
        pw_act=row.pw_act,
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    x = base.conv_bn_act(
        graph,
        x,
        f"{name}.dw",
        out_c=p.in_c * p.multiplier,
        conv=p.dw,
        act=p.act,
        bn=ctx.bn(),
        depthwise=True,
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

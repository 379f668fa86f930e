"""fused inverted residual (EdgeTPU, EfficientNetV2 FusedMBConv): a k x k full
convolution expands (+BN+act) in place of 1x1 expand + depthwise, [squeeze-excite],
then a 1x1 linear projection; when the expansion keeps the width (t = 1) it is a
single k x k conv-bn-act, as torchvision's FusedMBConv."""

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
    Positive,
    Repeats,
    RowModel,
    SeRatio,
    one_expansion,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial, SqueezeExcite


class FusedInvertedResidualRow(RowModel):
    """Fused inverted residual (EdgeTPU, EfficientNetV2): a k x k full conv expands
    (instead of 1x1 + depthwise), [squeeze-excite], then a 1x1 linear projection;
    one k x k conv when the expansion keeps the width (t = 1)."""

    block: Literal["fused_inverted_residual"]
    """The row's block type; default: the spec's top-level `block`."""
    t: Positive | None = None
    """Expansion ratio of the k×k expanding convolution; give `t` or `exp`."""
    exp: Channels | None = None
    """Expanded width in channels instead of a ratio; give `t` or `exp`."""
    c: Channels
    """Output channels (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: StrideField = 1
    """Stride of the row's first block: 1 or 2."""
    k: Kernel = 3
    """Kernel size of the full k×k expanding convolution (odd, 1–11)."""
    act: Activation = "relu6"
    """Activation after the expanding convolution; the projection is linear."""
    se: bool = False
    """Squeeze-excite after the k x k convolution (timm's `er` rows with `se`); how
    it is built is the spec's `squeeze_excite`."""
    se_ratio: SeRatio = 0.25
    """Squeeze width as this ratio of the width `squeeze_excite.width_from` names
    (0–1)."""
    se_c: Channels | None = None
    """Squeeze width in channels, instead of `se_ratio` (not width-scaled nor rounded:
    timm's pruned models give every block's)."""
    dilation: Dilation = 1
    """Dilation of the spatial convolution (1–16; needs `s: 1`)."""
    residual: bool = True
    """The shortcut (add the input) where stride 1 and widths allow; `false` drops
    it."""
    expand: bool | None = None
    """Whether the k×k expansion and its 1×1 projection exist (else one k×k
    conv-bn-act to `c`); none: when the width changes (the timm profile: always)."""
    group_size: GroupSize | None = None
    """Channels per group of the k×k convolution, counted on its output (timm's
    EdgeResidual); none: one group."""

    @model_validator(mode="after")
    def _expansion(self) -> FusedInvertedResidualRow:
        one_expansion(self)
        return self


@dataclass(frozen=True)
class Params:
    in_c: int
    exp_c: int
    out_c: int
    expand: bool  # False: one k x k conv-bn-act straight to out_c, no projection
    conv: Spatial
    groups: int  # of the k x k conv: its output width / group_size (timm's count)
    act: str
    se: SqueezeExcite | None  # on the k x k conv's output
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(ctx: Context, row: FusedInvertedResidualRow, stride: int, size) -> Params:
    exp_c = base.expanded(ctx, row.t, row.exp)
    out_c = ctx.stage_width(row.c)
    expand_conv = row.expand
    if expand_conv is None:
        expand_conv = ctx.conv.expand_conv == "always" or exp_c != ctx.in_c
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(
        in_c=ctx.in_c,
        exp_c=exp_c,
        out_c=out_c,
        expand=expand_conv,
        conv=base.spatial(ctx, row.k, stride, row.dilation, size),
        groups=base.groups(
            exp_c if expand_conv else out_c,
            base.group_size(ctx, row, None),
            ctx.block_name,
        ),
        act=row.act,
        se=(
            base.squeeze(ctx, row, exp_c, row.t)
            if expand_conv
            else base.squeeze(ctx, row, out_c)  # on the one conv's output
        ),
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    x = base.conv_bn_act(
        graph,
        x,
        f"{name}.expand" if p.expand else f"{name}.conv",
        out_c=p.exp_c if p.expand else p.out_c,
        conv=p.conv,
        act=p.act,
        bn=ctx.bn(),
        groups=p.groups,
    )
    if p.se is not None:
        x = base.squeeze_excite(graph, x, f"{name}.se", p.se)
    if p.expand:
        x = base.pointwise(graph, x, f"{name}.project", p.out_c, None, ctx.bn())
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="fused_inverted_residual",
    row=FusedInvertedResidualRow,
    resolve=resolve,
    expand=expand,
    template="fused_inverted_residual",
    class_name="FusedInvertedResidual",
    colour="#f4b6a6",
)

"""inverted residual (MobileNet V2): [1x1 expand] -> depthwise k x k -> [squeeze-
excite] -> 1x1 linear projection [+ input].

V2 rows give the expansion as a ratio `t` of the input (or an absolute `exp`). The
parameters, the ops and the generated helper are shared with V3's bneck rows
(bneck.py), which write the same block as the V3 paper's table does.
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
    Kernels,
    Positive,
    Repeats,
    RowModel,
    SeRatio,
    check,
    one_expansion,
)
from ...frontend.fields import Stride as StrideField
from ..graph import Graph
from ..layers.mixed_conv import Mixed
from . import base
from .base import BlockType, Context, Spatial, SqueezeExcite


class InvertedResidualRow(RowModel):
    """MobileNet V2 row (t, c, n, s): expansion ratio, out channels, repeats, stride.

    Options: `exp` (absolute expanded channels instead of `t`), squeeze-excite
    (`se`, with `se_ratio` or absolute `se_c` channels), `dilation`, `residual: false` to drop the shortcut, and
    `expand: true|false` to say whether the 1x1 expansion exists (FBNet's t = 1
    blocks keep one; by default the conventions decide). A list of kernels makes a
    conv a mixed one (MixNet's MixConv): `k: [3, 5, 7]` for the depthwise conv,
    `expand_k: [1, 1]` and `project_k: [1, 1]` for the 1x1 expansion and
    projection split into two groups (timm's `k3.5.7`, `a1.1`, `p1.1`).
    """

    block: Literal["inverted_residual"]
    """The row's block type; default: the spec's top-level `block`."""
    t: Positive | None = None
    """Expansion ratio: the expanded width is t × the input width, rounded by the
    conventions' `expansion_rounding`. Give `t` or `exp`."""
    exp: Channels | None = None
    """Expanded width in channels instead of a ratio, scaled by width as the
    conventions' `expanded_size` says. Give `t` or `exp`."""
    c: Channels
    """Output channels (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: StrideField = 1
    """Stride of the row's first block: 1 or 2."""
    k: Kernels = 3
    """Kernel size of the depthwise convolution (odd, 1–11), or a list of 2–8 of
    them: a mixed depthwise convolution (MixConv), its channels split into as many
    groups (equal shares, the first taking the remainder: timm's rule), each
    convolved with its own kernel (MixNet's `[3, 5, 7]`, timm's `k3.5.7`)."""
    expand_k: Kernels = 1
    """1, or a list of kernels: the 1×1 expansion split into as many groups, each
    its own convolution (a mixed conv; MixNet's `[1, 1]`, timm's `a1.1`)."""
    project_k: Kernels = 1
    """1, or a list of kernels: the 1×1 projection split into as many groups (a
    mixed conv; MixNet's `[1, 1]`, timm's `p1.1`)."""
    act: Activation = "relu6"
    """Activation after the expansion and the depthwise convolution; the projection
    is linear."""
    se: bool = False
    """Squeeze-excite after the depthwise convolution; how it is built is the spec's
    `squeeze_excite`."""
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
    """Whether the 1×1 expansion exists, whatever `t` is (FBNet's `t: 1` blocks keep
    one); none: the conventions' `expand_conv` decides."""
    group_size: GroupSize | None = None
    """Channels per group of the depthwise convolution; none: 1 (depthwise)."""

    @model_validator(mode="after")
    def _expansion(self) -> InvertedResidualRow:
        one_expansion(self)
        for field in ("expand_k", "project_k"):
            check(
                getattr(self, field) == 1 or isinstance(getattr(self, field), list),
                f"{field}: the expansion and projection are 1x1 convs, or mixed ones "
                "(a list of kernels, e.g. [1, 1])",
            )
        return self


@dataclass(frozen=True)
class Params:
    in_c: int
    exp_c: int  # the depthwise conv's width: the expanded width, or in_c without one
    out_c: int
    expand: bool  # a 1x1 expand conv exists (see Conventions.expand_conv)
    dw: Spatial | Mixed
    group_size: int  # channels per group of the k x k conv: 1 is depthwise
    act: str
    se: SqueezeExcite | None
    residual: bool
    drop_path: float  # stochastic depth of the residual branch
    # The expansion's and the projection's kernels: 1x1 (base.POINTWISE), or mixed
    expand_conv: Spatial | Mixed = base.POINTWISE
    project_conv: Spatial | Mixed = base.POINTWISE


def resolve(ctx: Context, row: InvertedResidualRow, stride: int, size) -> Params:
    exp_c = base.expanded(ctx, row.t, row.exp)
    # torchvision tests the ratio, not the rounded width: `expand_ratio != 1`
    changes_width = row.t != 1 if row.t is not None else exp_c != ctx.in_c
    return resolve_expanded(ctx, row, stride, size, exp_c, changes_width)


def resolve_expanded(
    ctx: Context, row, stride: int, size, exp_c: int, changes_width: bool
) -> Params:
    """Parameters of an inverted residual (or bneck) row whose expansion is known."""
    out_c = ctx.stage_width(row.c)
    expand_conv = row.expand
    if expand_conv is None:
        expand_conv = base.needs_expand(ctx, changes_width)
    if not expand_conv:
        exp_c = ctx.in_c  # no layer changes the width: the depthwise sees the input
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)

    def kernels(field: str) -> int | tuple[int, ...]:
        kernel = getattr(row, field, 1)  # V3's bneck rows have no expand_k
        return kernel if isinstance(kernel, int) else tuple(kernel)

    return Params(
        in_c=ctx.in_c,
        exp_c=exp_c,
        out_c=out_c,
        expand=expand_conv,
        dw=base.spatial(ctx, kernels("k"), stride, row.dilation, size),
        group_size=base.group_size(ctx, row, 1),
        act=row.act,
        se=base.squeeze(ctx, row, exp_c, getattr(row, "t", None)),
        residual=residual,
        drop_path=drop_path,
        expand_conv=base.stride_one(kernels("expand_k")),
        project_conv=base.stride_one(kernels("project_k")),
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    if p.expand:
        x = base.conv_bn_act(
            graph,
            x,
            f"{name}.expand",
            out_c=p.exp_c,
            conv=p.expand_conv,
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
    )
    if p.se is not None:
        x = base.squeeze_excite(graph, x, f"{name}.se", p.se)
    x = base.conv_bn_act(
        graph,
        x,
        f"{name}.project",
        out_c=p.out_c,
        conv=p.project_conv,
        act=None,
        bn=ctx.bn(),
    )
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="inverted_residual",
    row=InvertedResidualRow,
    resolve=resolve,
    expand=expand,
    template="inverted_residual",
    class_name="InvertedResidual",
    colour="#f7d08a",
)

"""bneck (MobileNet V3 bottleneck): an inverted residual with an absolute expanded
size, a per-row kernel and activation, and an optional squeeze-excite."""

from __future__ import annotations

from ..spec import BneckRow
from . import inverted_residual, options
from .common import Context, padding

NAME = "bneck"


def resolve(ctx: Context, row: BneckRow, stride: int, size) -> dict:
    exp_c = options.expanded(ctx, None, row.exp)
    out_c = ctx.scale(row.c, stage=True)
    conv_stride, dilation = options.atrous(ctx, stride, row.dilation)
    expand_conv = inverted_residual.needs_expand(ctx, exp_c != ctx.in_c)
    if not expand_conv:
        exp_c = (
            ctx.in_c
        )  # no layer changes the width: the depthwise conv sees the input
    return {
        "in_c": ctx.in_c,
        "exp_c": exp_c,
        "out_c": out_c,
        "kernel": row.k,
        "stride": conv_stride,
        "dilation": dilation,
        "pad": padding(ctx.conv.stride2_padding, row.k, conv_stride, dilation, size),
        "act": row.act,
        "se_c": options.squeeze(ctx, row.se, exp_c, row.se_ratio),
        "expand": expand_conv,
        "residual": options.residual(row, stride, ctx.in_c, out_c),
    }


expand = inverted_residual.expand

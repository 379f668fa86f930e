"""bneck (MobileNet V3 bottleneck): an inverted residual with an absolute expanded
size, a per-row kernel and activation, and an optional squeeze-excite."""

from __future__ import annotations

from ..spec import BneckRow
from . import inverted_residual
from .common import Context, padding

NAME = "bneck"
SE_RATIO = 0.25


def resolve(ctx: Context, row: BneckRow, stride: int, size) -> dict:
    if ctx.conv.expanded_size == "ratio":
        # keras.applications: the table's exp/in as a ratio of the actual input.
        exp_c = ctx.divisible(ctx.in_c * (row.exp / ctx.in_raw))
    else:
        exp_c = ctx.scale(row.exp)
    out_c = ctx.scale(row.c)
    se_c = 0
    if row.se:
        squeeze = exp_c * SE_RATIO
        se_c = ctx.divisible(
            int(squeeze) if ctx.conv.se_rounding == "floor" else squeeze
        )
    return {
        "in_c": ctx.in_c,
        "exp_c": exp_c,
        "out_c": out_c,
        "kernel": row.k,
        "stride": stride,
        "dilation": 1,
        "pad": padding(ctx.conv.stride2_padding, row.k, stride, 1, size),
        "act": row.act,
        "se_c": se_c,
        "expand": inverted_residual.needs_expand(ctx, exp_c),
        "residual": stride == 1 and ctx.in_c == out_c,
    }


expand = inverted_residual.expand

"""Per-row options that several block types share: expansion given as a ratio or a
size, squeeze-excite width, dilation (per row and from `output_stride`), and the
residual rule."""

from __future__ import annotations

from ..channels import expand_ratio
from .common import Context


def expanded(ctx: Context, t: float | None, exp: int | None) -> int:
    """Expanded channels of a row that gives a ratio `t` or an absolute size `exp`."""
    if t is not None:
        return expand_ratio(ctx.in_c, t, ctx.conv.expansion_rounding)
    if ctx.conv.expanded_size == "ratio":
        # keras.applications: the table's exp/in as a ratio of the actual input.
        return ctx.divisible(ctx.in_c * (exp / ctx.in_raw))
    return ctx.scale(exp, stage=True)


def squeeze(ctx: Context, se: bool, exp_c: int, ratio: float) -> int:
    """Squeeze-excite channels (0 = no SE), rounded by the spec's conventions."""
    if not se:
        return 0
    value = exp_c * ratio
    return ctx.divisible(int(value) if ctx.conv.se_rounding == "floor" else value)


def atrous(ctx: Context, stride: int, dilation: int) -> tuple[int, int]:
    """(stride, dilation) of a block's spatial convolution.

    Once the network has reached its `output_stride`, strides become 1 and dilation
    grows instead — from the block that would have strided on, as torchvision's
    dilated MobileNetV3 does (see `Context.rate`).
    """
    if ctx.rate > 1:
        return 1, dilation * ctx.rate
    return stride, dilation


def residual(row, stride: int, in_c: int, out_c: int) -> bool:
    """The shortcut exists at the table's stride 1 with equal widths (torchvision
    tests the nominal stride, so a block dilated by output_stride stays without
    one), unless the row says `residual: false`."""
    return getattr(row, "residual", True) and stride == 1 and in_c == out_c

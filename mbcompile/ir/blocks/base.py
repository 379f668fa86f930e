"""What every block module shares: the descriptor a module registers, the expansion
context, typed pieces of parameters (a spatial convolution, a squeeze-excite), the
rules several block types apply (expansion, squeeze width, dilation, the residual),
and the op sequences they contain (conv + BN + activation, squeeze-excite).

A block module decides everything about its block in `resolve` and records it in
its parameters; `expand` and the backends' templates only read those decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ...frontend.conventions import Conventions
from ...frontend.fields import RowModel
from ..channels import expand_ratio, make_divisible, scale_width
from ..graph import Graph, conv_out

# ----------------------------------------------------------------- the descriptor


@dataclass(frozen=True)
class BlockType:
    """Everything about one block type, registered in `mbcompile.ir.blocks`.

    Several row types may share one `template` (and so one generated helper): V3's
    bneck rows are inverted residuals written as the V3 paper's table does.
    """

    name: str  # the rows' `block:` value and the report's "type"
    row: type[RowModel] | None  # its stage-table rows (None: not a row type)
    resolve: Callable[..., Any] | None  # (ctx, row, stride, size) -> parameters
    expand: Callable[..., str]  # (graph, x, parameters, name, ctx) -> output node
    template: str  # templates/<backend>/blocks/<template>.py.j2
    class_name: str  # the generated PyTorch class
    colour: str  # fill colour in diagrams and plots
    # Shared helpers its generated code calls besides its own, by name; a backend
    # emits those it knows once for the network (see HELPERS).
    helpers: frozenset[str] = frozenset()
    # The PyTorch class in torchvision's layout once batch norm is folded, where its
    # name says "BN" (conv_bn_act: ConvAct); None: class_name in every form.
    folded_class_name: str | None = None
    # Its Keras helper takes the names of its layers from each call (`names=(conv,
    # bn)`), as the stem and the head's conv call it, instead of naming them after
    # its block id.
    named_by_call: bool = False


# The shared helpers a block type may ask for (`BlockType.helpers`), and what each
# backend emits for them.
HELPERS = {
    "timm_layers": "PyTorch: timm's conv2d, norm_act and BatchNormAct, in any layout",
    "conv_norm_act": "PyTorch, timm's layout: its ConvNormAct (attributes conv, bn)",
    "attention_init": "PyTorch: attention projections initialised xavier-uniform",
    "keras_ops": "Keras: `from keras import ops`, for what no layer computes",
}


# ----------------------------------------------------------------- the context


@dataclass
class Context:
    """Read-only facts about the network plus the running input of the next block."""

    spec: Any  # the validated Spec
    conv: Conventions
    in_c: int  # channels entering the next block (after width scaling)
    in_raw: int  # the same, as the paper's table gives it (before width scaling)
    first_block: bool = True  # no stage-table block emitted yet
    # Dilation that replaces stride once the network reached `spec.output_stride`.
    rate: int = 1
    block_index: int = 0  # of the next stage-table block, from 0
    blocks_total: int = 1  # stage-table blocks in all

    @property
    def drop_path(self) -> float:
        """Stochastic depth of the next block's residual branch: rising linearly
        from 0 with the block's index (timm's `drop_path_rate * index / total`)."""
        return self.spec.drop_path_rate * self.block_index / self.blocks_total

    @property
    def width(self) -> float:
        return self.spec.width_multiplier

    def scale(self, channels: int, stage: bool = False) -> int:
        """Width-scaled channels; `stage` for outputs of stage-table rows."""
        rounding = self.conv.width_rounding
        truncate = rounding == "truncate" or (stage and rounding == "truncate_stages")
        return scale_width(channels, self.width, self.spec.channel_divisor, truncate)

    def divisible(self, value: float) -> int:
        return make_divisible(value, self.spec.channel_divisor)

    def bn(self, foldable: bool = True) -> dict | None:
        """Attributes of a batch norm, or None where it is folded into the conv
        before it (`fold_batch_norm`). A batch norm that does not follow a conv
        (a pre-norm) is not foldable and stays."""
        if foldable and self.spec.fold_batch_norm:
            return None
        return {
            "eps": self.conv.bn_epsilon,
            "momentum": self.conv.bn_momentum,
            "foldable": foldable,
        }


# ------------------------------------------------------------ typed parameters


@dataclass(frozen=True)
class Spatial:
    """One k x k convolution: kernel, the stride it applies, its dilation and its
    explicit (top, bottom, left, right) padding."""

    kernel: int
    stride: int
    dilation: int
    pad: tuple[int, int, int, int]

    @property
    def centred(self) -> bool:
        """Padded as the frameworks pad by themselves: (k - 1) // 2 * d each side."""
        same = self.dilation * (self.kernel - 1) // 2
        return self.pad == (same, same, same, same)


@dataclass(frozen=True)
class SqueezeExcite:
    """x * gate(fc2(act(fc1(avgpool(x))))), with `squeeze_c` channels inside."""

    squeeze_c: int
    act: str = "relu"
    gate: str = "hardsigmoid"


def spatial_convs(params: Any) -> dict[str, Spatial]:
    """The k x k convolutions among a block's parameters, by field, in order."""
    return {
        f.name: value
        for f in fields(params)
        if isinstance(value := getattr(params, f.name), Spatial)
    }


# ------------------------------------------------------ rules shared by block types


def padding(
    rule: str, kernel: int, stride: int, dilation: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Explicit (top, bottom, left, right) padding of a convolution.

    Stride 1 is always symmetric. At stride 2, `rule` picks between the frameworks'
    habits (see conventions.py): torchvision's symmetric pad, TensorFlow's SAME
    (computed from the actual input size) or keras' fixed V1 pad at the end.
    """
    span = dilation * (kernel - 1)  # effective kernel size minus one
    if stride == 1 or rule == "symmetric":
        p = span // 2
        return (p, p, p, p)
    if rule == "end":
        before, after = (span + 1) // 2 - 1, (span + 1) // 2
        return (before, after, before, after)
    pads = []
    for n in size:  # TensorFlow SAME
        out = -(-n // stride)
        total = max((out - 1) * stride + span + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return (pads[0], pads[1], pads[2], pads[3])


def spatial(
    ctx: Context, kernel: int, stride: int, dilation: int, size: tuple[int, int]
) -> Spatial:
    """A row's k x k convolution: `output_stride` turns its stride into dilation
    (see `atrous`), and the conventions' stride-2 padding rule pads it."""
    stride, dilation = atrous(ctx, stride, dilation)
    pad = padding(ctx.conv.stride2_padding, kernel, stride, dilation, size)
    return Spatial(kernel, stride, dilation, pad)


def output_size(conv: Spatial, size: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a convolution produces from `size`."""
    top, bottom, left, right = conv.pad
    k, s, d = conv.kernel, conv.stride, conv.dilation
    return (
        conv_out(size[0], k, s, d, top + bottom),
        conv_out(size[1], k, s, d, left + right),
    )


def atrous(ctx: Context, stride: int, dilation: int) -> tuple[int, int]:
    """(stride, dilation) of a block's spatial convolution.

    Once the network has reached its `output_stride`, strides become 1 and dilation
    grows instead — from the block that would have strided on, as torchvision's
    dilated MobileNetV3 does (see `Context.rate`).
    """
    if ctx.rate > 1:
        return 1, dilation * ctx.rate
    return stride, dilation


def expanded(ctx: Context, t: float | None, exp: int | None) -> int:
    """Expanded channels of a row that gives a ratio `t` or an absolute size `exp`."""
    if t is not None:
        rounding, divisor = ctx.conv.expansion_rounding, ctx.spec.channel_divisor
        return expand_ratio(ctx.in_c, t, rounding, divisor)
    if ctx.conv.expanded_size == "ratio":
        # keras.applications: the table's exp/in as a ratio of the actual input.
        return ctx.divisible(ctx.in_c * (exp / ctx.in_raw))
    return ctx.scale(exp, stage=True)


def needs_expand(ctx: Context, changes_width: bool) -> bool:
    """Whether a block has a 1x1 expand conv (see `Conventions.expand_conv`)."""
    if ctx.conv.expand_conv == "except_first":
        return not ctx.first_block
    return ctx.conv.expand_conv == "always" or changes_width


def squeeze(
    ctx: Context, se: bool, exp_c: int, ratio: float, t: float | None = None
) -> SqueezeExcite | None:
    """Squeeze-excite on `exp_c` channels, as the spec's `squeeze_excite` builds it,
    its width rounded by the conventions.

    Its width is `ratio` of the expanded width, or of the block's input (timm's
    EfficientNet: ratio / t of the expanded width, so the input's for ratio rows).
    """
    if not se:
        return None
    settings = ctx.spec.squeeze_excite
    if settings.width_from == "input":
        value = (exp_c / t if t else ctx.in_c) * ratio
    else:
        value = exp_c * ratio
    rounding = ctx.conv.se_rounding
    if rounding == "round":
        width = max(1, round(value))
    else:
        width = ctx.divisible(int(value) if rounding == "floor" else value)
    return SqueezeExcite(width, act=settings.act, gate=settings.gate)


def shortcut(ctx: Context, row: Any, stride: int, out_c: int) -> tuple[bool, float]:
    """(residual, drop_path) of a block: whether it adds its input, and the
    stochastic depth of the branch it adds to (none without a shortcut).

    The shortcut exists at the table's stride 1 with equal widths (torchvision
    tests the nominal stride, so a block dilated by output_stride stays without
    one), unless the row says `residual: false`."""
    residual = getattr(row, "residual", True) and stride == 1 and ctx.in_c == out_c
    return residual, ctx.drop_path if residual else 0.0


# ------------------------------------------------------------------ op sequences


def conv_bn_act(
    graph: Graph,
    x: str,
    name: str,
    *,
    out_c: int,
    conv: Spatial,
    act: str | None,
    bn: dict | None,
    depthwise: bool = False,
    multiplier: int = 1,
) -> str:
    """[pad] -> conv or depthwise conv (no bias) -> batch norm -> [activation].

    With `bn` None (folded for inference) the conv has a bias and no batch norm."""
    in_c = graph.shape(x)[0]
    if not is_symmetric(conv.pad):
        x = graph.add("pad", [x], f"{name}.pad", pad=conv.pad)
        pads = (0, 0)
    else:
        pads = (conv.pad[0], conv.pad[0])
    common = {
        "kernel": conv.kernel,
        "stride": conv.stride,
        "dilation": conv.dilation,
        "padding": pads,
        "bias": bn is None,
    }
    if depthwise:
        x = graph.add(
            "dwconv",
            [x],
            f"{name}.conv",
            channels=in_c,
            multiplier=multiplier,
            **common,
        )
    else:
        x = graph.add(
            "conv", [x], f"{name}.conv", in_c=in_c, out_c=out_c, groups=1, **common
        )
    if bn is not None:
        x = graph.add("bn", [x], f"{name}.bn", channels=graph.shape(x)[0], **bn)
    if act is not None:
        x = graph.add("act", [x], f"{name}.act", fn=act)
    return x


POINTWISE = Spatial(kernel=1, stride=1, dilation=1, pad=(0, 0, 0, 0))


def pointwise(
    graph: Graph, x: str, name: str, out_c: int, act: str | None, bn: dict | None
) -> str:
    """A 1x1 conv-bn[-act]: the expand and projection layers of the block types."""
    return conv_bn_act(graph, x, name, out_c=out_c, conv=POINTWISE, act=act, bn=bn)


def residual_add(
    graph: Graph, shortcut: str, x: str, name: str, drop_path: float
) -> str:
    """shortcut + x, the branch `x` dropped per sample in training at `drop_path`."""
    if drop_path:
        x = graph.add("drop_path", [x], f"{name}.drop_path", rate=drop_path)
    return graph.add("add", [shortcut, x], f"{name}.add")


def layer_scale(graph: Graph, x: str, name: str, init: float) -> str:
    """x * gamma per channel, gamma learned from `init` (MobileNetV4, ConvNeXt)."""
    channels = graph.shape(x)[0]
    return graph.add("scale", [x], f"{name}.layer_scale", channels=channels, init=init)


def is_symmetric(pad: tuple[int, int, int, int]) -> bool:
    return pad[0] == pad[1] == pad[2] == pad[3]


def squeeze_excite(graph: Graph, x: str, name: str, se: SqueezeExcite) -> str:
    """x * gate(fc2(act(fc1(avgpool(x))))), the MobileNet V3 SE module."""
    channels = graph.shape(x)[0]
    s = graph.add("pool", [x], f"{name}.pool", mode="avg", keepdims=True)
    fc = {
        "kernel": 1,
        "stride": 1,
        "dilation": 1,
        "padding": (0, 0),
        "groups": 1,
        "bias": True,
    }
    s = graph.add("conv", [s], f"{name}.fc1", in_c=channels, out_c=se.squeeze_c, **fc)
    s = graph.add("act", [s], f"{name}.relu", fn=se.act)
    s = graph.add("conv", [s], f"{name}.fc2", in_c=se.squeeze_c, out_c=channels, **fc)
    s = graph.add("act", [s], f"{name}.gate", fn=se.gate)
    return graph.add("mul", [x, s], f"{name}.mul")

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
from ...frontend.fields import BLOCK_ACTIVATION, RowModel
from ..channels import expand_ratio, make_divisible, scale_width
from ..graph import Graph, IRError, conv_out
from ..layers import ANTI_ALIASING, SQUEEZE_EXCITE_UNITS, mixed_conv
from ..layers.base import FC, Spatial, SqueezeExcite, padded
from ..layers.mixed_conv import Mixed
from ..norms import NORM_TYPES, Norm

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
    # The norms (spec `norm:` types) it can be built with; None: every norm.
    norms: tuple[str, ...] | None = None


# The shared helpers a block type may ask for (`BlockType.helpers`), and what each
# backend emits for them.
HELPERS = {
    "timm_layers": "PyTorch: timm's conv2d, norm_act and BatchNormAct, in any layout",
    "conv_norm_act": "PyTorch, timm's layout: its ConvNormAct (attributes conv, bn)",
    "norm_layer": "PyTorch: norm_layer(channels), the network's norm where no conv "
    "precedes it (never folded; timm's norm_layer)",
    "attention_init": "PyTorch: attention projections initialised xavier-uniform",
    "cond_conv_init": "PyTorch: CondConv routing layers initialised as timm's",
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
    # Inside a space-to-depth region (see expand.py): from a row with `s2d` to the
    # next strided block, blocks are 4x as wide as their rows say.
    space_to_depth: bool = False

    @property
    def drop_path(self) -> float:
        """Stochastic depth of the next block's residual branch: rising linearly
        from 0 with the block's index (timm's `drop_path_rate * index / total`)."""
        return self.spec.drop_path_rate * self.block_index / self.blocks_total

    @property
    def block_name(self) -> str:
        """The next stage-table block's name in the graph (`features.<index>`)."""
        return f"features.{self.block_index + 1}"

    @property
    def width(self) -> float:
        return self.spec.width_multiplier

    def scale(self, channels: int, stage: bool = False) -> int:
        """Width-scaled channels; `stage` for outputs of stage-table rows."""
        rounding = self.conv.width_rounding
        truncate = rounding == "truncate" or (stage and rounding == "truncate_stages")
        spec = self.spec
        return scale_width(
            channels, self.width, spec.channel_divisor, truncate, spec.round_limit
        )

    def stage_width(self, channels: int) -> int:
        """The output width of a stage-table block whose row gives `channels`:
        width-scaled, and 4x inside a space-to-depth region (timm's rule)."""
        return self.scale(channels, stage=True) * (4 if self.space_to_depth else 1)

    def divisible(self, value: float) -> int:
        spec = self.spec
        return make_divisible(value, spec.channel_divisor, None, spec.round_limit)

    def bn(self, foldable: bool = True) -> Norm | None:
        """The network's norm (batch norm unless the spec's `norm` says otherwise;
        timm calls every one `bn`), or None where a batch norm is folded into the
        conv before it (`fold_batch_norm`, which only batch norm allows). A norm
        that does not follow a conv (a pre-norm) is not foldable and stays."""
        if foldable and self.spec.fold_batch_norm:
            return None
        norm = self.spec.norm
        return Norm(NORM_TYPES[norm.type], norm, self.conv, foldable)


# ------------------------------------------------------------ typed parameters


def spatial_convs(params: Any) -> dict[str, Spatial | Mixed]:
    """The k x k convolutions among a block's parameters (mixed ones included), by
    field, in order."""
    return {
        f.name: value
        for f in fields(params)
        if isinstance(value := getattr(params, f.name), Spatial | Mixed)
    }


# ------------------------------------------------------ rules shared by block types


def padding(
    rule: str, kernel: int, stride: int, dilation: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Explicit (top, bottom, left, right) padding of a convolution.

    Stride 1 is symmetric where it can be (an odd effective kernel). At stride 2
    (or for an even kernel), `rule` picks between the frameworks' habits (see
    conventions.py): torchvision's symmetric pad, TensorFlow's SAME (computed from
    the actual input size) or keras' fixed V1 pad at the end.
    """
    span = dilation * (kernel - 1)  # effective kernel size minus one
    if (stride == 1 and span % 2 == 0) or rule == "symmetric":
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
    ctx: Context,
    kernel: int | tuple[int, ...],
    stride: int,
    dilation: int,
    size: tuple[int, int],
    rule: str | None = None,
) -> Spatial | Mixed:
    """A row's k x k convolution (a mixed one for several kernels): `output_stride`
    turns its stride into dilation (see `atrous`), the spec's `anti_aliasing`
    into stride 1 and a pooling after it (timm's `aa_layer`), and the
    conventions' stride-2 padding rule (or `rule`) pads it."""
    stride, dilation = atrous(ctx, stride, dilation)
    pool = ctx.spec.anti_aliasing if stride > 1 else None
    if pool is not None:
        stride = 1
    rule = rule or ctx.conv.stride2_padding

    def one(k: int, pool: str | None) -> Spatial:
        pad = padding(rule, k, stride, dilation, size)
        return Spatial(k, stride, dilation, pad, pool)

    if isinstance(kernel, int):
        return one(kernel, pool)
    return Mixed(tuple(one(k, None) for k in kernel), pool)


def stride_one(kernel: int | tuple[int, ...]) -> Spatial | Mixed:
    """A convolution of stride 1 that neither `output_stride` nor anti-aliasing
    touches (a block's expansion or projection): 1x1, k x k, or mixed, padded
    (k - 1) // 2 on each side."""

    def one(k: int) -> Spatial:
        return Spatial(k, 1, 1, padding("symmetric", k, 1, 1, (k, k)))

    return one(kernel) if isinstance(kernel, int) else Mixed(tuple(map(one, kernel)))


def output_size(conv: Spatial | Mixed, size: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a convolution (and its anti-aliasing pooling, if any)
    produces from `size`."""
    first = conv.convs[0] if isinstance(conv, Mixed) else conv
    top, bottom, left, right = first.pad
    k, s, d = first.kernel, first.stride, first.dilation
    out = (
        conv_out(size[0], k, s, d, top + bottom),
        conv_out(size[1], k, s, d, left + right),
    )
    return ANTI_ALIASING[conv.pool].output_size(out) if conv.pool else out


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
    ctx: Context, row: Any, exp_c: int, t: float | None = None
) -> SqueezeExcite | None:
    """The squeeze-excite a row asks for (`se`) on `exp_c` channels, as the spec's
    `squeeze_excite` builds it.

    Its width is the row's `se_c`, or its `se_ratio` of the expanded width or of
    the block's input (timm's EfficientNet: se_ratio / t of the expanded width, so
    the input's for ratio rows), rounded by the conventions (or by the attention
    unit built in its place, where it rounds its own way). Its activation is the
    spec's, or the row's own where the spec says `block`.
    """
    if not row.se:
        return None
    settings = ctx.spec.squeeze_excite
    act = row.act if settings.act == BLOCK_ACTIVATION else settings.act
    unit = settings.type if settings.type in SQUEEZE_EXCITE_UNITS else None
    se_c = getattr(row, "se_c", None)  # only some row types can give one
    if se_c is not None:
        return SqueezeExcite(se_c, act=act, gate=settings.gate, unit=unit)
    if settings.width_from == "input":
        value = (exp_c / t if t else ctx.in_c) * row.se_ratio
    else:
        value = exp_c * row.se_ratio
    rounding = ctx.conv.se_rounding
    if unit is not None and SQUEEZE_EXCITE_UNITS[unit].width is not None:
        width = SQUEEZE_EXCITE_UNITS[unit].width(value)  # the unit's own rounding
    elif rounding == "round":
        width = max(1, round(value))
    else:
        width = ctx.divisible(int(value) if rounding == "floor" else value)
    return SqueezeExcite(width, act=act, gate=settings.gate, unit=unit)


def group_size(ctx: Context, row: Any, default: int | None) -> int | None:
    """Channels per group of a row's grouped convolutions: its own `group_size`,
    else the spec's, else the block's `default` (1: depthwise; None: one group,
    a full convolution), as timm's decode_arch_def and block defaults decide."""
    own = getattr(row, "group_size", None)
    if own is not None:
        return own
    return ctx.spec.group_size if ctx.spec.group_size is not None else default


def groups(channels: int, size: int | None, name: str) -> int:
    """How many groups a convolution counting `channels` has in groups of `size`
    (timm's num_groups; None: one group)."""
    if size is None:
        return 1
    if channels % size:
        raise IRError(f"{name}: {channels} channels do not split into groups of {size}")
    return channels // size


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
    conv: Spatial | Mixed,
    act: str | None,
    bn: Norm | None,
    depthwise: bool = False,
    multiplier: int = 1,
    groups: int = 1,
    bias: bool | None = None,
) -> str:
    """[pad] -> conv (of `groups` groups) or depthwise conv (no bias; a mixed conv:
    one per channel group, concatenated) -> norm -> [activation] -> [anti-aliasing
    pooling].

    With `bn` None (folded for inference, or none at all) the conv has a bias and no
    norm, unless `bias` says otherwise."""
    bias = bn is None if bias is None else bias
    if isinstance(conv, Mixed):
        x = mixed_conv.add(
            graph,
            x,
            name,
            conv,
            out_c=out_c,
            depthwise=depthwise,
            single=lambda *args: _conv(*args, bias=bias),
        )
    else:
        x = _conv(
            graph, x, name, out_c, conv, depthwise, "", {}, multiplier, bias, groups
        )
    x = norm_act(graph, x, name, bn, act)
    if conv.pool is not None:
        x = ANTI_ALIASING[conv.pool].add(graph, x, f"{name}.aa")
    return x


def depthwise(
    graph: Graph,
    x: str,
    name: str,
    *,
    conv: Spatial | Mixed,
    act: str | None,
    bn: Norm | None,
    group_size: int,
    multiplier: int = 1,
) -> str:
    """A block's depthwise conv-norm-act, or with `group_size` other than 1 a
    grouped conv of that many channels per group (timm's `gs`)."""
    in_c = graph.shape(x)[0]
    return conv_bn_act(
        graph,
        x,
        name,
        out_c=in_c * multiplier,
        conv=conv,
        act=act,
        bn=bn,
        depthwise=group_size == 1,
        multiplier=multiplier,
        groups=groups(in_c, group_size, name),
    )


def norm_act(graph: Graph, x: str, name: str, bn: Norm | None, act: str | None) -> str:
    """[norm `<name>.bn`] -> [activation `<name>.act`]; a norm that activates
    (EvoNorm-S0) applies the activation itself, in its own way."""
    if bn is not None:
        x = graph.add_norm(bn, x, f"{name}.bn", activated=act is not None)
    if act is not None and not (bn is not None and bn.type.activates):
        x = graph.add("act", [x], f"{name}.act", fn=act)
    return x


def _conv(
    graph: Graph,
    x: str,
    name: str,
    out_c: int,
    conv: Spatial,
    depthwise: bool,
    suffix: str,
    mark: dict,
    multiplier: int = 1,
    bias: bool = False,
    groups: int = 1,
) -> str:
    """[pad `name`.pad`suffix`] -> conv or depthwise conv `name`.conv`suffix`, its
    attributes completed by `mark` (a mixed conv's group says which it is)."""
    in_c = graph.shape(x)[0]
    x, pads = padded(graph, x, f"{name}.pad{suffix}", conv.pad)
    common = {
        "kernel": conv.kernel,
        "stride": conv.stride,
        "dilation": conv.dilation,
        "padding": pads,
        "bias": bias,
        **mark,
    }
    if depthwise:
        return graph.add(
            "dwconv",
            [x],
            f"{name}.conv{suffix}",
            channels=in_c,
            multiplier=multiplier,
            **common,
        )
    return graph.add(
        "conv",
        [x],
        f"{name}.conv{suffix}",
        in_c=in_c,
        out_c=out_c,
        groups=groups,
        **common,
    )


POINTWISE = Spatial(kernel=1, stride=1, dilation=1, pad=(0, 0, 0, 0))


def pointwise(
    graph: Graph, x: str, name: str, out_c: int, act: str | None, bn: Norm | None
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


def squeeze_excite(graph: Graph, x: str, name: str, se: SqueezeExcite) -> str:
    """x * gate(fc2(act(fc1(avgpool(x))))), the MobileNet V3 SE module, or the
    attention unit built in its place (`se.unit`)."""
    if se.unit is not None:
        return SQUEEZE_EXCITE_UNITS[se.unit].excite(graph, x, name, se)
    channels = graph.shape(x)[0]
    s = graph.add("pool", [x], f"{name}.pool", mode="avg", keepdims=True)
    s = graph.add("conv", [s], f"{name}.fc1", in_c=channels, out_c=se.squeeze_c, **FC)
    s = graph.add("act", [s], f"{name}.relu", fn=se.act)
    s = graph.add("conv", [s], f"{name}.fc2", in_c=se.squeeze_c, out_c=channels, **FC)
    s = graph.add("act", [s], f"{name}.gate", fn=se.gate)
    return graph.add("mul", [x, s], f"{name}.mul")

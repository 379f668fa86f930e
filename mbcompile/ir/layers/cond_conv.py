"""CondConv (Yang et al., 2019, "CondConv: Conditionally Parameterized Convolutions
for Efficient Inference"; timm's CondConv2d): a convolution whose kernel differs per
sample, the mix sum_e r_e W_e of `experts` kernels weighted by a routing vector r
computed from the sample (timm's CondConvResidual: r = sigmoid(fc(avgpool(x))) of
the block's input, shared by its three convs).

In the IR a `condconv` op takes the feature map and the routing vector. Its weights
are timm's: one row per expert, each a flattened (out, in / groups, k, k) kernel.
Its MACs are the convolution's (one kernel per sample) plus mixing the kernel,
experts x kernel size, per sample. Both backends compute exactly that: PyTorch as
timm does (one grouped convolution over the batch), Keras by a Dense layer that
mixes each sample's kernel (its kernel is timm's weight, unchanged) and the
convolution with keras.ops (an einsum for 1x1 convolutions, k x k shifted,
strided slices for depthwise ones). Batch norm after it does not fold into it (the
fold would need a bias outside the mix, which timm's CondConv2d lacks): it is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LayerUnit, Spatial, padded

if TYPE_CHECKING:
    from ..graph import Graph


def routing(graph: Graph, x: str, name: str, experts: int) -> str:
    """r = sigmoid(fc(avgpool(x))): one weight per expert. The fc's weights are
    stored after the convolutions it routes (timm registers it last)."""
    channels = graph.shape(x)[0]
    r = graph.add("pool", [x], f"{name}.pool", mode="avg", keepdims=False)
    r = graph.add(
        "dense",
        [r],
        f"{name}.fc",
        in_f=channels,
        out_f=experts,
        bias=True,
        form="linear",
        stored_last=True,
    )
    return graph.add("act", [r], f"{name}.gate", fn="sigmoid")


def add(
    graph: Graph,
    x: str,
    r: str,
    name: str,
    *,
    out_c: int,
    conv: Spatial,
    depthwise: bool,
    experts: int,
) -> str:
    """[pad] -> the CondConv of `x` routed by `r` (no bias)."""
    in_c = graph.shape(x)[0]
    x, pads = padded(graph, x, f"{name}.pad", conv.pad)
    return graph.add(
        "condconv",
        [x, r],
        f"{name}.conv",
        in_c=in_c,
        out_c=out_c,
        kernel=conv.kernel,
        stride=conv.stride,
        dilation=conv.dilation,
        padding=pads,
        groups=in_c if depthwise else 1,
        experts=experts,
        bias=False,
        unit=UNIT.name,
    )


UNIT = LayerUnit(name="cond_conv", helpers=frozenset({"timm_layers", "keras_ops"}))

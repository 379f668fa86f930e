"""mobile attention (MobileNetV4's Mobile MQA): batch norm (a pre-norm, no
activation), multi-query attention — `heads` query heads sharing one key head and
one value head — and an output projection [x layer scale] [+ input].

Keys and values may be downsampled first (`kv_stride`: a k x k stride-2 depthwise
conv and batch norm each), queries too (`query_stride`: average pooling and batch
norm, the attended output upsampled bilinearly back). As timm's MobileAttention
with MultiQueryAttention2d: no bias in any projection, scores scaled by
key_dim^-1/2, query channels head-major.

In the IR the attention itself is one op with no weights (`attention`: queries x
keys, softmax, x values); every weight is an ordinary conv or batch norm around it,
so costs, weight layouts, porting and BN folding treat them as they treat any other.
The pre-norm and the query norm are not foldable (no conv before them): they stay
in the `--fold-bn` inference form; the key and value norms fold into their convs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from ...frontend.fields import Channels, Kernel, Positive, Repeats, RowModel
from ..graph import Graph
from . import base
from .base import BlockType, Context, Spatial

Width = Annotated[int, Field(ge=1, le=1024)]


class MobileAttentionRow(RowModel):
    """MobileNetV4 hybrid row: query heads, key (and value) width, the keys' and
    values' downsampling, out channels."""

    block: Literal["mobile_attention"]
    """The row's block type; default: the spec's top-level `block`."""
    heads: Annotated[int, Field(ge=1, le=64)]
    """Query heads (1–64), sharing one key head and one value head."""
    key_dim: Width
    """Width of the key head, and of the value head unless `value_dim` (1–1024)."""
    value_dim: Width | None = None
    """Width of the value head; none: `key_dim`."""
    kv_stride: Literal[1, 2] = 1
    """2: keys and values are downsampled first, by a k×k stride-2 depthwise
    convolution and batch norm each."""
    k: Kernel = 3
    """Kernel size of the keys' and values' depthwise downsampling."""
    query_stride: Literal[1, 2] = 1
    """2: queries are downsampled by 2×2 average pooling and batch norm, and the
    attended output upsampled bilinearly back."""
    c: Channels
    """Output channels of the output projection (before width_multiplier)."""
    n: Repeats = 1
    """How many blocks the row stands for; the first one strides, the others keep the
    size."""
    s: Literal[1] = 1
    """Stride: attention rows do not stride (1)."""
    layer_scale: Positive | None = None
    """Initial per-channel scale of the block's output (MobileNetV4 hybrids: 1e-5);
    none: no layer scale."""
    residual: bool = True
    """The shortcut (add the input) where stride 1 and widths allow; `false` drops
    it."""


@dataclass(frozen=True)
class Params:
    in_c: int
    out_c: int
    heads: int
    key_dim: int
    value_dim: int
    kv: Spatial | None  # the keys' and values' depthwise downsampling, if any
    query_stride: int
    layer_scale: float | None
    residual: bool
    drop_path: float  # stochastic depth of the residual branch


def resolve(ctx: Context, row: MobileAttentionRow, stride: int, size) -> Params:
    kv = None
    if row.kv_stride > 1:
        pad = base.padding(ctx.conv.stride2_padding, row.k, row.kv_stride, 1, size)
        kv = Spatial(row.k, row.kv_stride, 1, pad)
    out_c = ctx.stage_width(row.c)
    residual, drop_path = base.shortcut(ctx, row, stride, out_c)
    return Params(
        in_c=ctx.in_c,
        out_c=out_c,
        heads=row.heads,
        key_dim=row.key_dim,
        value_dim=row.value_dim or row.key_dim,
        kv=kv,
        query_stride=row.query_stride,
        layer_scale=row.layer_scale,
        residual=residual,
        drop_path=drop_path,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    shortcut = x
    x = graph.add_norm(ctx.bn(foldable=False), x, f"{name}.norm")

    def projection(x: str, part: str, out_c: int) -> str:
        return graph.add(
            "conv",
            [x],
            f"{name}.{part}.proj",
            in_c=graph.shape(x)[0],
            out_c=out_c,
            kernel=1,
            stride=1,
            dilation=1,
            padding=(0, 0),
            groups=1,
            bias=False,
        )

    def downsampled(part: str) -> str:
        if p.kv is None:
            return x
        return base.conv_bn_act(
            graph,
            x,
            f"{name}.{part}.down",
            out_c=p.in_c,
            conv=p.kv,
            act=None,
            bn=ctx.bn(),
            depthwise=True,
        )

    queries = x
    if p.query_stride > 1:
        queries = graph.add("avgpool", [x], f"{name}.query.pool", size=p.query_stride)
        queries = graph.add_norm(ctx.bn(foldable=False), queries, f"{name}.query.norm")
    queries = projection(queries, "query", p.heads * p.key_dim)
    keys = projection(downsampled("key"), "key", p.key_dim)
    values = projection(downsampled("value"), "value", p.value_dim)
    x = graph.add(
        "attention",
        [queries, keys, values],
        f"{name}.attention",
        heads=p.heads,
        key_dim=p.key_dim,
        value_dim=p.value_dim,
    )
    if p.query_stride > 1:
        x = graph.add("upsample", [x], f"{name}.upsample", factor=p.query_stride)
    x = projection(x, "output", p.out_c)
    if p.layer_scale is not None:
        x = base.layer_scale(graph, x, name, p.layer_scale)
    if p.residual:
        x = base.residual_add(graph, shortcut, x, name, p.drop_path)
    return x


BLOCK = BlockType(
    name="mobile_attention",
    row=MobileAttentionRow,
    resolve=resolve,
    expand=expand,
    template="mobile_attention",
    class_name="MobileAttention",
    colour="#f2a6c8",
    helpers=frozenset({"timm_layers", "attention_init", "keras_ops", "norm_layer"}),
    # timm builds the query, key and value norms from the bare norm layer (a
    # GroupNormAct there would bring its default ReLU): batch norm, or RMSNorm as
    # MobileNetV5 builds it (its bare RmsNorm2d has no activation).
    norms=("batch_norm", "rms_norm"),
)

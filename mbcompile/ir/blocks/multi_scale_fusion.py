"""multi-scale fusion (MobileNetV5's neck, timm's MobileNetV5MultiScaleFusionAdapter
and keras-hub's MobileNetV5MultiScaleFusionAdapter): the feature maps of chosen
stages, the smaller ones resized to the largest by nearest neighbour, concatenated
on channels -> a pointwise FFN (1x1 expansion, norm, activation; 1x1 projection,
norm; no shortcut: timm's UniversalInvertedResidual without depthwise convs) ->
average pooling to the output resolution (bilinear resizing where the ratio is not
whole) -> a norm.

Not a stage-table row: the spec's `msfa` section, placed after the stages (in
place of a head conv). Its inputs are the last blocks of the chosen items of
`stages`; everything about it — which blocks feed it, by what factor each is
enlarged, how the fused map reaches the output resolution — is decided in
`resolve` and read by the backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator

from ...errors import SpecError
from ...frontend.fields import Activation, Channels, Positive, Strict
from ..graph import Graph
from . import base
from .base import BlockType, Context


class MultiScaleFusionSpec(Strict):
    """The spec's `msfa` section."""

    # Items of `stages` whose outputs are fused (negative: from the end), largest
    # map first; timm's MobileNetV5: the last two.
    stages: Annotated[
        list[int], Field(default_factory=lambda: [-2, -1], min_length=1, max_length=16)
    ]
    c: Channels  # output channels
    t: Positive = 2.0  # the FFN's expansion, of the concatenated channels
    act: Activation = "gelu_tanh"
    resolution: Annotated[int, Field(ge=1, le=4096)]  # output height and width

    @field_validator("stages")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("stages must not repeat")
        return v


@dataclass(frozen=True)
class Params:
    sources: tuple[int, ...]  # block indices whose outputs are fused, in order
    # per source: the whole factor by which nearest resizing enlarges it (1: none)
    upsample: tuple[int, ...]
    in_c: int  # concatenated channels
    exp_c: int
    out_c: int
    act: str
    # How the fused map reaches the output resolution: an average pool of this
    # size (1: it is there already), or else bilinear resizing to `size`.
    pool: int
    size: tuple[int, int] | None


def resolve(
    ctx: Context,
    neck: MultiScaleFusionSpec,
    graph: Graph,
    ends: list[int],
    error: Callable[[tuple, str], SpecError],
) -> Params:
    """The neck's decisions, given the block index that ends each item of
    `stages` (`ends`); problems are `error(field path, message)`."""

    def fail(message: str) -> SpecError:
        return error(("msfa", "stages"), message)

    items = len(ends)
    for i in neck.stages:
        if not -items <= i < items:
            raise fail(f"no stage {i}: the table has {items} (0 to {items - 1})")
    stages = [i % items for i in neck.stages]
    if stages != sorted(stages) or len(set(stages)) != len(stages):
        raise fail("stages must be distinct and in order, the largest map first")
    if stages[-1] != items - 1:
        raise fail(
            f"the last stage ({items - 1}) must feed the neck: nothing else would "
            "use its output"
        )
    sources = tuple(ends[i] for i in stages)
    shapes = [graph.blocks[i].out_shape for i in sources]
    height, width = shapes[0][1:]
    upsample = []
    for stage, (_, h, w) in zip(stages, shapes, strict=True):
        factor = height // h
        if (h * factor, w * factor) != (height, width):
            raise fail(
                f"stage {stage}'s {h}x{w} map is not a whole factor smaller than "
                f"the first's {height}x{width}; nearest resizing needs one (choose a "
                "resolution divisible by the network's total stride)"
            )
        upsample.append(factor)
    in_c = sum(shape[0] for shape in shapes)
    out = neck.resolution
    if height % out == 0 and width % out == 0 and height // out == width // out:
        pool, size = height // out, None
    else:
        pool, size = 1, (out, out)
    return Params(
        sources=sources,
        upsample=tuple(upsample),
        in_c=in_c,
        exp_c=ctx.divisible(in_c * neck.t),
        out_c=neck.c,
        act=neck.act,
        pool=pool,
        size=size,
    )


def expand(graph: Graph, x: str, p: Params, name: str, ctx: Context) -> str:
    """`x` is unused: the neck reads the outputs of its source blocks."""
    scales = []
    for i, (source, factor) in enumerate(zip(p.sources, p.upsample, strict=True)):
        scale = graph.blocks[source].output
        if factor > 1:
            _, h, w = graph.shape(scale)
            size = (h * factor, w * factor)
            scale = graph.add(
                "resize", [scale], f"{name}.upsample{i}", size=size, mode="nearest"
            )
        scales.append(scale)
    x = graph.add("concat", scales, f"{name}.concat") if len(scales) > 1 else scales[0]
    x = base.pointwise(graph, x, f"{name}.ffn.expand", p.exp_c, p.act, ctx.bn())
    x = base.pointwise(graph, x, f"{name}.ffn.project", p.out_c, None, ctx.bn())
    if p.pool > 1:
        x = graph.add("avgpool", [x], f"{name}.pool", size=p.pool)
    elif p.size is not None:
        x = graph.add("resize", [x], f"{name}.resize", size=p.size, mode="bilinear")
    # after pooling or resizing: no conv to fold into
    return graph.add_norm(ctx.bn(foldable=False), x, f"{name}.norm")


BLOCK = BlockType(
    name="multi_scale_fusion",
    row=None,
    resolve=None,
    expand=expand,
    template="multi_scale_fusion",
    class_name="MultiScaleFusion",
    colour="#b3d9e6",
    helpers=frozenset({"timm_layers", "conv_norm_act", "norm_layer"}),
)

"""Expansion: a validated Spec becomes a graph IR, one block module per block type.

Adding a block type means one module here (`NAME`, `resolve`, `expand`), a row model
in spec.py, and one macro per backend template.
"""

from __future__ import annotations

from ..errors import SpecError
from ..ir import Graph, IRError
from ..spec import Spec
from . import (
    bneck,
    classifier,
    conv_bn_act,
    depthwise_separable,
    fused_inverted_residual,
    inverted_residual,
)
from .common import Context

BLOCKS = {
    m.NAME: m
    for m in (
        conv_bn_act,
        depthwise_separable,
        inverted_residual,
        bneck,
        classifier,
        fused_inverted_residual,
    )
}


def build_graph(spec: Spec, source: str = "<spec>") -> Graph:
    """Expand a spec into a validated graph IR; shape problems become SpecErrors."""
    try:
        graph = _expand(spec)
        if spec.features is not None:
            taps = feature_taps(spec, graph, source)
            last = max(taps.values())
            if last < len(graph.blocks) - 1:  # nothing after the last tap is built
                graph = _expand(spec, stop=last)
            graph.outputs = {name: graph.blocks[i].output for name, i in taps.items()}
        graph.validate()
    except IRError as exc:
        raise SpecError(
            f"the network does not fit together: {exc}", source=source
        ) from None
    return graph


def feature_taps(spec: Spec, graph: Graph, source: str) -> dict[str, int]:
    """Output name -> block index of each feature tap (0 = stem)."""
    strides, total = [], 1
    for block in graph.blocks:
        total *= block.params.get("stride", 1)
        strides.append(total)
    last_at = {s: i for i, s in enumerate(strides)}  # stride -> its last block
    if spec.features == "each_stride":
        return {f"stride{s}": i for s, i in sorted(last_at.items())}
    taps = {}
    for item in spec.features:
        if isinstance(item, int):
            if item >= len(graph.blocks):
                raise SpecError(
                    f"no block {item}; this network has blocks 0 (stem) to "
                    f"{len(graph.blocks) - 1}",
                    source=source,
                    field="features",
                )
            taps[f"block{item}"] = item
            continue
        stride = int(item.removeprefix("stride"))
        if stride not in last_at:
            raise SpecError(
                f"no block has total stride {stride}; strides here are "
                f"{', '.join(str(s) for s in sorted(last_at))}",
                source=source,
                field="features",
            )
        taps[item] = last_at[stride]
    return taps


def _expand(spec: Spec, stop: int | None = None) -> Graph:
    """The IR of `spec`; with `stop`, only its blocks up to that index."""
    conv = spec.resolved_conventions()
    graph = Graph()
    x = graph.add(
        "input", [], "input", shape=(spec.in_channels, spec.resolution, spec.resolution)
    )
    if conv.input_rescaling:
        x = graph.add("rescale", [x], "rescale", scale=1 / 127.5, offset=-1.0)
    ctx = Context(spec=spec, conv=conv, in_c=spec.in_channels, in_raw=spec.in_channels)

    def emit(module, params: dict, section: str, name: str, stage=None) -> None:
        nonlocal x
        if stop is not None and len(graph.blocks) > stop:
            return
        graph.begin_block(module.NAME, params, section, stage)
        x = module.expand(graph, x, params, name, ctx)
        graph.end_block(x)
        ctx.in_c = graph.shape(x)[0]

    def size() -> tuple[int, int]:
        return graph.shape(x)[1:]

    def head_width(c: int) -> int:
        keep = conv.head_width == "scaled_above_one" and spec.width_multiplier <= 1
        return c if keep else ctx.scale(c)

    features = 0  # index inside the `features` section

    stem = spec.stem
    stem_c = stem.c if conv.stem_width == "fixed" else ctx.scale(stem.c)
    params = conv_bn_act.resolve(
        ctx,
        out_c=stem_c,
        kernel=stem.k,
        stride=stem.s,
        act=stem.act,
        rule=conv.stem_padding,
        size=size(),
    )
    emit(conv_bn_act, params, "features", f"features.{features}")
    features += 1
    ctx.in_raw = stem.c
    total_stride = stem.s

    for stage_index, row in enumerate(spec.stages):
        module = BLOCKS[row.block]
        # conv_bn_act also serves stem and head, whose `resolve` takes keywords
        resolve = getattr(module, "resolve_row", module.resolve)
        for repeat in range(row.n):
            stride = row.s if repeat == 0 else 1
            if spec.output_stride and total_stride * stride > spec.output_stride:
                ctx.rate *= stride  # dilate instead of striding (see options.atrous)
            else:
                total_stride *= stride
            params = resolve(ctx, row, stride, size())
            emit(module, params, "features", f"features.{features}", stage=stage_index)
            features += 1
            ctx.first_block = False
        ctx.in_raw = row.c

    head = spec.head
    if head.conv is not None:
        if head.conv.c is not None:
            out_c = head_width(head.conv.c)
        elif conv.expanded_size == "ratio":
            out_c = ctx.divisible(ctx.in_c * head.conv.t)
        else:
            out_c = round(ctx.in_c * head.conv.t)
        params = conv_bn_act.resolve(
            ctx,
            out_c=out_c,
            kernel=1,
            stride=1,
            act=head.conv.act,
            rule="symmetric",
            size=size(),
        )
        emit(conv_bn_act, params, "features", f"features.{features}")
        features += 1

    if not spec.include_top:
        if spec.features is None and head.pool != "none":
            x = graph.add("pool", [x], "pool", mode=head.pool, keepdims=False)
        return graph

    hidden_c = head_width(head.hidden.c) if head.hidden else 0
    hidden_act = head.hidden.act if head.hidden else None
    emit(
        classifier,
        classifier.resolve(ctx, hidden_c, hidden_act, head.dropout),
        "classifier",
        "classifier",
    )
    return graph

"""Expansion: a validated spec becomes the graph IR — the network header, then the
stem, one block per stage-table repeat (each by its block module), the neck, the
head's convolution and the classifier, each block with its role and the spec path
it came from.
"""

from __future__ import annotations

from ..errors import SpecError
from ..frontend.load import LoadedSpec
from ..frontend.model import Spec
from .blocks import BLOCK_TYPES, classifier, conv_bn_act, multi_scale_fusion
from .blocks.base import POINTWISE, Context, Spatial, padding
from .graph import Graph, IRError, Network


def build_graph(loaded: LoadedSpec) -> Graph:
    """Expand a spec into a validated graph IR; shape problems become SpecErrors."""
    spec, source = loaded.spec, loaded.source
    try:
        graph = _expand(loaded)
        if spec.features is not None:
            taps = feature_taps(spec, graph, source)
            last = max(taps.values())
            if last < len(graph.blocks) - 1:  # nothing after the last tap is built
                graph = _expand(loaded, stop=last)
            graph.outputs = {name: graph.blocks[i].output for name, i in taps.items()}
        graph.validate()
    except IRError as exc:
        raise SpecError(
            f"the network does not fit together: {exc}", source=source
        ) from None
    return graph


def network(loaded: LoadedSpec) -> Network:
    spec = loaded.spec
    return Network(
        name=spec.name,
        family=spec.family,
        conventions=spec.resolved_conventions(),
        resolution=spec.resolution,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        width_multiplier=spec.width_multiplier,
        include_top=spec.include_top,
        pool=spec.head.pool,
        fold_batch_norm=spec.fold_batch_norm,
        norm=spec.norm,
        source=loaded.source,
        content_hash=loaded.content_hash,
    )


def feature_taps(spec: Spec, graph: Graph, source: str) -> dict[str, int]:
    """Output name -> block index of each feature tap (0 = stem)."""
    # Total strides from the blocks' output sizes (attention downsamples keys inside
    # a block without striding the network); round() as odd sizes halve up.
    strides, total, size = [], 1, spec.resolution
    for block in graph.blocks:
        total *= round(size / block.out_shape[1])
        size = block.out_shape[1]
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


def space_to_depth(ctx: Context, row, repeat: int, stride: int) -> tuple:
    """(the row as its block is built, its stride, the factor by which something
    other than a stride shrinks the feature map) under timm's space-to-depth rule
    (its builder's `s2d`, EfficientNet-X/H).

    The first block of a row with `s2d` folds each 2x2 patch into channels, halving
    the size as a stride would; it starts a region in which blocks are 4x as wide
    as their rows say (`Context.stage_width`). The region ends at the next strided
    block, which then does not stride (the space-to-depth did) and whose expansion
    ratio `t` is a quarter (its input is 4x as wide); later repeats of its row are
    as the row says. Inside a region, `s2d` starts nothing (timm's rule).
    """
    if getattr(row, "s2d", False):
        if repeat == 0 and not ctx.space_to_depth:
            ctx.space_to_depth = True
            return row, stride, 2
        return row.model_copy(update={"s2d": False}), stride, 1
    if ctx.space_to_depth and stride > 1:
        ctx.space_to_depth = False
        update: dict = {"s": 1}
        if getattr(row, "t", None) is not None:
            update["t"] = row.t / 4
        return row.model_copy(update=update), 1, 1
    return row, stride, 1


def _expand(loaded: LoadedSpec, stop: int | None = None) -> Graph:
    """The IR of the spec; with `stop`, only its blocks up to that index."""
    spec = loaded.spec
    head = network(loaded)
    conv = head.conventions
    graph = Graph(network=head)
    x = graph.add(
        "input", [], "input", shape=(spec.in_channels, spec.resolution, spec.resolution)
    )
    if conv.input_rescaling:
        x = graph.add("rescale", [x], "rescale", scale=1 / 127.5, offset=-1.0)
    ctx = Context(spec=spec, conv=conv, in_c=spec.in_channels, in_raw=spec.in_channels)

    def emit(block_type, params, role: str, origin: tuple, name: str) -> None:
        nonlocal x
        if stop is not None and len(graph.blocks) > stop:
            return
        graph.begin_block(block_type.name, params, role, origin)
        x = block_type.expand(graph, x, params, name, ctx)
        graph.end_block(x)
        ctx.in_c = graph.shape(x)[0]

    def size() -> tuple[int, int]:
        return graph.shape(x)[1:]

    def head_width(c: int) -> int:
        keep = conv.head_width == "fixed" or (
            conv.head_width == "scaled_above_one" and spec.width_multiplier <= 1
        )
        return c if keep else ctx.scale(c)

    features = 0  # index inside the `features` section

    stem = spec.stem
    stem_c = stem.c if conv.stem_width == "fixed" else ctx.scale(stem.c)
    pad = padding(conv.stem_padding, stem.k, stem.s, 1, size())
    params = conv_bn_act.params(
        ctx,
        out_c=stem_c,
        conv=Spatial(stem.k, stem.s, 1, pad),
        act=stem.act,
        bias=stem.bias,
    )
    emit(conv_bn_act.BLOCK, params, "stem", ("stem",), f"features.{features}")
    features += 1
    ctx.in_raw = stem.c
    total_stride = stem.s

    rows = spec.repeats()
    ctx.blocks_total = sum(n for _, _, n in rows)
    ends = [0] * len(spec.stages)  # the block that ends each item of `stages`
    for path, row, repeats in rows:
        block_type = BLOCK_TYPES[row.block]
        for repeat in range(repeats):
            stride = row.s if repeat == 0 else 1
            block_row, stride, folds = space_to_depth(ctx, row, repeat, stride)
            total_stride *= folds
            if spec.output_stride and total_stride * stride > spec.output_stride:
                ctx.rate *= stride  # dilate instead of striding (see base.atrous)
            else:
                total_stride *= stride
            params = block_type.resolve(ctx, block_row, stride, size())
            origin = ("stages", *path)
            emit(block_type, params, "stage", origin, f"features.{features}")
            features += 1
            ctx.first_block = False
            ctx.block_index += 1
        ctx.in_raw = row.c
        ends[path[0]] = len(graph.blocks) - 1

    if spec.msfa is not None:
        neck = multi_scale_fusion
        params = neck.resolve(ctx, spec.msfa, graph, ends, loaded.error)
        emit(neck.BLOCK, params, "neck", ("msfa",), f"features.{features}")
        features += 1

    if spec.head.conv is not None:
        head_conv = spec.head.conv
        if head_conv.c is not None:
            out_c = head_width(head_conv.c)
        elif conv.expanded_size == "ratio":
            out_c = ctx.divisible(ctx.in_c * head_conv.t)
        else:
            out_c = round(ctx.in_c * head_conv.t)
        params = conv_bn_act.params(ctx, out_c=out_c, conv=POINTWISE, act=head_conv.act)
        origin = ("head", "conv")
        emit(conv_bn_act.BLOCK, params, "head", origin, f"features.{features}")
        features += 1

    if not spec.include_top:
        if spec.features is None and spec.head.pool != "none":
            x = graph.add("pool", [x], "pool", mode=spec.head.pool, keepdims=False)
        return graph

    hidden = spec.head.hidden
    params = classifier.params(
        ctx,
        hidden_c=head_width(hidden.c) if hidden else 0,
        hidden_act=hidden.act if hidden else None,
        hidden_norm=hidden.norm if hidden else False,
        hidden_bias=hidden.has_bias if hidden else False,
        dropout=spec.head.dropout,
    )
    emit(classifier.BLOCK, params, "classifier", ("head",), "classifier")
    return graph

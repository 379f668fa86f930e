"""Costs computed from the graph IR alone (no framework is imported).

Per node, and summed per block and per stage-table row:

- trainable parameters: conv/dense weights and biases, a norm's per-channel
  vectors (batch norm's gamma and beta; EvoNorm-S0's weight, bias and v);
- batch-norm statistics: moving mean and variance (Keras' non-trainable weights;
  the other norms keep none);
- MACs: multiply-accumulates of convolutions, dense layers and attention's two
  matrix products (queries x keys, weights x values), the convention of the MobileNet
  papers (bias, batch norm, activations, adds and pooling excluded); Global
  Context's attention pooling is the product of its softmaxed logits (H x W) with
  the map (C x H x W), so C x H x W MACs, and its softmax H x W activation
  operations; a CondConv adds
  the mixing of its kernel (experts x kernel size per sample) to its convolution's,
  and BlurPool's fixed 3x3 depthwise blur counts as the convolution it is;
- the operations MACs leave out, each on its own line so other counters can be
  reconciled: norms (`bn_ops`: batch norm 2 per element, the inference-time scale
  and shift; group and layer norm 5, fvcore's estimate), activations (1 per
  element), elementwise add/mul/rescale (1 per element; rescale 2; bilinear
  resizing 4 per output element; nearest resizing and concatenation none: they
  copy; EvoNorm-S0's arithmetic, see its module) and average pooling (1 per input
  element, the sum);
- activations: elements of each op's output tensor (batch 1), and the peak of live
  tensors when the ops run in the graph's order (an attention op also holds its
  score map and the softmax of it while it runs).

fvcore's FlopCountAnalysis counts convolutions and linear layers as MACs, batch norm
in eval mode as 2 per element, group and layer norm as 5, and adaptive average
pooling as 1 per input element, and ignores activations and elementwise ops: its
figure is `Report.fvcore_flops`. Each norm's counts are its unit's (ir/norms/).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import cached_property

from ..ir.graph import Graph
from ..ir.norms import NORM_KINDS, NORMS_BY_KIND

# Bytes per element of the storage types a deployment typically picks.
DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}

# Counts that add up from nodes to blocks, stages and the whole network.
SUMMED = (
    "params",
    "bn_stats",
    "macs",
    "bn_ops",
    "act_ops",
    "elementwise_ops",
    "pool_ops",
)


@dataclass(frozen=True)
class NodeCost:
    name: str
    kind: str
    block: int | None
    shape: tuple[int, ...]
    params: int  # trainable
    bn_stats: int  # non-trainable
    macs: int
    bn_ops: int
    act_ops: int
    elementwise_ops: int
    pool_ops: int
    activations: int  # output elements
    live: int  # elements held while this op runs (its inputs, output, and all kept)


@dataclass(frozen=True)
class BlockCost:
    index: int
    name: str
    type: str
    stage: str  # "stem", "stages.<row>", "neck", "head" or "classifier"
    shape: tuple[int, ...]
    params: int
    bn_stats: int
    macs: int
    bn_ops: int
    act_ops: int
    elementwise_ops: int
    pool_ops: int
    peak_live: int  # largest NodeCost.live inside the block


@dataclass(frozen=True)
class StageCost:
    """Blocks produced by one stage-table row (or the stem, head, classifier)."""

    label: str
    type: str
    blocks: int
    shape: tuple[int, ...]  # output of its last block
    params: int
    bn_stats: int
    macs: int


@dataclass(frozen=True)
class SeparableCost:
    """A depthwise k x k conv followed by a pointwise 1x1 conv, against one standard
    k x k convolution of the same shape (M -> N channels, same output size)."""

    block: str
    type: str
    kernel: int
    in_c: int  # M: channels entering the depthwise conv
    multiplier: int
    out_c: int  # N: channels leaving the pointwise conv
    out_hw: tuple[int, int]
    depthwise_macs: int
    pointwise_macs: int
    depthwise_params: int
    pointwise_params: int

    @property
    def separable_macs(self) -> int:
        return self.depthwise_macs + self.pointwise_macs

    @property
    def separable_params(self) -> int:
        return self.depthwise_params + self.pointwise_params

    @property
    def standard_params(self) -> int:
        return self.in_c * self.out_c * self.kernel * self.kernel

    @property
    def standard_macs(self) -> int:
        h, w = self.out_hw
        return h * w * self.in_c * self.out_c * self.kernel * self.kernel

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.separable_macs, self.standard_macs)

    @property
    def paper_ratio(self) -> Fraction:
        """MobileNet V1, section 3.1: 1/N + 1/Dk² (times the depth multiplier)."""
        return self.multiplier * (Fraction(1, self.out_c) + Fraction(1, self.kernel**2))

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "separable_macs": self.separable_macs,
            "standard_macs": self.standard_macs,
            "separable_params": self.separable_params,
            "standard_params": self.standard_params,
            "ratio": float(self.ratio),
            "paper_ratio": float(self.paper_ratio),
        }


@dataclass(frozen=True)
class Report:
    name: str
    resolution: int
    blocks: list[BlockCost]
    layers: list[NodeCost]
    separable: list[SeparableCost]

    def total(self, field: str) -> int:
        return self._totals[field]

    @cached_property
    def _totals(self) -> dict[str, int]:
        # Summed once: formatters ask for totals per block row.
        return {f: sum(getattr(n, f) for n in self.layers) for f in SUMMED}

    @property
    def trainable_params(self) -> int:
        return self.total("params")

    @property
    def non_trainable_params(self) -> int:
        return self.total("bn_stats")

    @property
    def total_params(self) -> int:
        """Everything a checkpoint stores: trainable parameters and batch-norm
        statistics."""
        return self.trainable_params + self.non_trainable_params

    @property
    def macs(self) -> int:
        return self.total("macs")

    @property
    def fvcore_flops(self) -> int:
        """What fvcore's FlopCountAnalysis reports for the same network in eval mode."""
        return self.macs + self.total("bn_ops") + self.total("pool_ops")

    @cached_property
    def peak_activation_elements(self) -> int:
        return max(n.live for n in self.layers)

    def weight_bytes(self, dtype: str) -> int:
        """All stored weights: trainable parameters and batch-norm statistics."""
        return self.total_params * DTYPE_BYTES[dtype]

    def peak_activation_bytes(self, dtype: str) -> int:
        return self.peak_activation_elements * DTYPE_BYTES[dtype]

    def stages(self) -> list[StageCost]:
        """Blocks grouped by the stage-table row that produced them, in order."""
        groups: dict[str, list[BlockCost]] = {}
        for b in self.blocks:
            groups.setdefault(b.stage, []).append(b)
        return [
            StageCost(
                label=label,
                type=members[0].type,
                blocks=len(members),
                shape=members[-1].shape,
                params=sum(b.params for b in members),
                bn_stats=sum(b.bn_stats for b in members),
                macs=sum(b.macs for b in members),
            )
            for label, members in groups.items()
        ]

    def to_json(self) -> dict:
        totals = {field: self.total(field) for field in SUMMED}
        return {
            "name": self.name,
            "resolution": self.resolution,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_params": self.total_params,
            "macs": self.macs,
            "totals": totals,
            "fvcore_flops": self.fvcore_flops,
            "peak_activation_elements": self.peak_activation_elements,
            "bytes": {
                dtype: {
                    "weights": self.weight_bytes(dtype),
                    "peak_activations": self.peak_activation_bytes(dtype),
                }
                for dtype in DTYPE_BYTES
            },
            "stages": [asdict(s) for s in self.stages()],
            "blocks": [asdict(b) for b in self.blocks],
            "layers": [asdict(n) for n in self.layers],
            "separable": [s.to_json() for s in self.separable],
        }


def node_cost(graph: Graph, node_id: str, live: int = 0) -> NodeCost:
    data = graph.node(node_id)
    kind, a, shape = data["kind"], data["attrs"], data["shape"]
    counts = dict.fromkeys(SUMMED, 0)
    out = math.prod(shape)
    spatial = shape[1] * shape[2] if len(shape) == 3 else 1
    if kind == "conv":
        per_output = (a["in_c"] // a["groups"]) * a["kernel"] * a["kernel"]
        counts["params"] = a["out_c"] * per_output + (a["out_c"] if a["bias"] else 0)
        counts["macs"] = spatial * a["out_c"] * per_output
    elif kind == "condconv":
        kernel = a["out_c"] * (a["in_c"] // a["groups"]) * a["kernel"] * a["kernel"]
        counts["params"] = a["experts"] * kernel
        # the conv with this sample's kernel, and mixing that kernel from the experts'
        counts["macs"] = spatial * kernel + a["experts"] * kernel
    elif kind == "blurpool":
        counts["macs"] = out * 9  # a fixed 3x3 depthwise convolution
    elif kind == "dwconv":
        out_c = a["channels"] * a["multiplier"]
        counts["params"] = out_c * a["kernel"] ** 2 + (out_c if a["bias"] else 0)
        counts["macs"] = spatial * out_c * a["kernel"] ** 2
    elif kind == "dense":
        counts["params"] = a["in_f"] * a["out_f"] + (a["out_f"] if a["bias"] else 0)
        counts["macs"] = a["in_f"] * a["out_f"]
    elif kind in NORM_KINDS:
        norm = NORMS_BY_KIND[kind]
        counts["params"] = norm.trainable(a) * a["channels"]
        counts["bn_stats"] = norm.statistics * a["channels"]
        for field, per_element in norm.per_element(a).items():
            counts[field] = per_element * out
    elif kind == "act":
        counts["act_ops"] = out
    elif kind == "scale":
        counts["params"] = a["channels"]
        counts["elementwise_ops"] = out
    elif kind == "attention":
        scores = attention_scores(graph, node_id)
        # queries x keys, then attention weights x values
        counts["macs"] = scores * (a["key_dim"] + a["value_dim"])
        counts["elementwise_ops"] = scores  # scaling the scores
        counts["act_ops"] = scores  # their softmax
    elif kind == "attention_pool":
        c, h, w = graph.shape(graph.inputs(node_id)[0])
        counts["macs"] = c * h * w  # the softmax-weighted sum over positions
        counts["act_ops"] = h * w  # the softmax of the logits
    elif kind == "avgpool":
        counts["pool_ops"] = math.prod(graph.shape(graph.inputs(node_id)[0]))
    elif kind == "upsample" or (kind == "resize" and a["mode"] == "bilinear"):
        counts["elementwise_ops"] = 4 * out  # bilinear: four taps per output
    elif kind in ("add", "mul"):
        counts["elementwise_ops"] = out
    elif kind == "rescale":
        counts["elementwise_ops"] = 2 * out  # x * scale + offset
    elif kind == "pool":
        counts["pool_ops"] = math.prod(graph.shape(graph.inputs(node_id)[0]))
    return NodeCost(
        node_id, kind, data["block"], shape, **counts, activations=out, live=live
    )


def attention_scores(graph: Graph, node_id: str) -> int:
    """Elements of an attention op's score map: heads x queries x keys."""
    a = graph.node(node_id)["attrs"]
    query, key, _ = (graph.shape(n) for n in graph.inputs(node_id))
    return a["heads"] * query[1] * query[2] * key[1] * key[2]


def workspace(graph: Graph, node_id: str) -> int:
    """Elements an op holds only while it runs: attention's scores and their softmax
    (both alive at once when the attention is computed unfused)."""
    if graph.node(node_id)["kind"] == "attention":
        return 2 * attention_scores(graph, node_id)
    return 0


def live_elements(graph: Graph) -> dict[str, int]:
    """Elements held while each op runs, executing ops in graph order: its inputs,
    its output, its workspace and every earlier tensor still needed later. No op
    works in place and a tensor is freed right after its last use, so the maximum
    is what an inference runtime without in-place ops must hold."""
    position = {n: i for i, n in enumerate(graph.order)}
    last_use = {n: position[n] for n in graph.order}
    for node_id in graph.order:
        for src in graph.inputs(node_id):
            last_use[src] = max(last_use[src], position[node_id])
    last_use[graph.output] = len(graph.order)  # the result is kept
    frees: dict[int, list[str]] = {}
    for node_id, i in last_use.items():
        frees.setdefault(i, []).append(node_id)
    held, live = 0, {}
    for i, node_id in enumerate(graph.order):
        held += math.prod(graph.shape(node_id))
        live[node_id] = held + workspace(graph, node_id)
        held -= sum(math.prod(graph.shape(n)) for n in frees.get(i, ()))
    return live


def block_name(graph: Graph, index: int) -> str:
    block = graph.blocks[index]
    return "classifier" if block.section == "classifier" else f"features.{index}"


def stage_label(graph: Graph, index: int) -> str:
    """The spec part a block comes from: `stem`, `stages.<row>`, `head` or
    `classifier` (compare aligns columns by it)."""
    block = graph.blocks[index]
    if block.role == "stage":  # stages.<row> or stages.<group>.<row>
        return ".".join(str(part) for part in block.origin)
    return block.role


def separable_parts(graph: Graph) -> list[SeparableCost]:
    """Every depthwise conv and the pointwise conv that follows it on the feature
    map (past batch norm, activation and a squeeze-excite's gate multiply)."""
    found = []
    for node_id in graph.order:
        data = graph.node(node_id)
        if data["kind"] != "dwconv":
            continue
        pointwise = _next_conv(graph, node_id)
        if pointwise is None:
            continue
        pw = graph.node(pointwise)["attrs"]
        if pw["kernel"] != 1 or pw["groups"] != 1:
            continue
        a = data["attrs"]
        _, out_h, out_w = data["shape"]
        dw, pw_cost = node_cost(graph, node_id), node_cost(graph, pointwise)
        found.append(
            SeparableCost(
                block=block_name(graph, data["block"]),
                type=graph.blocks[data["block"]].type,
                kernel=a["kernel"],
                in_c=a["channels"],
                multiplier=a["multiplier"],
                out_c=pw["out_c"],
                out_hw=(out_h, out_w),
                depthwise_macs=dw.macs,
                pointwise_macs=pw_cost.macs,
                depthwise_params=dw.params,
                pointwise_params=pw_cost.params,
            )
        )
    return found


def _next_conv(graph: Graph, node_id: str) -> str | None:
    # Follow the feature map. Where it feeds a gate's multiply, its other consumers
    # are the gate's branch (squeeze-excite's pool, Global Context's attention).
    current = node_id
    while True:
        successors = [
            s for s in graph.g.successors(current) if graph.node(s)["kind"] != "pool"
        ]
        gated = [s for s in successors if graph.node(s)["kind"] == "mul"]
        successors = gated or successors
        if len(successors) != 1:
            return None
        current = successors[0]
        kind = graph.node(current)["kind"]
        if kind == "conv":
            return current
        if kind not in (*NORM_KINDS, "act", "mul", "dropout"):
            return None


def report(
    graph: Graph, name: str | None = None, resolution: int | None = None
) -> Report:
    """The cost report of a graph, named after its network (or `name`)."""
    if graph.network is not None:
        name = name or graph.network.name
        resolution = resolution or graph.network.resolution
    key = f"report:{name}:{resolution}"
    if key not in graph.memo:
        graph.memo[key] = _report(graph, name, resolution)
    return graph.memo[key]


def _report(graph: Graph, name: str, resolution: int) -> Report:
    live = live_elements(graph)
    layers = [node_cost(graph, n, live[n]) for n in graph.order]
    by_block: dict[int | None, list[NodeCost]] = {}
    for cost in layers:  # one pass: report() stays linear in the graph's size
        by_block.setdefault(cost.block, []).append(cost)
    blocks = []
    for block in graph.blocks:
        mine = by_block.get(block.index, [])
        blocks.append(
            BlockCost(
                index=block.index,
                name=block_name(graph, block.index),
                type=block.type,
                stage=stage_label(graph, block.index),
                shape=block.out_shape,
                **{field: sum(getattr(c, field) for c in mine) for field in SUMMED},
                peak_live=max((c.live for c in mine), default=0),
            )
        )
    return Report(
        name=name,
        resolution=resolution,
        blocks=blocks,
        layers=layers,
        separable=separable_parts(graph),
    )

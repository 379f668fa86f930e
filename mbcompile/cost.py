"""Costs computed from the graph IR alone.

- trainable parameters: conv/dense weights and biases, batch-norm gamma and beta;
- batch-norm statistics: moving mean and variance (Keras' non-trainable weights);
- MACs: multiply-accumulates of convolutions and dense layers only, the convention
  of the MobileNet papers (bias, batch norm, activations, adds and pooling excluded);
- activation memory: elements of each op's output tensor (batch 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .ir import Graph


@dataclass(frozen=True)
class NodeCost:
    name: str
    kind: str
    block: int | None
    shape: tuple[int, ...]
    params: int  # trainable
    bn_stats: int  # non-trainable
    macs: int
    activations: int  # output elements


@dataclass(frozen=True)
class BlockCost:
    index: int
    name: str
    type: str
    shape: tuple[int, ...]
    params: int
    bn_stats: int
    macs: int


@dataclass(frozen=True)
class Report:
    name: str
    resolution: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    peak_activation_elements: int
    blocks: list[BlockCost]
    layers: list[NodeCost]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_params": self.trainable_params + self.non_trainable_params,
            "macs": self.macs,
            "peak_activation_elements": self.peak_activation_elements,
            "blocks": [asdict(b) for b in self.blocks],
            "layers": [asdict(n) for n in self.layers],
        }


def node_cost(graph: Graph, node_id: str) -> NodeCost:
    data = graph.node(node_id)
    kind, a, shape = data["kind"], data["attrs"], data["shape"]
    params = bn_stats = macs = 0
    spatial = shape[1] * shape[2] if len(shape) == 3 else 1
    if kind == "conv":
        per_output = (a["in_c"] // a["groups"]) * a["kernel"] * a["kernel"]
        params = a["out_c"] * per_output + (a["out_c"] if a["bias"] else 0)
        macs = spatial * a["out_c"] * per_output
    elif kind == "dwconv":
        out_c = a["channels"] * a["multiplier"]
        params = out_c * a["kernel"] * a["kernel"] + (out_c if a["bias"] else 0)
        macs = spatial * out_c * a["kernel"] * a["kernel"]
    elif kind == "bn":
        params = 2 * a["channels"]
        bn_stats = 2 * a["channels"]
    elif kind == "dense":
        params = a["in_f"] * a["out_f"] + (a["out_f"] if a["bias"] else 0)
        macs = a["in_f"] * a["out_f"]
    activations = 1
    for d in shape:
        activations *= d
    return NodeCost(
        node_id, kind, data["block"], shape, params, bn_stats, macs, activations
    )


def peak_activation_elements(graph: Graph) -> int:
    """Largest sum of live tensors while running ops in order (inputs freed after
    their last use), a lower bound on what an inference runtime must hold."""
    last_use = {}
    for i, node_id in enumerate(graph.order):
        for src in graph.inputs(node_id):
            last_use[src] = i
    size = {n: node_cost(graph, n).activations for n in graph.order}
    live: set[str] = set()
    peak = 0
    for i, node_id in enumerate(graph.order):
        live.add(node_id)
        peak = max(peak, sum(size[n] for n in live))
        live = {n for n in live if last_use.get(n, len(graph.order)) > i}
    return peak


def block_name(graph: Graph, index: int) -> str:
    block = graph.blocks[index]
    return "classifier" if block.section == "classifier" else f"features.{index}"


def report(graph: Graph, name: str, resolution: int) -> Report:
    layers = [node_cost(graph, n) for n in graph.order]
    blocks = []
    for block in graph.blocks:
        mine = [c for c in layers if c.block == block.index]
        blocks.append(
            BlockCost(
                index=block.index,
                name=block_name(graph, block.index),
                type=block.type,
                shape=block.out_shape,
                params=sum(c.params for c in mine),
                bn_stats=sum(c.bn_stats for c in mine),
                macs=sum(c.macs for c in mine),
            )
        )
    return Report(
        name=name,
        resolution=resolution,
        trainable_params=sum(c.params for c in layers),
        non_trainable_params=sum(c.bn_stats for c in layers),
        macs=sum(c.macs for c in layers),
        peak_activation_elements=peak_activation_elements(graph),
        blocks=blocks,
        layers=layers,
    )


def format_table(rep: Report) -> str:
    """A terminal table, one row per block, with totals."""
    header = ("#", "block", "type", "output", "params", "MACs", "MACs %")
    rows = []
    for b in rep.blocks:
        share = 100 * b.macs / rep.macs if rep.macs else 0.0
        shape = "x".join(str(d) for d in b.shape)
        rows.append(
            (
                str(b.index),
                b.name,
                b.type,
                shape,
                f"{b.params:,}",
                f"{b.macs:,}",
                f"{share:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {0, 4, 5, 6}

    def line(cells) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [f"{rep.name} @ {rep.resolution}x{rep.resolution}", "", line(header), rule]
    out += [line(r) for r in rows]
    out += [
        rule,
        f"trainable parameters      {rep.trainable_params:>15,}",
        f"batch-norm statistics     {rep.non_trainable_params:>15,}",
        f"MACs (conv + linear)      {rep.macs:>15,}",
        f"peak activations (fp32)   {rep.peak_activation_elements * 4 / 2**20:>13.2f} MiB",
    ]
    return "\n".join(out)

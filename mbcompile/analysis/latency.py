"""Latency estimated from the graph IR and a device profile: a roofline per op.

The MobileNetV4 paper (Qin et al., 2024, section 3, "Hardware-independent Pareto
efficiency") models a network's time as the sum over its layers of the slower of
computing and moving data, since the two happen roughly in parallel:

    time = sum over ops of max(MACs / PeakMACs, bytes / PeakMemBW)

with bytes the layer's weights and activations; the ratio PeakMACs / PeakMemBW is
the hardware's ridge point (RP). Here, for each op that runs:

    compute = work / (peak_gmacs · efficiency of its class) + taps · tap_ns
    memory  = (inputs + output + weights, in the profile's dtype) / bandwidth
    time    = max(compute, memory) + overhead of its class

`work` is the op's MACs, or for ops without MACs the operations the cost report
counts for them (batch norm 2 per element, activations and adds 1, pooling 1 per
input element, ...). A convolution (1x1 or k x k, not depthwise) reduces over its
input channels once per output element and kernel tap; `taps` counts those (output
elements x k x k) and `tap_ns`, of its class, is the fixed cost of each: a stem with
3 input channels pays it every 3 MACs, a 1x1 convolution with 256 every 256, so a
single MAC rate for all convolutions plus a tap cost is what runtimes whose 1x1 and
k x k convolutions share a GEMM kernel (XNNPACK's, for one) show. The bandwidth is
the cache's when the op's bytes fit in the profile's cache, else main memory's.
What a runtime fuses into the op before it (batch norm folded into its convolution,
clamping activations, zero padding into the convolution after it) runs inside that
op and costs nothing itself; dropout, drop path, flatten and the input cost nothing
at inference.

Efficiencies and overheads are data in the profile: what a real runtime reaches
for depthwise against 1x1 convolutions, and the fixed cost of every op, are what
MACs do not see. `mbcompile bench --calibrate` fits them to measured runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

from ..frontend.device import DTYPES, DeviceProfile
from ..ir.graph import Graph
from .cost import DTYPE_BYTES, NodeCost, Report, block_name, report, stage_label

# Ops that are not computed at inference time (or only rename a tensor).
FREE = ("input", "dropout", "drop_path", "flatten")
# Op kinds whose work is their MACs; the others' work is their counted operations.
MAC_KINDS = ("conv", "dwconv", "dense", "attention", "attention_pool")
BOUNDS = ("compute", "memory")
assert set(DTYPES) == set(DTYPE_BYTES)


@dataclass(frozen=True)
class OpTime:
    name: str
    kind: str
    op_class: str  # the profile's class ("" for ops that cost nothing)
    block: int | None
    work: int  # MACs, or operations for ops without MACs (batch included)
    bytes: int  # inputs + output + weights moved (batch included)
    taps: int  # a convolution's output elements x kernel taps (batch included)
    compute_s: float
    memory_s: float
    overhead_s: float
    fused_into: str | None  # the op this one runs inside, if any

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        """compute or memory: the slower of the two ("" for ops that cost nothing)."""
        if self.compute_s == self.memory_s == 0:
            return ""
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def to_json(self) -> dict:
        return {**asdict(self), "time_s": self.time_s, "bound": self.bound}


@dataclass(frozen=True)
class BlockTime:
    index: int
    name: str
    stage: str
    time_s: float
    compute_bound_s: float  # roofline time of its compute-bound ops
    memory_bound_s: float  # roofline time of its memory-bound ops
    overhead_s: float

    @property
    def bound(self) -> str:
        """The bound of most of its roofline time (overheads aside)."""
        if self.compute_bound_s == self.memory_bound_s == 0:
            return ""
        return "compute" if self.compute_bound_s >= self.memory_bound_s else "memory"

    def to_json(self) -> dict:
        return {**asdict(self), "bound": self.bound}


@dataclass(frozen=True)
class Latency:
    """The estimate of one network on one device at one batch size."""

    device: DeviceProfile
    batch: int
    ops: list[OpTime]
    blocks: list[BlockTime]

    @cached_property
    def total_s(self) -> float:
        return sum(op.time_s for op in self.ops)

    @property
    def total_ms(self) -> float:
        return self.total_s * 1e3

    def share(self, part: str) -> float:
        """Fraction of the time in compute-bound ops, memory-bound ops, or
        overheads (`compute`, `memory`, `overhead`)."""
        if not self.total_s:
            return 0.0
        if part == "overhead":
            return sum(op.overhead_s for op in self.ops) / self.total_s
        roof = sum(
            max(op.compute_s, op.memory_s) for op in self.ops if op.bound == part
        )
        return roof / self.total_s

    def stages(self) -> dict[str, float]:
        """Seconds per stage-table row (`stem`, `stages.<i>`, `head`, ...)."""
        out: dict[str, float] = {}
        for b in self.blocks:
            out[b.stage] = out.get(b.stage, 0.0) + b.time_s
        return out

    @property
    def ops_run(self) -> int:
        return sum(1 for op in self.ops if op.op_class and op.fused_into is None)

    def to_json(self, layers: bool = True) -> dict:
        data = {
            "device": self.device.name,
            "device_sha256": self.device.digest,
            "dtype": self.device.dtype,
            "threads": self.device.threads,
            "batch": self.batch,
            "total_ms": self.total_ms,
            "ops_run": self.ops_run,
            "share": {part: self.share(part) for part in (*BOUNDS, "overhead")},
            "blocks": [b.to_json() for b in self.blocks],
        }
        if layers:
            data["layers"] = [op.to_json() for op in self.ops]
        return data


# ---------------------------------------------------------------------- classes


def op_class(graph: Graph, node_id: str, device: DeviceProfile) -> str:
    """The profile's class of an op ("" for ops that cost nothing): a convolution's
    class by its kernel size (`depthwise_7x7`) when the profile names it."""
    data = graph.node(node_id)
    kind, a = data["kind"], data["attrs"]
    if kind in FREE:
        return ""
    if kind in ("conv", "dwconv"):
        if kind == "dwconv":
            general = "depthwise"
        elif a["kernel"] == 1 and a["groups"] == 1:
            return "pointwise"
        else:
            general = "conv"
        sized = f"{general}_{a['kernel']}x{a['kernel']}"
        return sized if sized in device.ops else general
    if kind == "act":
        return a["fn"]
    if kind == "bn":
        return "batch_norm"
    return kind


def fused_into(graph: Graph, node_id: str, device: DeviceProfile) -> str | None:
    """The op this one runs inside on the device, if the runtime fuses it."""
    data = graph.node(node_id)
    kind, a = data["kind"], data["attrs"]
    fuses = device.fuses
    if kind == "bn" and fuses.batch_norm and a.get("foldable"):
        return _runs_as(graph, graph.inputs(node_id)[0], device)
    if kind == "act" and a["fn"] in fuses.activations:
        (source,) = graph.inputs(node_id)
        if graph.node(source)["kind"] != "input":
            return _runs_as(graph, source, device)
    if kind == "pad" and fuses.padding:
        consumers = list(graph.g.successors(node_id))
        if consumers and all(
            graph.node(c)["kind"] in ("conv", "dwconv") for c in consumers
        ):
            return consumers[0]
    return None


def _runs_as(graph: Graph, node_id: str, device: DeviceProfile) -> str:
    """The op that actually computes `node_id` (following fused ops back)."""
    host = fused_into(graph, node_id, device)
    return node_id if host is None else host


# --------------------------------------------------------------------- estimate


def op_work(cost: NodeCost) -> int:
    if cost.kind in MAC_KINDS:
        return cost.macs
    return cost.bn_ops + cost.act_ops + cost.elementwise_ops + cost.pool_ops


def op_taps(graph: Graph, cost: NodeCost) -> int:
    """A convolution's output elements times its kernel taps (per image); 0 for
    other ops (a depthwise convolution's tap is one MAC: its work)."""
    if cost.kind != "conv":
        return 0
    kernel = graph.node(cost.name)["attrs"]["kernel"]
    return cost.activations * kernel * kernel


def op_bytes(graph: Graph, cost: NodeCost, batch: int, dtype_bytes: int) -> int:
    """Inputs + output (per image, times the batch) + weights, in bytes."""
    moved = sum(math.prod(graph.shape(src)) for src in graph.inputs(cost.name))
    moved += cost.activations
    return (moved * batch + cost.params + cost.bn_stats) * dtype_bytes


def estimate(graph: Graph, device: DeviceProfile, batch: int = 1) -> Latency:
    """The roofline estimate of a graph on a device (memoised per device)."""
    key = f"latency:{device.digest}:{batch}"
    if key not in graph.memo:
        graph.memo[key] = _estimate(graph, report(graph), device, batch)
    return graph.memo[key]


def _estimate(graph: Graph, rep: Report, device: DeviceProfile, batch: int) -> Latency:
    size = DTYPE_BYTES[device.dtype]
    peak = device.peak_gmacs * 1e9
    ops = []
    for cost in rep.layers:
        klass = op_class(graph, cost.name, device)
        host = fused_into(graph, cost.name, device) if klass else None
        if not klass or host is not None:
            ops.append(
                OpTime(cost.name, cost.kind, klass, cost.block, 0, 0, 0, 0, 0, 0, host)
            )
            continue
        work = op_work(cost) * batch
        taps = op_taps(graph, cost) * batch
        moved = op_bytes(graph, cost, batch, size)
        bandwidth = device.bandwidth_gbs
        if device.cache is not None and moved <= device.cache.bytes:
            bandwidth = device.cache.bandwidth_gbs
        ops.append(
            OpTime(
                name=cost.name,
                kind=cost.kind,
                op_class=klass,
                block=cost.block,
                work=work,
                bytes=moved,
                taps=taps,
                compute_s=work / (peak * device.op(klass).efficiency)
                + taps * device.tap_s(klass),
                memory_s=moved / (bandwidth * 1e9),
                overhead_s=device.overhead_s(klass),
                fused_into=None,
            )
        )
    return Latency(device, batch, ops, _blocks(graph, ops))


def _blocks(graph: Graph, ops: list[OpTime]) -> list[BlockTime]:
    by_block: dict[int | None, list[OpTime]] = {}
    for op in ops:
        by_block.setdefault(op.block, []).append(op)
    blocks = []
    for block in graph.blocks:
        mine = by_block.get(block.index, [])
        roof = dict.fromkeys(BOUNDS, 0.0)
        for op in mine:
            if op.bound:
                roof[op.bound] += max(op.compute_s, op.memory_s)
        blocks.append(
            BlockTime(
                index=block.index,
                name=block_name(graph, block.index),
                stage=stage_label(graph, block.index),
                time_s=sum(op.time_s for op in mine),
                compute_bound_s=roof["compute"],
                memory_bound_s=roof["memory"],
                overhead_s=sum(op.overhead_s for op in mine),
            )
        )
    return blocks

"""The graph IR: typed ops in a networkx DiGraph, with inferred shapes.

The graph carries the whole network: a `Network` header (what the spec decided for
the network as a whole) and `Block`s that group its ops, each with its role and the
spec path it came from, so that backends and reports read nothing else.

Shapes are framework-neutral `(channels, height, width)` for feature maps and
`(features,)` for vectors; the batch dimension is implicit. Nodes are added in
execution order, which is also the order in which both backends create their
parametric layers, so weights map between frameworks by position.

Op kinds and their attributes:

| kind      | attributes |
|-----------|------------|
| input     | shape |
| rescale   | scale, offset |
| pad       | pad = (top, bottom, left, right) |
| conv      | in_c, out_c, kernel, stride, dilation, groups, padding (symmetric, per side), bias |
| dwconv    | channels, multiplier, kernel, stride, dilation, padding, bias |
| condconv  | in_c, out_c, kernel, stride, dilation, groups, padding, experts: a conv whose kernel is, per sample, the mix of `experts` kernels weighted by its second input, a routing vector (experts,) (CondConv) |
| bn        | channels, eps, momentum (PyTorch convention), foldable (into the conv before it) |
| group_norm, layer_norm, evonorm_s0 | channels and what the norm decides (see norms/): the network's `norm` where it is not batch norm |
| act       | fn |
| add       | (two inputs of equal shape) |
| mul       | (feature map, per-channel gate of shape (C, 1, 1)) |
| pool      | mode ("avg" or "max"), keepdims |
| dense     | in_f, out_f, bias |
| dropout   | rate |
| drop_path | rate (stochastic depth of a residual branch: drops whole samples in training) |
| attention | heads, key_dim, value_dim: multi-query attention of three feature maps, queries (heads * key_dim, H, W) against one key (key_dim, h, w) and one value (value_dim, h, w) head shared by all query heads; out (heads * value_dim, H, W). No weights: its projections are convs around it |
| attention_pool | (a feature map (C, H, W) and attention logits (1, H, W)): the map's positions summed, weighted by the softmax of the logits over them; out (C, 1, 1) (Global Context's context) |
| avgpool   | size (a size x size average pool, stride size, no padding) |
| blurpool  | (a fixed 3x3 binomial blur, [1, 2, 1] x [1, 2, 1] / 16, per channel, zero padding 1, stride 2: BlurPool) |
| slice     | start, size (channels start to start + size of a feature map) |
| concat    | (feature maps of equal size joined along channels, in input order) |
| upsample  | factor (bilinear, half-pixel centres) |
| resize    | size = (height, width), mode: "nearest" (each output pixel copies input pixel floor(i * in / out): PyTorch's "nearest") or "bilinear" (half-pixel centres, no antialiasing) |
| concat    | (two or more feature maps of one height and width, joined along channels in input order) |
| scale     | channels (a learned per-channel factor: layer scale) |
| flatten   | |

Ops a layer unit adds (a conv kind or a pooling, `mbcompile/ir/layers/`) say so in
their `unit` attribute, so that backends know which units' pieces a network needs;
the convolutions of a mixed conv carry `part` = (index, count) among its groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..frontend.conventions import Conventions
from .norms import NORM_KINDS, NORMS_BY_KIND, Norm

# Every norm is one op kind (its module in norms/); batch norm's is "bn".
PARAMETRIC = ("conv", "dwconv", "condconv", *NORM_KINDS, "dense", "scale")
KINDS = (
    "input",
    "rescale",
    "pad",
    "conv",
    "dwconv",
    "condconv",
    *NORM_KINDS,
    "act",
    "add",
    "mul",
    "pool",
    "dense",
    "dropout",
    "drop_path",
    "scale",
    "attention",
    "attention_pool",
    "avgpool",
    "blurpool",
    "slice",
    "concat",
    "upsample",
    "resize",
    "concat",
    "flatten",
)


class IRError(ValueError):
    """A structural problem in the graph (bad shapes, mismatched residual, ...)."""


# What a block is in the network; decides cost labels, Keras names and containers.
ROLES = ("stem", "stage", "neck", "head", "classifier")


@dataclass(frozen=True)
class Network:
    """The network as a whole, as the spec decided it: everything a backend or a
    report needs besides the ops."""

    name: str
    family: str
    conventions: Conventions  # resolved: the profile with the spec's overrides
    resolution: int
    in_channels: int
    num_classes: int
    width_multiplier: float
    include_top: bool
    pool: str  # "avg", "max" or "none"
    fold_batch_norm: bool  # batch norms that can be folded are (see `bn.foldable`)
    norm: Any  # the spec's `norm`: the settings of its norm unit (see norms/)
    source: str  # the spec file as the user named it
    content_hash: str  # sha256 of the validated spec


@dataclass
class Block:
    """One call in the generated model body: a block type and its resolved params."""

    index: int  # position in the model body
    type: str  # block type (registry name), e.g. "inverted_residual"
    params: Any  # the block type's typed parameters (a frozen dataclass)
    role: str  # one of ROLES
    # The spec path it came from: ("stem",), ("stages", 3), ("stages", 2, 0) (row 0
    # of the group of rows at stages[2]), ("msfa",), ("head", "conv"), ("head",).
    origin: tuple
    nodes: list[str] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()
    output: str = ""  # the node whose value the block returns

    @property
    def stage(self) -> int | None:
        """The item of `stages` (a row or a group of rows) that produced it, if any."""
        return self.origin[1] if self.role == "stage" else None

    @property
    def section(self) -> str:
        """The PyTorch container (and Keras prefix): features or classifier."""
        return "classifier" if self.role == "classifier" else "features"


@dataclass
class Graph:
    """Ops in execution order, plus the blocks that group them."""

    g: nx.DiGraph = field(default_factory=nx.DiGraph)
    order: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    # Named outputs of a backbone (feature taps): name -> node; empty = one output.
    outputs: dict[str, str] = field(default_factory=dict)
    network: Network | None = None  # set by the expansion that builds the graph
    # Values derived from the finished graph (the cost report), computed once:
    # a graph is not changed after expansion.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _current: Block | None = None

    # -- building -----------------------------------------------------------------
    def begin_block(self, type_: str, params: Any, role: str, origin: tuple) -> Block:
        if role not in ROLES:
            raise IRError(f"unknown block role {role!r}")
        block = Block(len(self.blocks), type_, params, role, origin)
        self.blocks.append(block)
        self._current = block
        return block

    def end_block(self, out: str) -> None:
        assert self._current is not None
        self._current.out_shape = self.shape(out)
        self._current.output = out
        self._current = None

    def add(self, kind: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add an op, infer its output shape now (so builders can use it), return id."""
        if kind not in KINDS:
            raise IRError(f"unknown op kind {kind!r}")
        node_id = name
        if node_id in self.g:
            raise IRError(f"duplicate node name {node_id!r}")
        in_shapes = [self.shape(i) for i in inputs]
        shape = infer_shape(kind, attrs, in_shapes, node_id)
        block = self._current.index if self._current else None
        self.g.add_node(node_id, kind=kind, attrs=attrs, shape=shape, block=block)
        for position, src in enumerate(inputs):
            self.g.add_edge(src, node_id, position=position)
        self.order.append(node_id)
        if self._current is not None:
            self._current.nodes.append(node_id)
        return node_id

    def add_norm(self, norm: Norm, x: str, name: str, activated: bool = False) -> str:
        """The norm op `name` of `norm`'s type on `x`; `activated`: an activation
        follows it."""
        channels = self.shape(x)[0]
        attrs = norm.type.attrs(norm, channels, activated)
        return self.add(norm.type.kind, [x], name, channels=channels, **attrs)

    # -- reading ------------------------------------------------------------------
    def shape(self, node_id: str) -> tuple[int, ...]:
        return self.g.nodes[node_id]["shape"]

    def node(self, node_id: str) -> dict[str, Any]:
        return self.g.nodes[node_id]

    def inputs(self, node_id: str) -> list[str]:
        preds = self.g.pred[node_id]  # {source: edge data}; most ops have one input
        if len(preds) <= 1:
            return list(preds)
        return sorted(preds, key=lambda src: preds[src]["position"])

    def parametric(self) -> list[str]:
        """Parametric ops in the order their weights are stored: the cross-framework
        weight order. That is execution order, except that an op marked
        `stored_last` comes after the other parametric ops of its block (CondConv's
        routing layer, which timm registers after the convolutions it routes)."""
        found: list[str] = []
        last: list[str] = []  # of the current block
        block = None
        for node_id in self.order:
            data = self.g.nodes[node_id]
            if data["kind"] not in PARAMETRIC:
                continue
            if data["block"] != block:
                found += last
                last, block = [], data["block"]
            (last if data["attrs"].get("stored_last") else found).append(node_id)
        return found + last

    @property
    def output(self) -> str:
        return self.order[-1]

    def validate(self) -> None:
        """Re-check the whole graph: acyclic, connected in order, shapes consistent."""
        if not nx.is_directed_acyclic_graph(self.g):
            raise IRError("graph has a cycle")
        position = {n: i for i, n in enumerate(self.order)}
        for node_id in self.order:
            data = self.g.nodes[node_id]
            ins = self.inputs(node_id)
            if any(position[i] >= position[node_id] for i in ins):
                raise IRError(f"{node_id}: consumes a value produced later")
            expected = infer_shape(
                data["kind"], data["attrs"], [self.shape(i) for i in ins], node_id
            )
            if expected != data["shape"]:
                raise IRError(f"{node_id}: stored shape {data['shape']} != {expected}")
        sinks = [n for n in self.order if self.g.out_degree(n) == 0]
        if sinks != [self.output]:
            raise IRError(f"graph must have one output, found {sinks}")


def conv_out(size: int, kernel: int, stride: int, dilation: int, pad_total: int) -> int:
    """One spatial dimension of a convolution's output."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def infer_shape(kind: str, a: dict, ins: list[tuple], name: str) -> tuple[int, ...]:
    """Output shape of one op; raises IRError on anything structurally wrong."""

    def need(n_inputs: int) -> None:
        if len(ins) != n_inputs:
            raise IRError(f"{name}: {kind} takes {n_inputs} input(s), got {len(ins)}")

    def feature_map(shape: tuple) -> tuple[int, int, int]:
        if len(shape) != 3:
            raise IRError(f"{name}: {kind} needs a feature map, got shape {shape}")
        return shape  # type: ignore[return-value]

    if kind == "input":
        need(0)
        shape = tuple(a["shape"])
    elif kind in ("rescale", "act", "dropout", "drop_path"):
        need(1)
        shape = ins[0]
    elif kind == "pad":
        need(1)
        c, h, w = feature_map(ins[0])
        top, bottom, left, right = a["pad"]
        shape = (c, h + top + bottom, w + left + right)
    elif kind == "conv":
        need(1)
        c, h, w = feature_map(ins[0])
        if c != a["in_c"]:
            raise IRError(f"{name}: expects {a['in_c']} input channels, got {c}")
        if a["in_c"] % a["groups"] or a["out_c"] % a["groups"]:
            raise IRError(f"{name}: channels not divisible by groups={a['groups']}")
        shape = _spatial(name, a, a["out_c"], h, w)
    elif kind == "condconv":
        need(2)
        c, h, w = feature_map(ins[0])
        if c != a["in_c"]:
            raise IRError(f"{name}: expects {a['in_c']} input channels, got {c}")
        if a["in_c"] % a["groups"] or a["out_c"] % a["groups"]:
            raise IRError(f"{name}: channels not divisible by groups={a['groups']}")
        if ins[1] != (a["experts"],):
            raise IRError(
                f"{name}: routing {ins[1]} does not fit {a['experts']} experts"
            )
        shape = _spatial(name, a, a["out_c"], h, w)
    elif kind == "dwconv":
        need(1)
        c, h, w = feature_map(ins[0])
        if c != a["channels"]:
            raise IRError(f"{name}: expects {a['channels']} channels, got {c}")
        shape = _spatial(name, a, c * a["multiplier"], h, w)
    elif kind == "scale":
        need(1)
        if ins[0][0] != a["channels"]:
            raise IRError(f"{name}: expects {a['channels']} channels, got {ins[0][0]}")
        shape = ins[0]
    elif kind in NORM_KINDS:
        need(1)
        if ins[0][0] != a["channels"]:
            raise IRError(f"{name}: expects {a['channels']} channels, got {ins[0][0]}")
        problem = NORMS_BY_KIND[kind].check(a)
        if problem:
            raise IRError(f"{name}: {NORMS_BY_KIND[kind].name}: {problem}")
        shape = ins[0]
    elif kind == "add":
        need(2)
        if ins[0] != ins[1]:
            raise IRError(
                f"{name}: residual add of mismatched shapes {ins[0]} and {ins[1]}"
            )
        shape = ins[0]
    elif kind == "mul":
        need(2)
        c, _, _ = feature_map(ins[0])
        if ins[1] != (c, 1, 1):
            raise IRError(f"{name}: gate shape {ins[1]} does not fit {ins[0]}")
        shape = ins[0]
    elif kind == "attention":
        need(3)
        query, key, value = (feature_map(shape) for shape in ins)
        heads, key_dim, value_dim = a["heads"], a["key_dim"], a["value_dim"]
        if query[0] != heads * key_dim:
            raise IRError(
                f"{name}: queries have {query[0]} channels, not {heads} x {key_dim}"
            )
        if key[0] != key_dim or value[0] != value_dim:
            raise IRError(f"{name}: key {key} or value {value} of the wrong width")
        if key[1:] != value[1:]:
            raise IRError(f"{name}: keys {key[1:]} and values {value[1:]} differ")
        shape = (heads * value_dim, *query[1:])
    elif kind == "attention_pool":
        need(2)
        c, h, w = feature_map(ins[0])
        if ins[1] != (1, h, w):
            raise IRError(f"{name}: attention logits {ins[1]} do not fit {ins[0]}")
        shape = (c, 1, 1)
    elif kind == "avgpool":
        need(1)
        c, h, w = feature_map(ins[0])
        shape = (c, h // a["size"], w // a["size"])
    elif kind == "blurpool":
        need(1)
        c, h, w = feature_map(ins[0])
        shape = (c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)  # (h + 2 - 3) // 2 + 1
    elif kind == "slice":
        need(1)
        c, h, w = feature_map(ins[0])
        if a["start"] + a["size"] > c:
            raise IRError(f"{name}: channels {a['start']}+{a['size']} of {c}")
        shape = (a["size"], h, w)
    elif kind == "concat":
        if len(ins) < 2:
            raise IRError(f"{name}: concat takes 2 or more inputs, got {len(ins)}")
        maps = [feature_map(shape) for shape in ins]
        if len({m[1:] for m in maps}) != 1:
            raise IRError(f"{name}: concat of maps of different sizes {ins}")
        shape = (sum(m[0] for m in maps), *maps[0][1:])
    elif kind == "upsample":
        need(1)
        c, h, w = feature_map(ins[0])
        shape = (c, h * a["factor"], w * a["factor"])
    elif kind == "resize":
        need(1)
        c, _, _ = feature_map(ins[0])
        if a["mode"] not in ("nearest", "bilinear"):
            raise IRError(f"{name}: unknown resize mode {a['mode']!r}")
        shape = (c, *a["size"])
    elif kind == "concat":
        if len(ins) < 2:
            raise IRError(f"{name}: concat takes two or more inputs, got {len(ins)}")
        maps = [feature_map(shape) for shape in ins]
        if len({m[1:] for m in maps}) != 1:
            sizes = ", ".join(f"{h}x{w}" for _, h, w in maps)
            raise IRError(f"{name}: concat of feature maps of different sizes {sizes}")
        shape = (sum(m[0] for m in maps), *maps[0][1:])
    elif kind == "pool":
        need(1)
        c, _, _ = feature_map(ins[0])
        shape = (c, 1, 1) if a["keepdims"] else (c,)
    elif kind == "flatten":
        need(1)
        shape = (math.prod(ins[0]),)
    elif kind == "dense":
        need(1)
        if ins[0] != (a["in_f"],):
            raise IRError(f"{name}: expects ({a['in_f']},) input, got {ins[0]}")
        shape = (a["out_f"],)
    else:  # pragma: no cover - guarded by KINDS
        raise IRError(f"{name}: unknown op kind {kind!r}")
    if any(d < 1 for d in shape):
        raise IRError(f"{name}: {kind} produces an empty tensor {shape}")
    return shape


def _spatial(name: str, a: dict, out_c: int, h: int, w: int) -> tuple[int, int, int]:
    kernel, stride, dilation = a["kernel"], a["stride"], a["dilation"]
    ph, pw = a["padding"]
    out_h = conv_out(h, kernel, stride, dilation, 2 * ph)
    out_w = conv_out(w, kernel, stride, dilation, 2 * pw)
    if out_h < 1 or out_w < 1:
        raise IRError(
            f"{name}: a {kernel}x{kernel} kernel does not fit a {h}x{w} input "
            "(resolution too small for this network's total stride)"
        )
    return (out_c, out_h, out_w)

"""Keras 3 lowering: functional models whose weighted layers are named like
keras.applications' (names are the contract its weight files load by)."""

from __future__ import annotations

from typing import Any

from ..analysis.cost import block_name
from ..ir.blocks import BLOCK_TYPES
from ..ir.blocks.base import Spatial
from ..ir.graph import Graph
from ..ir.norms import NORMS_BY_KIND
from . import naming
from .render import (
    BlockView,
    block_views,
    environment,
    helpers_needed,
    options,
    spell_padding,
)

# Initialisers each scheme passes to the layers it creates (see the model
# template's definitions; "keras" keeps Keras' own defaults, as keras.applications).
INITIALIZERS = {
    "torchvision": {
        "conv": "kernel_initializer=conv_init(), ",
        "grouped": "kernel_initializer=conv_init(), ",  # fan-out k * k * out, as torch
        "depthwise": "depthwise_initializer=depthwise_init(x.shape[-1]), ",
        "dense": "kernel_initializer=dense_init(), ",
        "attention": "kernel_initializer=conv_init(), ",
        "attention_depthwise": "depthwise_initializer=depthwise_init(x.shape[-1]), ",
    },
    "timm": {
        "conv": "kernel_initializer=conv_init(), ",
        # timm's fan-out of a grouped conv divides by its groups (`groups` in the helper)
        "grouped": "kernel_initializer=grouped_init(groups), ",
        "depthwise": "depthwise_initializer=conv_init(), ",
        "dense": "kernel_initializer=dense_init({units}), ",
        "attention": "",
        "attention_depthwise": "",
    },
    "keras": dict.fromkeys(
        ("conv", "grouped", "depthwise", "dense", "attention", "attention_depthwise"),
        "",
    ),
}
ACTIVATIONS = {
    "relu": "layers.ReLU(name=name)",
    "relu6": "layers.ReLU(6.0, name=name)",
    "hardswish": 'layers.Activation("hard_swish", name=name)',
    "hardsigmoid": 'layers.Activation("hard_sigmoid", name=name)',
    "swish": 'layers.Activation("swish", name=name)',
    "gelu": 'layers.Activation("gelu", name=name)',  # exact: approximate=False
    "gelu_tanh": "layers.Activation(gelu_tanh, name=name)",  # defined in the file
    "sigmoid": 'layers.Activation("sigmoid", name=name)',
    "identity": "layers.Identity(name=name)",
}


def keras_pad(conv: Spatial) -> tuple | None:
    """ZeroPadding2D's ((top, bottom), (left, right)), or None where "same" is exact.

    Keras' "same" is symmetric only at stride 1, so every strided conv gets its
    padding spelled out (TensorFlow's SAME rule, or torchvision's symmetric one) —
    unless it pads nothing (a 2x2 or 1x1 kernel), as "same" then does too.
    """
    if (conv.stride == 1 and conv.centred) or not any(conv.pad):
        return None
    top, bottom, left, right = conv.pad
    return ((top, bottom), (left, right))


def layer_names(graph: Graph) -> list[str]:
    """The Keras layer holding each parametric op of the graph, in the IR's order
    (the generated model's `model.get_layer(name)`)."""
    net = graph.network
    names = naming.keras_names(net.conventions, net.family)
    views = {b.index: b for b in block_views(graph)}
    found = []
    for node_id in graph.parametric():
        block = graph.blocks[graph.node(node_id)["block"]]
        view = views[block.index]
        part = node_id.removeprefix(block_name(graph, block.index) + ".")
        if block.role in ("stem", "head"):
            found.append(names[block.role][part == "bn"])
        elif block.role == "classifier":
            hidden, hidden_bn = names["hidden"]
            found.append(
                names["logits"]
                if part == "logits"
                else (hidden_bn if part.endswith("bn") else hidden)
            )
        elif BLOCK_TYPES[block.type].named_by_call:
            found.append(view_names(view, names)[part == "bn"])
        else:  # a stage-table block by its id; the neck has none
            number = None if view.number is None else block_id(view, names)
            found.append(naming.keras_layer_name(names, view.template, part, number))
    return found


# The Keras layer class computing each parametric op kind (a dense op in the
# "conv1x1" form is a 1x1 Conv2D; a layer scale, a 1x1 DepthwiseConv2D; CondConv's
# experts, the Dense layer mixing each sample's kernel: templates/keras/layers/).
LAYER_CLASSES = {
    "conv": "Conv2D",
    "dwconv": "DepthwiseConv2D",
    "condconv": "Dense",
    "scale": "DepthwiseConv2D",
    "dense": "Dense",
}


def layer_classes(graph: Graph) -> list[str]:
    """The class of the Keras layer holding each parametric op, in the IR's order
    (a norm's: its template's label, the layer it builds)."""
    found = []
    for node_id in graph.parametric():
        node = graph.node(node_id)
        kind = node["kind"]
        if kind in NORMS_BY_KIND:
            name = NORMS_BY_KIND[kind].name
            piece = environment().get_template(f"keras/norms/{name}.py.j2").module
            found.append(str(piece.label()))
        elif kind == "dense" and node["attrs"]["form"] == "conv1x1":
            found.append("Conv2D")
        else:
            found.append(LAYER_CLASSES[kind])
    return found


def block_id(b: BlockView, names: dict[str, Any]) -> int | str:
    """A stage-table block's id in Keras names: timm's "<stage>_<block>", or
    keras.applications' count (from 1 in V1, from 0 elsewhere)."""
    if names["block_id_type"] == "str":
        return f"{b.group}_{b.position}"
    return b.number + names["first_block_id"]


def view_names(b: BlockView, names: dict[str, Any]) -> tuple[str, str]:
    """(conv, bn) names of a stage-table row whose helper is named by its calls
    (`BlockType.named_by_call`), from its template's naming table."""
    patterns = names[b.template]
    return tuple(
        naming.fill(patterns[part], block_id=block_id(b, names))
        for part in ("conv", "bn")
    )


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in (*shape[1:], shape[0]))


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    net = graph.network
    names = naming.keras_names(net.conventions, net.family)
    spell_padding(ctx["blocks"], keras_pad)
    for b in ctx["blocks"]:
        b.x["shape"] = shape_comment(b.shape)
        if b.number is not None:
            b.x["block_id"] = block_id(b, names)
        if b.role in ("stem", "head"):
            b.x["names"] = names[b.role]
        elif BLOCK_TYPES[b.type].named_by_call:  # a stage-table row
            b.x["names"] = view_names(b, names)
    conventions = net.conventions
    shared = options(graph, ctx["blocks"], ctx["norm"])
    helpers = helpers_needed(ctx["templates"], net.norm, ctx["units"])
    return {
        "activations": sorted({*ctx["activations"], *shared["se_acts"]}),
        "keras_activations": ACTIVATIONS,
        "names": names,
        "m": {
            **shared,
            "uses_ops": "keras_ops" in helpers,
            "bn_eps": repr(conventions.bn_epsilon),
            "bn_momentum": repr(round(1 - conventions.bn_momentum, 12)),
            "torch_momentum": repr(conventions.bn_momentum),
            "init": {
                "scheme": conventions.initialization,
                **INITIALIZERS[conventions.initialization],
            },
            "names": names,
        },
        "input_comment": shape_comment(graph.shape("input")),
    }

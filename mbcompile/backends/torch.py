"""PyTorch lowering: module classes whose state_dict keys follow the reference
library of the spec's conventions (torchvision's layout, or timm's)."""

from __future__ import annotations

from typing import Any

from ..ir.blocks import BLOCK_TYPES
from ..ir.blocks.base import Spatial
from ..ir.graph import Graph
from . import naming
from .render import environment, helpers_needed, options, spell_padding

# Activation modules as torchvision and timm build them: in place where PyTorch can
# (it saves a copy of every activation map, ~15% of V2's eager latency).
ACTIVATIONS = {
    "relu": "nn.ReLU(inplace=True)",
    "relu6": "nn.ReLU6(inplace=True)",
    "hardswish": "nn.Hardswish(inplace=True)",
    "hardsigmoid": "nn.Hardsigmoid(inplace=True)",
    "swish": "nn.SiLU(inplace=True)",
    "gelu": "nn.GELU()",
    "sigmoid": "nn.Sigmoid()",
    "identity": "nn.Identity()",
}
# Squeeze-excite's own activation and gate, which torchvision leaves out of place.
SE_MODULES = {
    name: module.replace("inplace=True", "") for name, module in ACTIVATIONS.items()
}
FORWARD_DOCS = {
    "logits": "Logits",
    "features": "Pooled features",
    "feature maps": "Feature maps",
}


def torch_pad(conv: Spatial) -> tuple[int, int, int, int] | None:
    """nn.ZeroPad2d's (left, right, top, bottom), or None for Conv2d's own padding."""
    if conv.centred:
        return None
    top, bottom, left, right = conv.pad
    return (left, right, top, bottom)


def shape_comment(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def lower(graph: Graph, ctx: dict[str, Any]) -> dict[str, Any]:
    net = graph.network
    blocks = ctx["blocks"]
    spell_padding(blocks, torch_pad)
    for b in blocks:
        b.x["shape"] = shape_comment(b.shape)
    names = naming.torch_names(net.conventions, net.family)
    timm = names["style"] == "timm"
    folded = net.fold_batch_norm and not timm  # torchvision's classes renamed
    class_names = {
        t.template: (folded and t.folded_class_name) or t.class_name
        for t in BLOCK_TYPES.values()
    }
    # torchvision's layout builds its blocks from the stem's conv-bn-act class.
    stem = next(b for b in blocks if b.role == "stem")
    conv_class = class_names[stem.template]
    templates = ctx["templates"]
    if timm:  # stem and head are attributes of the model, not block calls
        templates = list(dict.fromkeys(b.template for b in blocks if b.role == "stage"))
    helpers = helpers_needed(templates)
    stages: dict[int, list] = {}
    for b in blocks:
        if b.role == "stage":
            stages.setdefault(b.group, []).append(b)
    kinds = {graph.node(n)["kind"] for n in graph.order}
    pooled = graph.network.pool != "none"
    returns = (
        "logits" if net.include_top else ("features" if pooled else "feature maps")
    )
    env = environment()
    return {
        "m": {
            **options(graph, blocks),
            "conv_class": conv_class,
            "names": names,
            "uses_drop_path": "drop_path" in kinds,
            "uses_layer_scale": "scale" in kinds,
            "uses_convnormact": timm and "conv_norm_act" in helpers,
            # timm's conv, batch-norm and activation helpers: its blocks (and
            # blocks that ask for them) are built from them
            "uses_timm_layers": timm or "timm_layers" in helpers,
            "se_modules": SE_MODULES,
            "init": net.conventions.initialization,
            "uses_attention": "attention_init" in helpers,
        },
        "timm": timm,
        "templates": templates,
        "stages": list(stages.values()),
        "class_names": class_names,
        "torch_activations": ACTIVATIONS,
        "forward_doc": FORWARD_DOCS[returns],
        "timm_layers": env.get_template("torch/timm_layers.py.j2").module,
        "drop_path": env.get_template("torch/drop_path.py.j2").module,
        "layer_scale": env.get_template("torch/layer_scale.py.j2").module,
        "init": env.get_template("torch/init.py.j2").module,
        "bn_eps": repr(net.conventions.bn_epsilon),
        "bn_momentum": repr(net.conventions.bn_momentum),
        "input_comment": shape_comment(graph.shape("input")),
    }

"""PyTorch lowering: module classes whose state_dict keys follow the reference
library of the spec's conventions (torchvision's layout, or timm's)."""

from __future__ import annotations

from typing import Any

from ..analysis.cost import block_name
from ..ir.blocks import BLOCK_TYPES
from ..ir.blocks.base import Spatial
from ..ir.graph import Graph
from ..ir.norms import NORMS_BY_KIND
from . import naming
from .render import (
    common_context,
    environment,
    helpers_needed,
    keywords_used,
    options,
    spell_padding,
)

# Activation modules as torchvision and timm build them: in place where PyTorch can
# (it saves a copy of every activation map, ~15% of V2's eager latency).
ACTIVATIONS = {
    "relu": "nn.ReLU(inplace=True)",
    "relu6": "nn.ReLU6(inplace=True)",
    "hardswish": "nn.Hardswish(inplace=True)",
    "hardsigmoid": "nn.Hardsigmoid(inplace=True)",
    "swish": "nn.SiLU(inplace=True)",
    "gelu": "nn.GELU()",
    "gelu_tanh": 'nn.GELU(approximate="tanh")',
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
        templates = list(
            dict.fromkeys(b.template for b in blocks if b.role in ("stage", "neck"))
        )
    helpers = helpers_needed(templates, net.norm, ctx["units"])
    stages: dict[int, list] = {}
    for b in blocks:
        if b.role == "stage":
            stages.setdefault(b.group, []).append(b)
    # What the neck fuses: timm's layout counts stages (its nn.Sequential per item
    # of `stages`), torchvision's the blocks of `features`.
    fused = ctx["neck_inputs"]
    if timm:
        fused = [graph.blocks[i].stage for i in fused]
    kinds = {graph.node(n)["kind"] for n in graph.order}
    pooled = graph.network.pool != "none"
    logits = net.include_top and net.num_classes
    returns = "logits" if logits else ("features" if pooled else "feature maps")
    env = environment()
    shared = options(graph, blocks, ctx["norm"])
    return {
        "m": {
            **shared,
            "conv_class": conv_class,
            "names": names,
            "uses_drop_path": "drop_path" in kinds,
            "uses_layer_scale": "scale" in kinds,
            # timm's ConvNormAct: for the blocks that ask, and a stem built as one
            "uses_convnormact": timm
            and ("conv_norm_act" in helpers or names["stem"] == "conv_norm_act"),
            # timm's conv, batch-norm and activation helpers: its blocks (and
            # blocks that ask for them) are built from them
            "uses_timm_layers": timm or "timm_layers" in helpers,
            "se_modules": SE_MODULES,
            # the piece of an attention unit built in place of squeeze-excite, which
            # says where its ops sit (templates/torch/squeeze_excite.py.j2's paths)
            "se_unit": shared["se"]
            and shared["se"].unit
            and env.get_template(f"torch/layers/{shared['se'].unit}.py.j2").module,
            "init": net.conventions.initialization,
            "uses_attention": "attention_init" in helpers,
            "uses_norm_layer": "norm_layer" in helpers,
            "bn_eps": repr(net.conventions.bn_epsilon),
            "bn_momentum": repr(net.conventions.bn_momentum),
            "uses_cond_conv_init": "cond_conv_init" in helpers,
        },
        "timm": timm,
        # A norm that activates (EvoNorm-S0) is every activation timm's layout
        # builds from names: no table of them.
        "activations": [] if timm and shared["norm_activates"] else ctx["activations"],
        "templates": templates,
        "stages": list(stages.values()),
        "fused": fused,
        "class_names": class_names,
        "torch_activations": ACTIVATIONS,
        "forward_doc": FORWARD_DOCS[returns],
        "timm_layers": env.get_template("torch/timm_layers.py.j2").module,
        "drop_path": env.get_template("torch/drop_path.py.j2").module,
        "layer_scale": env.get_template("torch/layer_scale.py.j2").module,
        "init": env.get_template("torch/init.py.j2").module,
        "input_comment": shape_comment(graph.shape("input")),
    }


# ------------------------------------------------------------- state_dict keys

# The tensors a parametric op's module holds, in state_dict order (a conv without
# bias holds the first only; see `weights.param_ops` for how many there are).
TENSOR_NAMES = {
    "conv": ("weight", "bias"),
    "dwconv": ("weight", "bias"),
    "condconv": ("weight",),  # the experts' kernels, flattened (no bias)
    "dense": ("weight", "bias"),
    "scale": ("gamma",),
    **{kind: norm.tensor_names for kind, norm in NORMS_BY_KIND.items()},
}
# BatchNorm's step counter: a buffer in the state_dict after its statistics, with no
# effect on outputs (unless momentum is None) and no counterpart in Keras.
BN_COUNTER = "num_batches_tracked"


def module_paths(graph: Graph) -> list[str]:
    """The module path of each parametric op of the graph, in the IR's order, as the
    generated PyTorch model names it (its state_dict keys are `path.weight`, ...).

    Each block template's `paths` macro (templates/torch/blocks/) says where its
    ops sit inside the block's module, next to the code that builds it; the model's
    own attributes (stem, stages, head, classifier) are named here.
    """
    ctx = common_context(graph, "torch")
    ctx.update(lower(graph, ctx))
    used = keywords_used(ctx["blocks"], ctx["macros"])
    timm = ctx["timm"]
    inside: dict[int, dict[str, str]] = {}
    for b in ctx["blocks"]:
        if b.template in ctx["macros"]:
            lines = str(ctx["macros"][b.template].paths(ctx["m"], used[b.template], b))
            inside[b.index] = dict(line.split() for line in lines.splitlines() if line)
    found = []
    for node_id in graph.parametric():
        block = graph.blocks[graph.node(node_id)["block"]]
        part = node_id.removeprefix(block_name(graph, block.index) + ".")
        view = ctx["blocks"][block.index]
        if block.role == "classifier":
            found.append(_classifier_path(view.p, part, timm, ctx["m"]["fold_bn"]))
        elif timm and block.role in ("stem", "head"):
            found.append(_timm_stem_head(ctx["m"]["names"], block.role)[part == "bn"])
        elif timm and block.role == "neck":  # MobileNetV5's fusion neck
            path = _part_path(inside[block.index], part, graph.node(node_id))
            found.append(f"msfa.{path}")
        else:
            where = f"blocks.{view.group}.{view.position}" if timm else "features"
            where = where if timm else f"{where}.{block.index}"
            path = _part_path(inside[block.index], part, graph.node(node_id))
            found.append(f"{where}.{path}")
    return found


def _timm_stem_head(names, role: str) -> tuple[str, str]:
    """(conv, norm) paths of timm's stem or head: attributes of the model, or the
    stem's ConvNormAct `conv_stem` holding both (MobileNetV5)."""
    if role == "stem" and names["stem"] == "conv_norm_act":
        return ("conv_stem.conv", "conv_stem.bn")
    return {"stem": ("conv_stem", "bn1"), "head": ("conv_head", "bn2")}[role]


def _part_path(paths: dict[str, str], part: str, node: dict) -> str:
    """The path of IR op `part` inside its block's module: the block template's, or
    for a mixed conv's group (`<conv>.<i>`, mbcompile/ir/layers/mixed_conv.py) the
    i-th conv of the MixedConv2d standing where the conv would (timm's
    `conv_pw.0`; templates/torch/layers/mixed_conv.py.j2)."""
    attrs = node["attrs"]
    if attrs.get("unit") == "mixed_conv" and "part" in attrs:
        conv = part.rpartition(".")[0]
        return f"{paths[conv]}.{attrs['part'][0]}"
    return paths[part]


def _classifier_path(p, part: str, timm: bool, fold_bn: bool) -> str:
    """timm's conv_head / norm_head / classifier, or the index in torchvision's
    `classifier` Sequential: [hidden, [norm], act, [flatten], dropout], logits."""
    if timm:
        return {"hidden.conv": "conv_head", "hidden.bn": "norm_head"}.get(
            part, "classifier"
        )
    if part.startswith("hidden"):
        return f"classifier.{int(part.endswith('bn'))}"
    norm = p.hidden_norm and not (fold_bn and p.form == "conv_head")
    flatten = p.form == "conv_head"
    return f"classifier.{3 + norm + flatten if p.hidden_c else 1}"


def state_dict_keys(graph: Graph) -> list[tuple[str, ...]]:
    """The state_dict keys of each parametric op's tensors, in the IR's order (the
    generated model's `state_dict()` without BatchNorm's step counters)."""
    from .weights import param_ops

    return [
        tuple(
            f"{path}.{name}" for name in TENSOR_NAMES[op.kind][: len(op.torch_shapes)]
        )
        for op, path in zip(param_ops(graph), module_paths(graph), strict=True)
    ]

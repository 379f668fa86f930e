"""Global Context attention in place of squeeze-excite (`squeeze_excite: {type:
global_context}`, mbcompile/ir/layers/global_context.py) on a tiny network: its ops,
shapes and costs by hand, its parameters and state_dict keys against timm's own
GlobalContext module built here, and the generated PyTorch and Keras models against
each other (random weights, ported by IR order), in training and folded form.

gc_efficientnetv2_rw_t against timm (counts, keys, strict load, logits in both
frameworks) is tests/test_timm.py's representative.
"""

from __future__ import annotations

import pytest

from crosscheck import outputs, worst_difference
from helpers import (
    TOLERANCE,
    build,
    difference,
    load_torch_groups,
    random_images,
    randomize_torch,
    run_torch,
    torch_param_modules,
    torch_tensors,
)
from mbcompile import compiler
from mbcompile.backends.torch import state_dict_keys
from mbcompile.backends.weights import fold_batch_norm, param_ops
from reference_models import import_timm

# A 16-channel stem at 8x8, then two inverted residuals of 16 channels expanded 4x to
# 64, each with Global Context a quarter of its input (16) wide: 4 channels. The
# second has SiLU where the first has ReLU, so each block passes its activation.
TINY = """\
name: tiny_gc
family: v2
resolution: 16
num_classes: 10
conventions: timm
squeeze_excite: {type: global_context, act: block, gate: sigmoid, width_from: input}
stem: {c: 16, k: 3, s: 2, act: relu}
stages:
  - {block: inverted_residual, t: 4, c: 16, se: true, act: relu}
  - {block: inverted_residual, t: 4, c: 16, se: true, act: swish}
head: {conv: {c: 32, act: relu}}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny_gc.yaml"
    path.write_text(TINY)
    return path


def test_ops_shapes_and_costs_by_hand(spec):
    """On 64 channels at 8x8 (64 positions), squeeze width 4: conv_attn 64 -> 1 with
    bias (65 parameters, 64 x 64 MACs), the attention pooling (64 x 64 MACs, a
    softmax over 64 positions), fc1 64 -> 4 with bias (260, 256), the layer norm
    (8), fc2 4 -> 64 with bias (320, 256), the sigmoid gate and its multiply."""
    _, graph = compiler.load_and_expand(spec, [])
    report = compiler.cost_report(graph)
    prefix = "features.1.se."
    costs = {
        n.name.removeprefix(prefix): (n.kind, n.shape, n.params, n.macs, n.act_ops)
        for n in report.layers
        if n.name.startswith(prefix)
    }
    assert costs == {
        "conv_attn": ("conv", (1, 8, 8), 65, 64 * 64, 0),
        "attn_pool": ("attention_pool", (64, 1, 1), 0, 64 * 64, 64),
        "mlp_scale.fc1": ("conv", (4, 1, 1), 64 * 4 + 4, 64 * 4, 0),
        "mlp_scale.norm": ("layer_norm", (4, 1, 1), 8, 0, 0),
        "mlp_scale.act": ("act", (4, 1, 1), 0, 0, 4),
        "mlp_scale.fc2": ("conv", (64, 1, 1), 4 * 64 + 64, 4 * 64, 0),
        "gate": ("act", (64, 1, 1), 0, 0, 64),
        "mul": ("mul", (64, 8, 8), 0, 0, 0),
    }
    assert graph.node(f"{prefix}mlp_scale.act")["attrs"]["fn"] == "relu"
    assert graph.node("features.2.se.mlp_scale.act")["attrs"]["fn"] == "swish"
    # the depthwise conv and its projection still pair up past the attention
    assert [s.block for s in report.separable] == ["features.1", "features.2"]


def test_parameters_and_keys_are_timms_global_context(spec):
    """timm's GlobalContext(64, rd_ratio=1/16) as its EfficientNet builder makes it
    for se_ratio 0.25 of the input at t 4: the same parameter count, layer norm
    epsilon and, under the block's `se`, the same state_dict keys in the same
    order."""
    import torch

    timm = import_timm()
    module = timm.layers.GlobalContext(64, rd_ratio=0.25 / 4, act_layer=torch.nn.SiLU)
    theirs = [f"blocks.0.0.se.{key}" for key in module.state_dict()]
    _, graph = compiler.load_and_expand(spec, [])
    keys = [key for op in state_dict_keys(graph) for key in op]
    assert [key for key in keys if key.startswith("blocks.0.0.se.")] == theirs
    ours = sum(
        op.params
        for op in compiler.cost_report(graph).layers
        if op.name.startswith("features.1.se.")
    )
    assert ours == sum(p.numel() for p in module.parameters()) == 653
    norm = graph.node("features.1.se.mlp_scale.norm")["attrs"]
    assert norm["eps"] == module.mlp_scale.norm.eps  # timm's LayerNorm2d: 1e-6


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        # keras.applications' names, one activation, the hard-sigmoid gate
        ("conventions=keras_applications", "squeeze_excite.gate=hardsigmoid"),
    ],
    ids=["timm", "keras_applications"],
)
def test_keras_computes_what_pytorch_computes(
    spec, tmp_path, overrides, worst_differences
):
    _, got_torch, got_keras = outputs(spec, tmp_path, overrides)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append((f"tiny global context {'/'.join(overrides)}", diff))
    assert diff <= TOLERANCE


def test_folding_keeps_the_layer_norm(spec, tmp_path, worst_differences):
    """`--fold-bn` folds the blocks' batch norms; the attention's layer norm is not
    one and stays, so the folded model computes the training form's logits."""
    _, graph, model = build(spec, "torch", tmp_path)
    randomize_torch(model, random_images(graph, seed=5), seed=5)
    images = random_images(graph, seed=6)
    fold = ["fold_batch_norm=true"]
    _, folded_graph, folded = build(spec, "torch", tmp_path, fold)
    kinds = [op.kind for op in param_ops(folded_graph)]
    assert "bn" not in kinds and kinds.count("layer_norm") == 2
    groups = [torch_tensors(m) for m in torch_param_modules(model)]
    ops = param_ops(folded_graph)
    load_torch_groups(folded, fold_batch_norm(param_ops(graph), ops, groups))
    diff = difference(run_torch(model, images), run_torch(folded, images))
    worst_differences.append(("tiny global context folded torch", diff))
    assert diff <= TOLERANCE

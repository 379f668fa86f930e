"""The layer units (mbcompile/ir/layers/): mixed convolutions (MixConv), CondConv
and anti-aliased downsampling, against timm's models that use them and by hand.

- Against timm, one model per unit at a small resolution in the default run
  (mixnet_s, efficientnet_cc_b0_4e, mobilenetv4_conv_aa_medium, efficientnet_blur_b0),
  every other spec of these units with `-m slow`: trainable parameters, batch-norm
  statistics and MACs equal timm's (tests/reference_models.count_macs, which hooks
  timm's CondConv2d and BlurPool2d); timm's state_dict with random weights and
  measured batch-norm statistics loads strictly, keys in timm's order; logits agree
  within helpers.TOLERANCE in PyTorch, and in Keras given the same weights by
  `mbcompile weights`.
- Deliberately broken variants (a mixed conv split by another rule, kernels in
  another order, the other anti-aliasing pooling, twice the experts) are caught.
- By hand: channel splits, costs, weight layouts, folding, IR placement, refusals.
- Under other conventions: examples/layer_units.yaml (torchvision's) is
  cross-checked by test_examples.py; here also under keras.applications' and in its
  folded form.
"""

from __future__ import annotations

import numpy as np
import pytest

from crosscheck import outputs, worst_difference
from helpers import (
    ROOT,
    SPECS,
    TOLERANCE,
    build,
    difference,
    keras_layers_in_ir_order,
    load_torch_groups,
    random_images,
    randomize_torch,
    run_cli,
    run_keras,
    run_torch,
    torch_param_modules,
    torch_tensors,
)
from mbcompile import compiler
from mbcompile.backends.weights import (
    fold_batch_norm,
    keras_to_torch,
    param_ops,
    torch_to_keras,
)
from mbcompile.errors import SpecError
from mbcompile.ir.layers import mixed_conv
from reference_models import count_macs, create, parameter_counts

LAYER_UNITS = ROOT / "examples" / "layer_units.yaml"
# One model per unit in the default run, at this resolution (odd sizes on the way:
# 72 -> 36 -> 18 -> 9 -> 5 -> 3, so pools and SAME padding meet both cases).
RESOLUTION = 72
DEFAULT = [
    "mixnet_s",  # MixConv: mixed depthwise kernels, split 1x1 convs
    "efficientnet_cc_b0_4e",  # CondConv
    "mobilenetv4_conv_aa_medium",  # anti-aliasing: 2x2 average pooling
    "efficientnet_blur_b0",  # anti-aliasing: BlurPool
]
SLOW = [
    "mixnet_m",
    "mixnet_l",
    "mixnet_xl",
    "mixnet_xxl",
    "tf_mixnet_s",
    "tf_mixnet_m",
    "tf_mixnet_l",
    "efficientnet_cc_b0_8e",
    "efficientnet_cc_b1_8e",
    "tf_efficientnet_cc_b0_4e",
    "tf_efficientnet_cc_b0_8e",
    "tf_efficientnet_cc_b1_8e",
    "mobilenetv4_conv_blur_medium",
    "mobilenetv4_conv_aa_large",
]


def spec_path(name: str):
    return SPECS / "timm" / f"{name}.yaml"


def counts(name: str, resolution: int, overrides=()) -> tuple[tuple, tuple]:
    """(ours, timm's): trainable parameters, batch-norm statistics, MACs."""
    _, graph = compiler.load_and_expand(
        spec_path(name), [*overrides, f"resolution={resolution}"]
    )
    report = compiler.cost_report(graph)
    ours = (report.trainable_params, report.non_trainable_params, report.macs)
    reference = create(name)
    return ours, (*parameter_counts(reference), count_macs(reference, resolution))


def timm_logits(name: str, resolution: int, tmp_path, overrides=(), keras=True):
    """(torch difference, keras difference or None) from timm's logits: timm's
    state_dict (random weights, batch-norm statistics measured on random images)
    loaded strictly into the generated PyTorch model (keys in timm's order
    asserted), and converted for the generated Keras model by `mbcompile weights`."""
    import torch

    at = [*overrides, f"resolution={resolution}"]
    reference = create(name)
    rng = np.random.default_rng(7)
    calibration = rng.standard_normal((4, 3, resolution, resolution))
    randomize_torch(reference, calibration.astype(np.float32), seed=7)
    state = reference.state_dict()
    _, graph, ours = build(spec_path(name), "torch", tmp_path, at)
    assert list(ours.state_dict()) == list(state)  # timm's keys in timm's order
    ours.load_state_dict(state, strict=True)
    images = random_images(graph, seed=1)
    want = run_torch(reference, images)
    torch_diff = difference(want, run_torch(ours, images))
    if not keras:
        return torch_diff, None
    weights, keras_weights = tmp_path / "timm.pt", tmp_path / "timm.weights.h5"
    torch.save(state, weights)
    argv = ["weights", spec_path(name), *(f"--set={o}" for o in at)]
    code, _, err = run_cli([*argv, "--from", weights, "--to", keras_weights])
    assert code == 0, err
    _, _, keras_model = build(spec_path(name), "keras", tmp_path, at)
    keras_model.load_weights(keras_weights)
    return torch_diff, difference(want, run_keras(keras_model, images))


def check_against_timm(name, resolution, tmp_path, worst_differences, figures):
    ours, theirs = counts(name, resolution)
    assert ours == theirs, (ours, theirs)
    torch_diff, keras_diff = timm_logits(name, resolution, tmp_path)
    worst_differences.append((f"timm {name} r{resolution} torch", torch_diff))
    worst_differences.append((f"timm {name} r{resolution} keras", keras_diff))
    figures.append(
        f"timm units: {name} r{resolution}: params {ours[0]:,}, BN statistics "
        f"{ours[1]:,}, MACs {ours[2]:,} (= timm's); logits torch {torch_diff:.2g}, "
        f"keras {keras_diff:.2g}"
    )
    assert torch_diff <= TOLERANCE and keras_diff <= TOLERANCE


@pytest.mark.parametrize("name", DEFAULT)
def test_unit_models_equal_timm(name, tmp_path, worst_differences, figures):
    check_against_timm(name, RESOLUTION, tmp_path, worst_differences, figures)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_every_unit_model_equals_timm(name, tmp_path, worst_differences, figures):
    check_against_timm(name, 120, tmp_path, worst_differences, figures)


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFAULT + SLOW)
def test_unit_model_counts_at_timms_resolution(name):
    _, graph = compiler.load_and_expand(spec_path(name))
    resolution = graph.network.resolution
    assert resolution == create(name).pretrained_cfg["input_size"][-1]
    ours, theirs = counts(name, resolution)
    assert ours == theirs, (ours, theirs)


# ------------------------------------------------------------ broken variants


def test_a_mixed_conv_split_by_another_rule_is_caught(tmp_path, monkeypatch):
    """The MixConv paper's exponential partition (each group half the previous
    one's channels) in place of timm's equal one: counts differ from timm's, and
    timm's weights do not fit the IR's layout."""
    import torch

    def exponential(channels: int, groups: int) -> tuple[int, ...]:
        shares = [
            channels * 2 ** (groups - 1 - i) // (2**groups - 1) for i in range(groups)
        ]
        shares[0] += channels - sum(shares)
        return tuple(shares)

    monkeypatch.setattr(mixed_conv, "split_channels", exponential)
    ours, theirs = counts("mixnet_s", RESOLUTION)
    assert ours != theirs
    weights = tmp_path / "timm.pt"
    torch.save(create("mixnet_s").state_dict(), weights)
    argv = ["weights", spec_path("mixnet_s"), "--from", weights]
    code, _, err = run_cli([*argv, "--to", tmp_path / "timm.weights.h5"])
    assert code == 2 and "conv_pw.0.weight" in err, err


def test_mixed_kernels_in_another_order_are_caught(tmp_path):
    swapped = ["stages.2.0.k.0=7", "stages.2.0.k.2=3"]  # [7, 5, 3] for [3, 5, 7]
    with pytest.raises(
        RuntimeError, match=r"size mismatch for blocks\.2\.0\.conv_dw\.0"
    ):
        timm_logits("mixnet_s", RESOLUTION, tmp_path, swapped, keras=False)


def test_the_other_anti_aliasing_pooling_is_caught(tmp_path):
    """Average pooling in place of timm's blur: the same weights, other logits."""
    ours, theirs = counts("efficientnet_blur_b0", RESOLUTION, ["anti_aliasing=avg"])
    assert ours[:2] == theirs[:2]
    torch_diff, _ = timm_logits(
        "efficientnet_blur_b0", RESOLUTION, tmp_path, ["anti_aliasing=avg"], False
    )
    assert torch_diff > 100 * TOLERANCE


def test_twice_the_experts_are_caught():
    ours, theirs = counts("efficientnet_cc_b0_4e", RESOLUTION, ["experts_multiplier=2"])
    assert ours[0] > theirs[0]


# ------------------------------------------------------------------ by hand


TINY = """\
name: tiny
family: v2
resolution: 16
num_classes: 10
conventions: timm
include_top: false
stem: {c: 16, k: 3, s: 2, act: relu}
head: {}
stages:
  - %s
"""


def graph_of(tmp_path, row: str, overrides=()):
    """The graph of a stem (16 channels at 8x8) and one stage-table `row`."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY % row)
    return compiler.load_and_expand(path, overrides)[1]


def block_costs(graph, index: int = 1) -> dict[str, tuple[str, int, int]]:
    """Node -> (kind, params, MACs) of block `index` (1: the first after the stem)."""
    report = compiler.cost_report(graph)
    prefix = f"features.{index}."
    return {
        n.name.removeprefix(prefix): (n.kind, n.params, n.macs)
        for n in report.layers
        if n.block == index
    }


def test_split_channels_is_timms_rule():
    # timm's _split_channels: equal shares, the remainder to the first group.
    assert mixed_conv.split_channels(64, 3) == (22, 21, 21)
    assert mixed_conv.split_channels(56, 3) == (20, 18, 18)
    assert mixed_conv.split_channels(200, 4) == (50, 50, 50, 50)
    assert mixed_conv.split_channels(10, 3) == (4, 3, 3)


MIXED_ROW = (
    "{block: inverted_residual, t: 3.5, c: 16, k: [3, 5, 7], expand_k: [1, 1], "
    "project_k: [1, 1]}"
)
COND_ROW = "{block: cond_conv_residual, experts: 3, t: 2, c: 16, k: 3}"


def test_mixed_conv_ops_and_costs_by_hand(tmp_path):
    """16 channels at 8x8, t 3.5 -> 56 (make_divisible(56, 8)): the expansion in two
    groups 8 -> 28, 8 -> 28; the depthwise conv in three, 20 at 3x3, 18 at 5x5, 18
    at 7x7; the projection in two, 28 -> 8, 28 -> 8."""
    graph = graph_of(tmp_path, MIXED_ROW)
    costs = block_costs(graph)
    convs = {name: c for name, c in costs.items() if c[0] in ("conv", "dwconv")}
    assert convs == {
        "expand.conv.0": ("conv", 8 * 28, 64 * 8 * 28),
        "expand.conv.1": ("conv", 8 * 28, 64 * 8 * 28),
        "dw.conv.0": ("dwconv", 20 * 9, 64 * 20 * 9),
        "dw.conv.1": ("dwconv", 18 * 25, 64 * 18 * 25),
        "dw.conv.2": ("dwconv", 18 * 49, 64 * 18 * 49),
        "project.conv.0": ("conv", 28 * 8, 64 * 28 * 8),
        "project.conv.1": ("conv", 28 * 8, 64 * 28 * 8),
    }
    slices = [graph.node(f"features.1.dw.split.{i}")["attrs"] for i in range(3)]
    assert [(a["start"], a["size"]) for a in slices] == [(0, 20), (20, 18), (38, 18)]
    assert graph.node("features.1.dw.conv.2")["attrs"]["padding"] == (3, 3)
    assert graph.shape("features.1.dw.concat") == (56, 8, 8)
    # timm's keys conv_dw.0.weight, conv_dw.1.weight, ...: the groups' ops in order
    ops = [op.name for op in param_ops(graph) if op.name.startswith("features.1.dw")]
    assert ops == [*(f"features.1.dw.conv.{i}" for i in range(3)), "features.1.dw.bn"]


def test_a_strided_mixed_conv_pads_each_group_for_its_kernel(tmp_path):
    """TensorFlow's SAME at stride 2 on 8x8 pads k - 2 in all: k = 3 (0, 1), k = 5
    (1, 2)."""
    row = "{block: inverted_residual, t: 2, c: 16, s: 2, k: [3, 5]}"
    graph = graph_of(tmp_path, row, ["conventions.stride2_padding=same"])
    pads = [graph.node(f"features.1.dw.pad.{i}")["attrs"]["pad"] for i in (0, 1)]
    assert pads == [(0, 1, 0, 1), (1, 2, 1, 2)]


def test_cond_conv_ops_and_costs_by_hand(tmp_path):
    """16 channels at 8x8, t 2 -> 32, 3 experts: each CondConv holds 3 kernels and
    costs its conv (64 positions x kernel) plus mixing its kernel (3 x kernel)."""
    graph = graph_of(tmp_path, COND_ROW)
    costs = block_costs(graph)
    expand, dw, project = 32 * 16, 32 * 9, 16 * 32  # one kernel's weights
    assert costs["routing.fc"] == ("dense", 16 * 3 + 3, 16 * 3)
    assert costs["expand.conv"] == ("condconv", 3 * expand, 67 * expand)
    assert costs["dw.conv"] == ("condconv", 3 * dw, 67 * dw)
    assert costs["project.conv"] == ("condconv", 3 * project, 67 * project)
    # The routing fc runs first but timm stores it last: its weights come last.
    block = [op.name for op in param_ops(graph) if op.name.startswith("features.1.")]
    assert [name.removeprefix("features.1.") for name in block] == [
        "expand.conv", "expand.bn", "dw.conv", "dw.bn",
        "project.conv", "project.bn", "routing.fc",
    ]  # fmt: skip
    doubled = graph_of(tmp_path, COND_ROW, ["experts_multiplier=2"])
    assert doubled.node("features.1.dw.conv")["attrs"]["experts"] == 6


def test_cond_conv_weights_are_timms_in_both_frameworks(tmp_path):
    """timm's CondConv2d weight, (experts, out * in / groups * k * k), is also the
    kernel of the Keras Dense layer that mixes it: no conversion."""
    graph = graph_of(tmp_path, COND_ROW)
    op = next(op for op in param_ops(graph) if op.name == "features.1.dw.conv")
    assert op.torch_shapes == op.keras_shapes == ((3, 32 * 9),)
    weight = np.arange(3 * 32 * 9, dtype=np.float32).reshape(3, 32 * 9)
    assert np.array_equal(torch_to_keras(op, [weight])[0], weight)
    assert np.array_equal(keras_to_torch(op, [weight])[0], weight)


@pytest.mark.parametrize(
    "pool,resolution,size",
    [("avg", 16, 4), ("avg", 14, 3), ("blur", 14, 4)],
)
def test_anti_aliasing_costs_and_sizes_by_hand(tmp_path, pool, resolution, size):
    """A stride-2 depthwise-separable row on 8x8 or 7x7: the depthwise conv at
    stride 1, its batch norm and activation, then the pooling. Average pooling 2x2
    floors (7 -> 3) and counts one operation per input element; the blur pads by 1
    (7 -> 4) and its 3x3 taps are 9 MACs per output element."""
    row = "{block: depthwise_separable, c: 24, s: 2, k: 3}"
    graph = graph_of(
        tmp_path, row, [f"anti_aliasing={pool}", f"resolution={resolution}"]
    )
    kinds = [graph.node(n)["kind"] for n in graph.blocks[1].nodes]
    assert kinds[:4] == ["dwconv", "bn", "act", f"{pool}pool"], kinds
    conv = graph.node("features.1.dw.conv")["attrs"]
    assert (conv["stride"], conv["padding"]) == (1, (1, 1))
    assert graph.blocks[1].out_shape == (24, size, size)
    layer = next(
        n for n in compiler.cost_report(graph).layers if n.name == "features.1.dw.aa"
    )
    side = resolution // 2
    if pool == "avg":
        assert (layer.macs, layer.pool_ops) == (0, 16 * side * side)
    else:
        assert (layer.macs, layer.pool_ops) == (9 * 16 * size * size, 0)


def test_anti_aliasing_spares_the_stem_and_attention():
    """timm gives the anti-aliasing layer to blocks only: the stem and Mobile MQA's
    strided depthwise convs of keys and values keep their stride."""
    _, graph = compiler.load_and_expand(
        SPECS / "timm" / "mobilenetv4_hybrid_medium.yaml",
        ["anti_aliasing=avg", "resolution=128"],
    )
    assert graph.node("features.0.conv")["attrs"]["stride"] == 2
    kv = [n for n in graph.order if n.endswith("key.down.conv")]
    assert kv and all(graph.node(n)["attrs"]["stride"] == 2 for n in kv)
    pooled = [n.split(".")[-2] for n in graph.order if n.endswith(".aa")]
    # the fused block's conv and the middle depthwise conv of each strided UIB
    assert pooled == ["expand", "dw_mid", "dw_mid", "dw_mid"]


def test_folding_a_mixed_conv_by_hand(tmp_path):
    """Each group's conv takes its own channels' share of the batch norm after the
    concat: W' = W * scale, b' = beta - mean * scale, scale = gamma / sqrt(var +
    eps)."""
    row = "{block: inverted_residual, t: 2, c: 16, k: [3, 5]}"
    trained = param_ops(graph_of(tmp_path, row))
    folded = param_ops(graph_of(tmp_path, row, ["fold_batch_norm=true"]))
    rng = np.random.default_rng(3)
    tensors = [
        [rng.uniform(0.5, 1.5, shape).astype(np.float32) for shape in op.torch_shapes]
        for op in trained
    ]
    result = fold_batch_norm(trained, folded, tensors)
    out = dict(zip((op.name for op in folded), result, strict=True))
    by_name = dict(zip((op.name for op in trained), tensors, strict=True))
    gamma, beta, mean, var = by_name["features.1.dw.bn"]
    scale = gamma / np.sqrt(var + 1e-5)  # timm's epsilon
    for group, channels in ((0, slice(0, 16)), (1, slice(16, 32))):
        weight, bias = out[f"features.1.dw.conv.{group}"]
        original = by_name[f"features.1.dw.conv.{group}"][0]
        assert np.allclose(weight, original * scale[channels].reshape(-1, 1, 1, 1))
        assert np.allclose(bias, beta[channels] - mean[channels] * scale[channels])


@pytest.mark.parametrize(
    "row,message",
    [
        ("{block: inverted_residual, t: 2, c: 16, k: [3]}", "takes 2 to 8 kernels"),
        ("{block: inverted_residual, t: 2, c: 16, k: [3, 4]}", "an odd size"),
        (
            "{block: inverted_residual, t: 2, c: 16, expand_k: 3}",
            "expand_k: the expansion and projection are 1x1 convs",
        ),
        ("{block: cond_conv_residual, t: 2, c: 16}", "experts"),
    ],
)
def test_bad_unit_rows_are_located_errors(tmp_path, row, message):
    with pytest.raises(SpecError) as caught:
        graph_of(tmp_path, row)
    text = str(caught.value)
    assert message in text and "tiny.yaml:10: stages[0]" in text, text
    assert len(text.splitlines()) == 1


def test_cond_conv_rows_refuse_anti_aliasing(tmp_path):
    row = "{block: cond_conv_residual, experts: 2, t: 2, c: 16, s: 2}"
    with pytest.raises(SpecError, match="cannot downsample by anti_aliasing"):
        graph_of(tmp_path, row, ["anti_aliasing=avg"])


# ----------------------------------------------------- under other conventions


def test_units_under_keras_applications_conventions(tmp_path, worst_differences):
    overrides = ["conventions=keras_applications", "resolution=65"]
    _, got_torch, got_keras = outputs(LAYER_UNITS, tmp_path, overrides)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append(("examples/layer_units keras_applications", diff))
    assert diff <= TOLERANCE


def test_folded_units_compute_the_training_form(tmp_path, worst_differences):
    """Batch norms after mixed convs fold into their groups; those after CondConvs
    stay (folding them would need a bias outside the experts' mix)."""
    _, graph, model = build(LAYER_UNITS, "torch", tmp_path)
    randomize_torch(model, random_images(graph, seed=11), seed=11)
    images = random_images(graph, seed=2)
    reference = run_torch(model, images)
    fold = ["fold_batch_norm=true"]
    _, folded_graph, folded_torch = build(LAYER_UNITS, "torch", tmp_path, fold)
    _, _, folded_keras = build(LAYER_UNITS, "keras", tmp_path, fold)
    kept = [op for op in param_ops(folded_graph) if op.kind == "bn"]
    assert len(kept) == 6  # the three of each of the two CondConv blocks
    assert all(
        folded_graph.node(folded_graph.inputs(op.name)[0])["kind"] == "condconv"
        for op in kept
    )
    groups = [torch_tensors(m) for m in torch_param_modules(model)]
    ops = param_ops(folded_graph)
    folded = fold_batch_norm(param_ops(graph), ops, groups)
    load_torch_groups(folded_torch, folded)
    layers = keras_layers_in_ir_order(folded_graph, folded_keras)
    for op, layer, arrays in zip(ops, layers, folded, strict=True):
        layer.set_weights(torch_to_keras(op, arrays))
    for framework, got in (
        ("torch", run_torch(folded_torch, images)),
        ("keras", run_keras(folded_keras, images)),
    ):
        diff = difference(reference, got)
        worst_differences.append((f"examples/layer_units folded {framework}", diff))
        assert diff <= TOLERANCE


# ------------------------------------------------------------ initialisation


def test_cond_conv_starts_as_timms(tmp_path, figures):
    """Every expert kernel N(0, sqrt(2 / fan_out)), fan_out = k * k * out / groups,
    and the routing layer U(+-1 / sqrt(in + experts)), as timm's _init_weight_goog,
    in timm's model and in both generated ones (seeded). A sample's standard
    deviation is held within six standard errors of the expected one,
    sigma * sqrt((kurtosis - 1) / 4n) (kurtosis 3 for a normal, 1.8 for a uniform
    distribution); the routing weights within their bound."""
    import keras
    import torch

    def ratio(values, sigma: float, kurtosis: float) -> float:
        values = np.asarray(values)
        bound = 6 * np.sqrt((kurtosis - 1) / (4 * values.size))
        found = values.std() / sigma
        assert abs(found - 1) <= bound, (found, bound)
        return abs(found - 1)

    def modules(model, kind: str) -> list:
        return [m for m in model.modules() if type(m).__name__ == kind]

    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    name = "efficientnet_cc_b0_4e"
    _, graph, ours = build(spec_path(name), "torch", tmp_path)
    _, _, keras_model = build(spec_path(name), "keras", tmp_path)
    theirs = create(name)
    ops = param_ops(graph)
    names = (op.name for op in ops)
    layers = dict(zip(names, keras_layers_in_ir_order(graph, keras_model), strict=True))
    cond = [op for op in ops if op.kind == "condconv"]
    pairs = zip(modules(ours, "CondConv2d"), modules(theirs, "CondConv2d"), strict=True)
    worst = 0.0
    for op, (mine, timm_conv) in zip(cond, pairs, strict=True):
        a = op.attrs
        sigma = np.sqrt(2.0 / (a["kernel"] ** 2 * a["out_c"] // a["groups"]))
        for values in (
            mine.weight.detach(),
            timm_conv.weight.detach(),
            layers[op.name].get_weights()[0],
        ):
            worst = max(worst, ratio(values, sigma, 3.0))
    routing = [op for op in ops if op.name.endswith("routing.fc")]
    blocks = zip(
        modules(ours, "CondConvResidual"),
        modules(theirs, "CondConvResidual"),
        strict=True,
    )
    for op, (mine, timm_block) in zip(routing, blocks, strict=True):
        bound = (op.attrs["in_f"] + op.attrs["out_f"]) ** -0.5
        for values in (
            mine.routing_fn.weight.detach(),
            timm_block.routing_fn.weight.detach(),
            layers[op.name].get_weights()[0],
        ):
            values = np.asarray(values)
            assert np.abs(values).max() <= bound
            worst = max(worst, ratio(values, bound / np.sqrt(3), 1.8))
    figures.append(
        f"init: {name}: {len(cond)} CondConvs and {len(routing)} routing layers as "
        f"timm's, worst |std ratio - 1| {worst:.3f}"
    )

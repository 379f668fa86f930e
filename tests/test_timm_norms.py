"""Norms other than batch norm and grouped convolutions by group size.

- Against timm itself (as tests/test_timm.py does for batch-norm models): the spec
  named as a timm model has timm's parameters and MACs, timm's state_dict (random
  weights, every norm's vectors random) loads strictly with keys in timm's order,
  and both generated models (Keras given the weights by `mbcompile weights`) compute
  timm's logits. The default run takes one model per norm (GroupNorm, LayerNorm,
  EvoNorm-S0) and one with grouped convs, at 64x64; `-m slow` takes every spec the
  two features unlock. A deliberately wrong spec must fail the same comparison.
- Each norm's weight layout and costs, counted by hand.
- Every norm in both backends over every row type that takes a group size.
- What the norms cannot do is refused in one located line (exit code 2); what
  they can, TorchScript and a .keras file keep.
"""

from __future__ import annotations

import numpy as np
import pytest

from crosscheck import outputs, worst_difference
from helpers import (
    ROOT,
    TOLERANCE,
    build,
    difference,
    is_other_keras_norm,
    is_other_norm,
    port_torch_to_keras,
    random_images,
    randomize_torch,
    run_cli,
    run_keras,
    run_torch,
    torch_tensors_live,
)
from mbcompile import cli, compiler
from mbcompile.analysis.cost import node_cost
from mbcompile.backends.weights import param_ops, torch_to_keras
from mbcompile.frontend import conventions
from mbcompile.ir.graph import Graph, IRError
from mbcompile.ir.norms import NORM_MODELS, NORM_TYPES, Norm
from reference_models import count_macs, create, parameter_counts

TIMM = ROOT / "specs" / "timm"
# The default run: one model per norm, one with grouped convs (timm's `gs`).
DEFAULT = [
    "test_efficientnet_gn",
    "test_efficientnet_ln",
    "test_efficientnet_evos",
    "mobilenet_edgetpu_v2_xs",
]
# Every other model these features unlock: `pytest -m slow`.
OTHERS = [
    "test_efficientnet",
    "efficientnet_b0_gn",
    "efficientnet_b3_gn",
    "efficientnet_b0_g8_gn",
    "efficientnet_b3_g8_gn",
    "efficientnet_b0_g16_evos",
    "mobilenet_edgetpu_v2_s",
    "mobilenet_edgetpu_v2_m",
    "mobilenet_edgetpu_v2_l",
]
RESOLUTION = 64  # of the logits; counts are compared at the spec's own as well


def timm_with_random_weights(name: str, resolution: int):
    """timm's model with random weights (batch-norm statistics measured on data)
    and its state_dict."""
    reference = create(name)
    rng = np.random.default_rng(7)
    calibration = rng.standard_normal((4, 3, resolution, resolution))
    randomize_torch(reference, calibration.astype(np.float32), seed=7)
    return reference, reference.state_dict()


def logits_differences(name, tmp_path, reference, state, overrides=(), keras=True):
    """(PyTorch, Keras) worst differences from `reference`'s logits of the spec
    `name` given `state`, at RESOLUTION (Keras: None unless `keras`)."""
    import torch

    spec = TIMM / f"{name}.yaml"
    overrides = [f"resolution={RESOLUTION}", *overrides]
    _, graph, ours = build(spec, "torch", tmp_path, overrides)
    assert list(ours.state_dict()) == list(state)  # keys in timm's order
    ours.load_state_dict(state, strict=True)
    images = random_images(graph, seed=1)
    want = run_torch(reference, images)
    torch_diff = difference(want, run_torch(ours, images))
    if not keras:
        return torch_diff, None

    weights, keras_weights = tmp_path / "timm.pt", tmp_path / "timm.weights.h5"
    torch.save(state, weights)
    argv = ["weights", str(spec)] + [a for o in overrides for a in ("--set", o)]
    assert cli.main([*argv, "--from", str(weights), "--to", str(keras_weights)]) == 0
    _, _, keras_model = build(spec, "keras", tmp_path, overrides)
    keras_model.load_weights(keras_weights)
    return torch_diff, difference(want, run_keras(keras_model, images))


def check_against_timm(name, tmp_path, worst_differences, figures):
    reference, state = timm_with_random_weights(name, RESOLUTION)
    for resolution in sorted({RESOLUTION, reference.default_cfg["input_size"][-1]}):
        overrides = [f"resolution={resolution}"]
        _, graph = compiler.load_and_expand(TIMM / f"{name}.yaml", overrides)
        report = compiler.cost_report(graph)
        ours = (report.trainable_params, report.non_trainable_params, report.macs)
        theirs = (*parameter_counts(reference), count_macs(reference, resolution))
        assert ours == theirs, (resolution, ours, theirs)
    torch_diff, keras_diff = logits_differences(name, tmp_path, reference, state)
    worst_differences.append((f"timm {name} r{RESOLUTION} torch", torch_diff))
    worst_differences.append((f"timm {name} r{RESOLUTION} keras", keras_diff))
    figures.append(
        f"timm {name}: params {ours[0]:,}, MACs {ours[2]:,} (at {resolution}); "
        f"logits at {RESOLUTION}: torch {torch_diff:.2g}, keras {keras_diff:.2g}"
    )
    assert torch_diff <= TOLERANCE and keras_diff <= TOLERANCE


@pytest.mark.parametrize("name", DEFAULT)
def test_spec_computes_what_timm_computes(name, tmp_path, worst_differences, figures):
    check_against_timm(name, tmp_path, worst_differences, figures)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_every_unlocked_spec_computes_what_timm_computes(
    name, tmp_path, worst_differences, figures
):
    check_against_timm(name, tmp_path, worst_differences, figures)


def test_a_wrong_norm_fails_the_comparison(tmp_path):
    """The same weights fit a spec whose norm groups wrongly, or is another norm,
    but its logits are not timm's; a wrong group size of a conv changes the
    weights' shapes."""
    reference, state = timm_with_random_weights("test_efficientnet_gn", RESOLUTION)
    for wrong in (["norm.group_size=4"], ["norm=layer_norm"]):
        torch_diff, _ = logits_differences(
            "test_efficientnet_gn", tmp_path, reference, state, wrong, keras=False
        )
        assert torch_diff > 100 * TOLERANCE, wrong
    _, graph = compiler.load_and_expand(
        TIMM / "mobilenet_edgetpu_v2_xs.yaml", ["stages.1.1.group_size=32"]
    )
    ours = compiler.cost_report(graph).trainable_params
    assert ours != parameter_counts(create("mobilenet_edgetpu_v2_xs"))[0]


# ------------------------------------------------------- layouts and costs by hand

PROFILE = conventions.resolve("timm", "efficientnet", {})


def norm_op(name: str, settings: dict, channels: int = 16, activated: bool = True):
    """(graph, node) of one norm on a channels x 4 x 4 map."""
    graph = Graph()
    x = graph.add("input", [], "input", shape=(channels, 4, 4))
    model = NORM_MODELS[name].model_validate({"type": name, **settings})
    norm = Norm(NORM_TYPES[name], model, PROFILE)
    return graph, graph.add_norm(norm, x, "norm", activated=activated)


# name, settings, activated -> (vectors per framework, trainable params, running
# statistics, {cost field: count}) for 16 channels on 4 x 4 = 256 elements.
BY_HAND = [
    ("batch_norm", {}, True, (4, 32, 32, {"bn_ops": 2 * 256})),
    # fvcore's estimate for group_norm / layer_norm with an affine: 5 per element
    ("group_norm", {"group_size": 8}, True, (2, 32, 0, {"bn_ops": 5 * 256})),
    ("group_norm", {"groups": 4}, False, (2, 32, 0, {"bn_ops": 5 * 256})),
    ("layer_norm", {}, True, (2, 32, 0, {"bn_ops": 5 * 256})),
    # weight, bias, v; v*x, x*sigmoid, the group's mean, x - mean, square, sum,
    # / std, * weight, + bias; the sigmoid
    (
        "evonorm_s0",
        {"group_size": 8},
        True,
        (3, 48, 0, {"elementwise_ops": 9 * 256, "act_ops": 256}),
    ),
    ("evonorm_s0", {"group_size": 8}, False, (2, 32, 0, {"elementwise_ops": 2 * 256})),
]


@pytest.mark.parametrize("name,settings,activated,expected", BY_HAND)
def test_norm_weights_and_costs_by_hand(name, settings, activated, expected):
    vectors, params, statistics, ops = expected
    graph, node = norm_op(name, settings, activated=activated)
    (op,) = param_ops(graph)
    assert op.torch_shapes == op.keras_shapes == ((16,),) * vectors
    arrays = [np.full(16, float(i)) for i in range(vectors)]
    assert all(  # the same vectors in the same order
        (a == b).all() for a, b in zip(torch_to_keras(op, arrays), arrays, strict=True)
    )
    cost = node_cost(graph, node)
    assert (cost.params, cost.bn_stats) == (params, statistics)
    counted = ("bn_ops", "act_ops", "elementwise_ops", "pool_ops", "macs")
    assert {f: getattr(cost, f) for f in counted if getattr(cost, f)} == ops


@pytest.mark.parametrize(
    "name,settings,message",
    [
        ("group_norm", {"group_size": 7}, "16 channels do not split into groups of 7"),
        ("group_norm", {"groups": 5}, "16 channels do not split into 5 groups"),
        ("evonorm_s0", {"group_size": 6}, "16 channels do not split into groups of 6"),
    ],
)
def test_groups_must_divide_the_channels(name, settings, message):
    with pytest.raises(IRError, match=f"norm: {name}: {message}"):
        norm_op(name, settings)


def test_grouped_convs_count_their_groups_as_timm(tmp_path):
    """timm's num_groups: an inverted residual groups its depthwise conv by the
    expanded width, a fused one its k x k conv by its output, a conv_bn_act row
    by its input; 1 stays depthwise."""
    _, graph = compiler.load_and_expand(TIMM / "mobilenet_edgetpu_v2_xs.yaml")
    # stage 1, block 1: fused, 32 -> 128 expanded, 64 channels per group
    conv = graph.node("features.3.expand.conv")["attrs"]
    assert (conv["in_c"], conv["out_c"], conv["groups"]) == (32, 128, 2)
    assert graph.node("features.2.expand.conv")["attrs"]["groups"] == 1
    _, graph = compiler.load_and_expand(
        TIMM / "efficientnet_b0_g8_gn.yaml", ["resolution=64"]
    )
    dw = graph.node("features.2.dw.conv")  # 16 -> 96 expanded, 8 channels per group
    assert (dw["kind"], dw["attrs"]["groups"]) == ("conv", 12)
    _, graph = compiler.load_and_expand(
        TIMM / "test_efficientnet.yaml", ["stages.0.group_size=12"]
    )
    assert graph.node("features.1.conv")["attrs"]["groups"] == 2  # 24 in / 12
    assert graph.node("features.4.dw.conv")["kind"] == "dwconv"


# ------------------------------------------------------------- both backends

# Every row type that takes a group size, a conv head with a norm after pooling,
# squeeze-excite and residuals, at a small size; widths split into 8 and 16.
NORM_OPTIONS = """
name: norm_options
family: efficientnet
resolution: 32
num_classes: 10
conventions: {profile: timm, se_rounding: round}
squeeze_excite: {act: swish, gate: sigmoid, width_from: input}
stem: {c: 16, k: 3, s: 2, act: swish}
stages:
  - {block: depthwise_separable, c: 16, se: true, pw_act: false, residual: true, group_size: 8}
  - {block: conv_bn_act, c: 32, k: 3, s: 2, act: relu, group_size: 8}
  - - {block: fused_inverted_residual, t: 4, c: 32, act: swish, group_size: 16}
    - {block: fused_inverted_residual, t: 2, c: 48, s: 2, act: relu}
  - - {block: inverted_residual, t: 4, c: 48, se: true, act: swish, group_size: 16}
    - {block: universal_inverted_residual, start: 3, k: 3, end: 3, t: 2, c: 64, s: 2, group_size: 8}
    - {block: universal_inverted_residual, start: 0, k: 5, t: 3, c: 64, layer_scale: 0.5}
    - {block: bneck, k: 3, exp: 96, c: 64, se: false, act: hardswish, s: 1, group_size: 16}
head:
  hidden: {c: 96, act: swish, norm: true}
"""


# The default run takes EvoNorm-S0 (a Keras layer of its own, the activation built
# in) and batch norm in torchvision's layout; the timm comparisons above run the
# other norms in both backends.
SLOW = pytest.mark.slow
NORM_CASES = {
    "gn-size": pytest.param(["norm.type=group_norm", "norm.group_size=8"], marks=SLOW),
    "gn-groups": pytest.param(["norm.type=group_norm", "norm.groups=4"], marks=SLOW),
    "ln": pytest.param(["norm=layer_norm"], marks=SLOW),
    "evos-size": pytest.param(
        ["norm.type=evonorm_s0", "norm.group_size=8"], marks=SLOW
    ),
    "evos-groups-same": [
        "norm.type=evonorm_s0",
        "norm.groups=2",
        "conventions.stride2_padding=same",
    ],
    "tv": ["conventions=torchvision"],  # batch norm, grouped convs in its layout
    # keras.applications' conv1x1 classifier drops a folded hidden batch norm that
    # the IR keeps after its dense layer (not this test's subject): no hidden norm
    "ka-fold": pytest.param(
        [
            "conventions=keras_applications",
            "fold_batch_norm=true",
            "head.hidden.norm=false",
        ],
        marks=SLOW,
    ),
}


@pytest.mark.parametrize("overrides", NORM_CASES.values(), ids=NORM_CASES.keys())
def test_norms_and_group_sizes_agree_across_backends(
    overrides, tmp_path, worst_differences
):
    path = tmp_path / "norm_options.yaml"
    path.write_text(NORM_OPTIONS + ("norm: {type: batch_norm}\n"))
    _, got_torch, got_keras = outputs(path, tmp_path, overrides)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append((f"norm_options {overrides}", diff))
    assert diff <= TOLERANCE


def test_norms_start_as_timm_starts_them(tmp_path):
    """Every norm's scale starts at one, its shift at zero (EvoNorm's v at one), in
    both frameworks; no norm keeps running statistics."""
    for name in (
        "test_efficientnet_gn",
        "test_efficientnet_ln",
        "test_efficientnet_evos",
    ):
        _, _, model = build(TIMM / f"{name}.yaml", "torch", tmp_path)
        norms = [m for m in model.modules() if is_other_norm(m)]
        assert norms and not list(model.buffers())
        for norm in norms:
            weight, bias, *v = torch_tensors_live(norm)
            assert (weight == 1).all() and (bias == 0).all()
            assert all((t == 1).all() for t in v)
        _, _, model = build(TIMM / f"{name}.yaml", "keras", tmp_path)
        layers = [layer for layer in model.layers if is_other_keras_norm(layer)]
        assert len(layers) == len(norms) and not model.non_trainable_weights
        for layer in layers:
            weight, bias, *v = layer.get_weights()
            assert (weight == 1).all() and (bias == 0).all()
            assert all((a == 1).all() for a in v)


def test_keras_draws_grouped_convs_as_timm(tmp_path):
    """timm draws a grouped conv from N(0, sqrt(2 / (k * k * out / groups)));
    Keras counts its fan-out without the groups, so the generated initialiser adds
    them. Seeded; the tolerance is five standard errors of the sample's std."""
    import keras

    keras.utils.set_random_seed(3)
    overrides = ["resolution=64", "stages.3.group_size=8"]
    _, _, model = build(TIMM / "test_efficientnet.yaml", "keras", tmp_path, overrides)
    layer = model.get_layer("blocks_3_0_conv_dw")  # 128 channels, 3 x 3, 16 groups
    kernel = np.asarray(layer.get_weights()[0])
    assert kernel.shape == (3, 3, 8, 128)
    expected = (2 / (3 * 3 * 128 / 16)) ** 0.5
    assert abs(kernel.std() / expected - 1) <= 5 / (2 * kernel.size) ** 0.5


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["--fold-bn"],
            "--fold-bn: fold_batch_norm: only batch norm folds into convolutions; "
            "this network's norm is group_norm",
        ),
        (
            ["--set", "conventions=torchvision"],
            "test_efficientnet_gn.yaml:6: norm: group_norm is built as timm builds "
            "it; the torchvision conventions have batch_norm only",
        ),
        (
            ["--set", "norm=group"],
            "--set norm=group: norm.type: unknown norm; expected one of "
            "batch_norm, group_norm, layer_norm, evonorm_s0",
        ),
        (
            ["--set", "norm.group_sise=4"],
            "--set norm.group_sise=4: norm.group_sise: unknown key 'group_sise' — "
            "did you mean 'group_size'?",
        ),
        (
            ["--set", "norm.groups=4"],
            "--set norm.groups=4: norm: give 'group_size' (channels per group) or "
            "'groups' (how many), not both",
        ),
        (
            ["--set", "group_size=7"],
            "the network does not fit together: features.1: 24 channels do not "
            "split into groups of 7",
        ),
    ],
)
def test_what_a_norm_cannot_do_is_refused(overrides, message, tmp_path):
    target = tmp_path / "out.py"
    spec = TIMM / "test_efficientnet_gn.yaml"
    code, out, err = run_cli([spec, *overrides, "--backend", "torch", "-o", target])
    assert code == 2 and not out and not target.exists()
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_attention_keeps_batch_norm(tmp_path):
    spec = TIMM / "mobilenetv4_hybrid_medium.yaml"
    code, _, err = run_cli([spec, "--set", "norm=layer_norm", "-o", tmp_path / "x.py"])
    assert code == 2
    assert (
        "mobilenetv4_hybrid_medium.yaml:23: stages[2][4]: mobile_attention rows are "
        "built with batch_norm or rms_norm only; this network's norm is layer_norm"
    ) in err.splitlines()[0]


def test_weights_refuse_to_fold_another_norm(tmp_path):
    """Refused from the spec, before the weights file is read."""
    spec = TIMM / "test_efficientnet_ln.yaml"
    source, target = tmp_path / "ln.pt", tmp_path / "folded.pt"
    source.write_bytes(b"")
    code, _, err = run_cli(
        ["weights", spec, "--fold-bn", "--from", source, "--to", target]
    )
    assert code == 2 and not target.exists()
    assert "this network's norm is layer_norm" in err


def test_norm_layers_survive_export(tmp_path):
    """EvoNorm-S0 (the one norm that is a Keras layer of its own) and a grouped
    conv: TorchScript compiles and reloads the PyTorch model, a .keras file
    restores the Keras model, each computing what the model did."""
    import keras
    import torch

    spec = TIMM / "test_efficientnet_evos.yaml"
    overrides = ["resolution=64", "stages.3.group_size=8"]
    _, graph, model = build(spec, "torch", tmp_path, overrides)
    randomize_torch(model, random_images(graph, seed=7), seed=7)
    images = random_images(graph, seed=1)
    want = run_torch(model, images)
    scripted = torch.jit.script(model)
    scripted.save(str(tmp_path / "model.pt"))
    assert (
        difference(want, run_torch(torch.jit.load(tmp_path / "model.pt"), images))
        <= TOLERANCE
    )

    _, _, keras_model = build(spec, "keras", tmp_path, overrides)
    port_torch_to_keras(graph, model, keras_model)
    keras_model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert difference(want, run_keras(restored, images)) <= TOLERANCE

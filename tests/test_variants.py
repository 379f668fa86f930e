"""Per-row options, new block types and backbone use, cross-checked between
backends and against keras.applications / hand-derived shapes."""

from __future__ import annotations

import textwrap

import pytest

from crosscheck import outputs, worst_difference
from helpers import SPECS, TOLERANCE, build
from mbcompile import compiler
from mbcompile.backends.weights import param_ops
from mbcompile.errors import SpecError
from mbcompile.frontend.load import load

# Every row option on every row type that has it, at a small resolution.
ALL_OPTIONS = """
name: all_options
family: v2
resolution: 64
num_classes: 10
conventions: torchvision
stem: {c: 16, k: 3, s: 2, act: hardswish}
block: inverted_residual
stages:
  - {block: conv_bn_act, c: 16, k: 3, s: 1, act: relu}
  - {block: conv_bn_act, c: 24, k: 5, s: 1, act: relu6, dilation: 2}
  - {block: fused_inverted_residual, t: 1, c: 24, n: 2, s: 1, k: 3, act: swish}
  - {block: fused_inverted_residual, t: 4, c: 24, n: 2, s: 2, k: 5}
  - {block: fused_inverted_residual, exp: 64, c: 24, s: 1, dilation: 2, residual: false}
  - {t: 4, c: 32, n: 2, s: 2, k: 5, se: true, act: hardswish}
  - {exp: 96, c: 32, n: 1, s: 1, k: 7, se: true, se_ratio: 0.5, residual: false, act: identity}
  - {t: 3, c: 40, n: 2, s: 1, dilation: 2, act: relu}
  - {block: bneck, k: 5, exp: 120, c: 48, se: true, se_ratio: 0.125, act: silu, s: 2}
  - {block: bneck, k: 3, exp: 144, c: 48, se: false, act: relu, s: 1, dilation: 2, residual: false}
  - {block: depthwise_separable, c: 64, s: 1, k: 5, dilation: 2, act: sigmoid}
head:
  conv: {c: 128, act: hardswish}
  pool: max
  dropout: 0.1
"""


def spec_file(tmp_path, name: str, text: str):
    """A spec given as YAML text, written to NAME.yaml for the compiler to read."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def all_options(tmp_path):
    return spec_file(tmp_path, "all_options", ALL_OPTIONS)


@pytest.mark.parametrize(
    "overrides",
    [[], ["conventions=keras_applications", "resolution=65"]],
    ids=["torchvision", "keras_applications-r65"],
)
def test_all_row_options_agree(all_options, tmp_path, overrides, worst_differences):
    assert_backends_agree(all_options, tmp_path, overrides, worst_differences)


def assert_backends_agree(spec, tmp_path, overrides, worst_differences) -> None:
    """The spec's PyTorch and Keras models compute the same outputs (the PyTorch
    model's random weights ported to Keras)."""
    _, got_torch, got_keras = outputs(spec, tmp_path, overrides)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append((f"{spec.stem} {overrides}", diff))
    assert diff <= TOLERANCE


def test_row_options_reach_the_ir(all_options):
    _, graph = compiler.load_and_expand(all_options)
    blocks = [b for b in graph.blocks if b.stage is not None]
    by_stage = {}
    for b in blocks:
        by_stage.setdefault(b.stage, []).append(b)
    conv_dilated = graph.node(f"features.{by_stage[1][0].index}.conv")["attrs"]
    assert (conv_dilated["dilation"], conv_dilated["padding"]) == (2, (4, 4))
    single = by_stage[2][0]  # t = 1: one 3x3 conv, no projection
    assert [graph.node(n)["kind"] for n in single.nodes] == ["conv", "bn", "act", "add"]
    fused = by_stage[3][0]
    assert [graph.node(n)["kind"] for n in fused.nodes] == [
        "conv", "bn", "act", "conv", "bn"
    ]  # fmt: skip
    assert graph.node(fused.nodes[0])["attrs"]["kernel"] == 5
    assert by_stage[4][0].params.residual is False and by_stage[4][0].params.exp_c == 64
    se_block = by_stage[6][0]
    assert se_block.params.se.squeeze_c == 48  # 96 * 0.5, divisible by 8
    assert by_stage[6][0].params.residual is False
    assert by_stage[8][0].params.se.squeeze_c == 16  # 120 * 0.125 = 15 -> 16
    assert by_stage[9][0].params.residual is False
    assert [b.params.dw.dilation for b in by_stage[7]] == [2, 2]


def test_output_stride_dilates_like_torchvision(tmp_path, worst_differences):
    """torchvision's mobilenet_v3_large(dilated=True): the last stage (its stride-2
    row included) gets dilation 2 and stride 1; output stride 16; same weights."""
    overrides = ["output_stride=16", "include_top=false", "head.pool=avg"]
    _, plain = compiler.load_and_expand(SPECS / "v3_large.yaml")
    _, graph = compiler.load_and_expand(SPECS / "v3_large.yaml", overrides)
    rows = [b for b in graph.blocks if b.stage is not None]
    assert [(b.params.dw.stride, b.params.dw.dilation) for b in rows[-3:]] == [
        (1, 2)
    ] * 3
    assert all(b.params.dw.dilation == 1 for b in rows[:-3])
    depthwise = graph.node(f"features.{rows[-3].index}.dw.conv")["attrs"]
    assert depthwise["padding"] == (4, 4)  # (k - 1) // 2 * dilation for k = 5
    assert rows[-1].out_shape == (160, 14, 14)  # 224 / 16
    # Dilation changes no weight: the same tensors as the plain network's features.
    dilated = [(op.name, op.torch_shapes) for op in param_ops(graph)]
    assert (
        dilated
        == [(op.name, op.torch_shapes) for op in param_ops(plain)][: len(dilated)]
    )
    _, got_torch, got_keras = outputs(
        SPECS / "v3_large.yaml", tmp_path, [*overrides, "resolution=96"]
    )
    assert got_torch["output"].shape == (2, 960)
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append(("v3_large output_stride 16", diff))
    assert diff <= TOLERANCE


def test_output_stride_8_feature_taps(tmp_path, worst_differences):
    overrides = [
        "output_stride=8",
        "include_top=false",
        "features=each_stride",
        "resolution=64",
    ]
    _, got_torch, got_keras = outputs(SPECS / "v2.yaml", tmp_path, overrides)
    shapes = {name: v.shape[1:] for name, v in got_torch.items()}
    # 64 / 2, / 4, / 8; the head conv (1280) is the last block at stride 8.
    assert shapes == {
        "stride2": (16, 32, 32),
        "stride4": (24, 16, 16),
        "stride8": (1280, 8, 8),
    }
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append(("v2 output_stride 8 taps", diff))
    assert diff <= TOLERANCE


@pytest.mark.parametrize("pool", ["none", "max"])
def test_headless_pooling(pool, tmp_path, worst_differences):
    overrides = ["include_top=false", f"head.pool={pool}", "resolution=96"]
    _, got_torch, got_keras = outputs(SPECS / "v3_small.yaml", tmp_path, overrides)
    expected = (2, 576, 3, 3) if pool == "none" else (2, 576)
    assert got_torch["output"].shape == expected
    diff = worst_difference(got_torch, got_keras)
    worst_differences.append((f"v3_small headless pool {pool}", diff))
    assert diff <= TOLERANCE


def test_taps_by_block_index_stop_the_network(tmp_path):
    spec = tmp_path / "taps.yaml"
    spec.write_text(ALL_OPTIONS + "include_top: false\nfeatures: [4, 2, stride4]\n")
    _, graph = compiler.load_and_expand(spec)
    # stride4 ends at block 7 (stem 2 x the first strided fused row); nothing after
    # the last tap is built.
    assert len(graph.blocks) == 8
    assert set(graph.outputs) == {"block4", "block2", "stride4"}
    _, _, model = build(spec, "torch", tmp_path)
    assert len(model.features) == 8 and not hasattr(model, "classifier")


@pytest.mark.parametrize("size", ["Large", "Small"])
def test_minimalistic_matches_keras_applications(size):
    import keras

    factory = getattr(keras.applications, f"MobileNetV3{size}")
    reference = factory(minimalistic=True, weights=None)
    trainable = sum(int(w.numpy().size) for w in reference.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in reference.non_trainable_weights)
    _, graph = compiler.load_and_expand(
        SPECS / f"v3_{size.lower()}_minimalistic.yaml",
        ["conventions=keras_applications"],
    )
    rep = compiler.cost_report(graph)
    assert (rep.trainable_params, rep.non_trainable_params) == (trainable, frozen)


def _errors(tmp_path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as err:
        load(path)
    return [line.replace(f"{path}:", "") for line in str(err.value).splitlines()]


def test_errors_teach_for_new_keys(tmp_path):
    lines = _errors(
        tmp_path,
        """\
        name: bad
        family: v2
        resolution: 64
        num_classes: 10
        conventions: torchvision
        stem: {c: 16}
        stages:
          - {block: fused_inverted_residual, t: 4, c: 24, dilaton: 2}
          - {block: inverted_residual, t: 4, exp: 64, c: 24}
          - {block: bneck, k: 3, exp: 64, c: 24, se: true, se_ration: 0.5, act: relu, s: 1}
          - {block: conv_bn_act, c: 24, s: 2, dilation: 2}
          - {block: fused_inverted_residul, c: 24}
        head: {pool: none}
        incude_top: false
        """,
    )
    assert lines == [
        "8: stages[0].dilaton: unknown key 'dilaton' — did you mean 'dilation'?",
        "9: stages[1]: give exactly one of 't' (ratio) or 'exp' (expanded channels)",
        "10: stages[2].se_ration: unknown key 'se_ration' — did you mean 'se_ratio'?",
        "11: stages[3]: a row with dilation > 1 needs s: 1",
        "12: stages[4].block: unknown block type; expected one of depthwise_separable, "
        "inverted_residual, bneck, fused_inverted_residual, "
        "universal_inverted_residual, mobile_attention, conv_bn_act, "
        "cond_conv_residual",
        "13: head: pool: none needs include_top: false (logits need pooling)",
        "14: incude_top: unknown key 'incude_top' — did you mean 'include_top'?",
    ]


def test_feature_tap_errors(tmp_path):
    with pytest.raises(SpecError, match="features: feature outputs need include_top"):
        load(SPECS / "v2.yaml", ["features=each_stride"])
    spec = tmp_path / "taps.yaml"
    spec.write_text(ALL_OPTIONS + "include_top: false\nfeatures: [stride32]\n")
    with pytest.raises(SpecError, match="no block has total stride 32"):
        compiler.load_and_expand(spec, ["output_stride=16"])


# The options of the newer families on every row type that has them: universal
# inverted bottlenecks in all their forms (the stride on each of their depthwise
# convs, layer scale), multi-query attention (keys and values downsampled by a 5x5
# conv, queries pooled, value width apart), squeeze-excite on depthwise-separable
# rows (sigmoid gate,
# width from the input), FBNet's forced expansion, groups of rows (timm's stages),
# depth scaling, stochastic depth and a MobileNetV4 head.
MODERN_OPTIONS = """
name: modern_options
family: v4
resolution: 64
num_classes: 10
conventions: {profile: timm, se_rounding: round}
squeeze_excite: {act: swish, gate: sigmoid, width_from: input}
depth_coefficient: 1.5
drop_path_rate: 0.3
stem: {c: 16, k: 3, s: 2, act: swish}
block: universal_inverted_residual
stages:
  - {block: depthwise_separable, c: 16, se: true, pw_act: false, residual: true}
  - - {block: inverted_residual, t: 1, c: 16, expand: true, se: true, act: relu}
    - {block: fused_inverted_residual, t: 4, c: 24, s: 2, act: relu6}
  - - {start: 5, k: 3, t: 3, c: 32, s: 2, stride_on: start, layer_scale: 0.5}
    - {start: 3, k: 0, t: 2, c: 32, n: 2, layer_scale: 1.0e-2}
    - {start: 0, k: 0, t: 2, c: 32}
    - {start: 0, k: 3, end: 5, t: 4, c: 40, s: 2, stride_on: end}
    - {start: 3, k: 5, end: 3, t: 2, c: 40, act: hardswish}
    - {block: mobile_attention, heads: 2, key_dim: 16, value_dim: 24, kv_stride: 2, k: 5, c: 40, layer_scale: 0.1}
    - {block: mobile_attention, heads: 3, key_dim: 8, query_stride: 2, c: 40}
  - {block: conv_bn_act, c: 96, k: 1, act: relu}
head:
  hidden: {c: 128, act: relu, norm: true}
  dropout: 0.1
"""


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["conventions.stride2_padding=same", "conventions.stem_padding=same"],
        ["conventions=torchvision"],
        ["fold_batch_norm=true", "output_stride=16"],
    ],
    ids=["timm", "tf-same", "torchvision-layout", "folded-dilated"],
)
def test_modern_options_agree(tmp_path, overrides, worst_differences):
    path = spec_file(tmp_path, "modern_options", MODERN_OPTIONS)
    assert_backends_agree(path, tmp_path, overrides, worst_differences)


def test_modern_options_reach_the_ir(tmp_path):
    from reference_models import import_timm

    path = spec_file(tmp_path, "modern_options", MODERN_OPTIONS)
    loaded, graph = compiler.load_and_expand(path)
    rows = [b for b in graph.blocks if b.role == "stage"]
    by_row: dict[tuple, list] = {}
    for block in rows:
        by_row.setdefault(block.origin[1:], []).append(block)
    # Depth scaling per group of rows, as timm's own _scale_stage_depth does it.
    scale = import_timm().models._efficientnet_builder._scale_stage_depth
    for i, item in enumerate(loaded.spec.stages):
        group = item if isinstance(item, list) else [item]
        keys = [(i, j) for j in range(len(item))] if isinstance(item, list) else [(i,)]
        scaled = scale(list(range(len(group))), [row.n for row in group], 1.5, "ceil")
        timm_repeats = [scaled.count(j) for j in range(len(group))]
        assert [len(by_row[key]) for key in keys] == timm_repeats, i
    ds = by_row[(0,)][0].params
    assert ds.se.squeeze_c == 4 and ds.se.gate == "sigmoid"  # round(16 * 0.25)
    fbnet = by_row[(1, 0)][0].params
    assert fbnet.expand and fbnet.exp_c == 16  # t = 1, expanded all the same
    extra_dw = by_row[(2, 0)][0].params
    assert (extra_dw.start.stride, extra_dw.mid.stride) == (2, 1)  # stride_on: start
    assert extra_dw.layer_scale == 0.5
    strided_end = by_row[(2, 3)][0].params
    assert (strided_end.mid.stride, strided_end.end.stride) == (1, 2)
    ffn = by_row[(2, 2)][0].params
    assert ffn.start is ffn.mid is ffn.end is None
    for index, block in enumerate(rows):
        residual = getattr(block.params, "residual", False)
        rate = 0.3 * index / len(rows) if residual else 0.0
        assert getattr(block.params, "drop_path", 0.0) == pytest.approx(rate)


# The block options of timm's EfficientNetV2/X/H, FBNetV3 and pruned models, outside
# timm's conventions: space-to-depth (on an odd 33x33 map: its 2x2 conv pads the
# bottom/right) and the region it starts (4x widths, the next strided row neither
# strides nor expands as much), squeeze-excite in fused rows (on a single conv
# too), absolute squeeze widths (se_c), the squeeze activation taken from each
# block, conv-bn-act rows with a shortcut and stochastic depth, a hidden layer
# without bias and widths rounded without the 90% rule.
BLOCK_OPTIONS = """
name: block_options
family: efficientnet
resolution: 66
num_classes: 10
round_limit: 0.0
conventions: torchvision
squeeze_excite: {act: block, gate: sigmoid, width_from: input}
drop_path_rate: 0.2
stem: {c: 16, k: 3, s: 2, act: swish}
block: inverted_residual
stages:
  - {block: depthwise_separable, c: 12, n: 2, s2d: true, se: true, pw_act: false, residual: true, act: relu}
  - {block: fused_inverted_residual, t: 4, c: 20, n: 2, s: 2, se: true, act: hardswish}
  - {block: fused_inverted_residual, t: 1, c: 20, expand: false, se: true, se_c: 6, act: relu}
  - {block: conv_bn_act, c: 20, n: 2, residual: true, act: relu6}
  - {block: conv_bn_act, c: 24, s: 2, residual: true, act: swish}
  - {t: 3, c: 24, se: true, se_c: 10, act: swish}
  - {block: bneck, k: 5, exp: 72, c: 32, se: true, se_c: 12, act: hardswish, s: 2}
  - {block: depthwise_separable, c: 40, k: 5, se: true, se_c: 8, act: relu}
head:
  hidden: {c: 64, act: hardswish, bias: false}
  dropout: 0.1
"""


@pytest.fixture
def block_options(tmp_path):
    return spec_file(tmp_path, "block_options", BLOCK_OPTIONS)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["conventions=keras_applications", "resolution=67"],
        ["conventions=timm", "conventions.stride2_padding=same"],
        ["conventions=timm", "fold_batch_norm=true"],
    ],
    ids=["torchvision", "keras_applications-r67", "timm-same", "timm-folded"],
)
def test_block_options_agree(block_options, tmp_path, overrides, worst_differences):
    assert_backends_agree(block_options, tmp_path, overrides, worst_differences)


def test_block_options_reach_the_ir(block_options):
    """Each option's decision, against values worked out by hand from timm's rules."""
    _, graph = compiler.load_and_expand(block_options)
    rows = [b for b in graph.blocks if b.role == "stage"]
    s2d, in_region, region_end, fused_t6 = (b.params for b in rows[:4])
    # Space-to-depth on the stem's 33x33: a 2x2 stride-2 conv padded (0, 1) as
    # TensorFlow's SAME, 16 -> 64 channels; the 3x3 depthwise becomes 2x2, SAME.
    assert (s2d.s2d.kernel, s2d.s2d.stride, s2d.s2d.pad) == (2, 2, (0, 1, 0, 1))
    assert (s2d.dw.kernel, s2d.dw.stride, s2d.dw.pad) == (2, 1, (0, 1, 0, 1))
    assert graph.node("features.1.s2d.conv")["attrs"]["out_c"] == 64
    assert rows[0].out_shape == (4 * 16, 17, 17)  # c 12 rounds to 16, then x4
    # A quarter of the input's 16 (timm's ratio / 4 of 4x the input), rounded as
    # torchvision rounds: make_divisible(4, 8) = 8.
    assert s2d.se.squeeze_c == 8
    assert not s2d.residual and in_region.s2d is None and in_region.residual
    # The next strided row ends the region: stride 1, expansion 4 / 4 of 64.
    assert (region_end.conv.stride, region_end.exp_c, region_end.out_c) == (1, 64, 24)
    assert region_end.se.squeeze_c == 16 and region_end.se.act == "hardswish"
    assert (fused_t6.conv.stride, fused_t6.exp_c) == (1, 96)  # 24 * 4: as the row
    single = rows[4].params  # one 3x3 conv, its squeeze-excite on its output
    assert (single.expand, single.se.squeeze_c, single.se.act) == (False, 6, "relu")
    residual_conv, plain_conv = rows[5].params, rows[7].params
    assert residual_conv.residual and residual_conv.drop_path == pytest.approx(
        0.2 * 5 / len(rows)
    )
    assert not plain_conv.residual and plain_conv.drop_path == 0.0  # stride 2
    assert [b.params.se.squeeze_c for b in rows[8:]] == [10, 12, 8]
    hidden = graph.node("classifier.hidden")["attrs"]
    assert (hidden["bias"], hidden["out_f"]) == (False, 64)


def test_block_option_errors(tmp_path):
    lines = _errors(
        tmp_path,
        """\
        name: bad
        family: efficientnet
        resolution: 64
        num_classes: 10
        conventions: timm
        squeeze_excite: {act: blocks}
        stem: {c: 16}
        stages:
          - {block: depthwise_separable, c: 16, s: 2, s2d: true}
          - {block: inverted_residual, t: 4, c: 24, se_c: 8}
          - {block: inverted_residual, t: 4, c: 24, se: true, se_ratio: 0.5, se_c: 8}
          - {block: conv_bn_act, c: 24, residual: 1}
        head: {hidden: {c: 64, bias: 0}}
        round_limit: 1.5
        """,
    )
    assert lines == [
        "6: squeeze_excite.act: unknown activation 'blocks'; expected one of relu, "
        "relu6, hardswish, hardsigmoid, swish, gelu, gelu_tanh, sigmoid, identity, or "
        "block (the activation of the block it sits in)",
        "9: stages[0]: s2d (space-to-depth) halves the resolution itself; the row "
        "needs s: 1",
        "10: stages[1]: se_c (squeeze-excite channels) needs se: true",
        "11: stages[2]: give se_ratio or se_c (squeeze-excite channels), not both",
        "12: stages[3].residual: Input should be a valid boolean",
        "13: head.hidden.bias: Input should be a valid boolean",
        "14: round_limit: Input should be less than or equal to 1",
    ]

"""Graph IR: shape inference, structural checks, and expansion of the canonical specs."""

from __future__ import annotations

import re

import pytest

from helpers import SPECS
from mbcompile import compiler
from mbcompile.ir.blocks.base import padding
from mbcompile.ir.graph import Graph, IRError, infer_shape

CONV = {
    "kernel": 3,
    "stride": 2,
    "dilation": 1,
    "padding": (1, 1),
    "groups": 1,
    "bias": False,
}


def test_conv_shape_follows_the_convolution_formula():
    # floor((224 + 2*1 - 3) / 2) + 1 = 112
    assert infer_shape(
        "conv", {**CONV, "in_c": 3, "out_c": 32}, [(3, 224, 224)], "c"
    ) == (
        32,
        112,
        112,
    )
    # odd input, dilation 2, padding 2: floor((193 + 4 - 4 - 1) / 1) + 1 = 193
    attrs = {
        **CONV,
        "stride": 1,
        "dilation": 2,
        "padding": (2, 2),
        "in_c": 8,
        "out_c": 8,
    }
    assert infer_shape("conv", attrs, [(8, 193, 193)], "c") == (8, 193, 193)


def test_depthwise_multiplier_multiplies_channels():
    attrs = {**CONV, "channels": 32, "multiplier": 2}
    assert infer_shape("dwconv", attrs, [(32, 56, 56)], "d") == (64, 28, 28)


@pytest.mark.parametrize(
    "kind,attrs,inputs,message",
    [
        (
            "conv",
            {**CONV, "in_c": 16, "out_c": 8},
            [(8, 32, 32)],
            "expects 16 input channels",
        ),
        ("add", {}, [(8, 4, 4), (16, 4, 4)], "mismatched shapes"),
        ("mul", {}, [(8, 4, 4), (4, 1, 1)], "gate shape"),
        ("bn", {"channels": 4}, [(8, 4, 4)], "expects 4 channels"),
        (
            "dense",
            {"in_f": 10, "out_f": 2, "bias": True},
            [(12,)],
            re.escape("expects (10,)"),
        ),
        (
            "conv",
            {**CONV, "padding": (0, 0), "in_c": 3, "out_c": 8},
            [(3, 2, 2)],
            "does not fit",
        ),
        ("conv", {**CONV, "in_c": 3, "out_c": 0}, [(3, 8, 8)], "empty tensor"),
        (
            "attention",
            {"heads": 2, "key_dim": 4, "value_dim": 3},
            [(6, 4, 4), (4, 2, 2), (3, 2, 2)],
            "not 2 x 4",
        ),
        (
            "attention",
            {"heads": 2, "key_dim": 4, "value_dim": 3},
            [(8, 4, 4), (4, 2, 2), (3, 1, 1)],
            "differ",
        ),
    ],
)
def test_structural_errors(kind, attrs, inputs, message):
    with pytest.raises(IRError, match=message):
        infer_shape(kind, attrs, inputs, "node")


def test_attention_pooling_and_upsampling_shapes():
    attention = {"heads": 2, "key_dim": 4, "value_dim": 3}
    queries, keys, values = (8, 4, 5), (4, 2, 3), (3, 2, 3)
    assert infer_shape("attention", attention, [queries, keys, values], "a") == (
        6,
        4,
        5,
    )
    assert infer_shape("avgpool", {"size": 2}, [(8, 5, 4)], "p") == (8, 2, 2)
    assert infer_shape("upsample", {"factor": 2}, [(8, 2, 2)], "u") == (8, 4, 4)


def test_graph_rejects_duplicates_and_checks_order():
    graph = Graph()
    x = graph.add("input", [], "input", shape=(3, 8, 8))
    graph.add("act", [x], "relu", fn="relu")
    with pytest.raises(IRError, match="duplicate"):
        graph.add("act", [x], "relu", fn="relu")
    graph.validate()


@pytest.mark.parametrize(
    "rule,size,expected",
    [
        ("symmetric", (224, 224), (1, 1, 1, 1)),
        ("same", (224, 224), (0, 1, 0, 1)),  # TensorFlow SAME: extra pixel at the end
        ("same", (225, 225), (1, 1, 1, 1)),  # odd input: SAME is symmetric
        ("end", (225, 225), (0, 1, 0, 1)),  # keras V1: always ((0, 1), (0, 1))
    ],
)
def test_stride2_padding_rules(rule, size, expected):
    assert padding(rule, 3, 2, 1, size) == expected


def test_stride1_padding_is_always_symmetric():
    for rule in ("symmetric", "same", "end"):
        assert padding(rule, 5, 1, 1, (14, 14)) == (2, 2, 2, 2)


def test_v2_expands_to_the_paper_table():
    # MobileNetV2 Table 2 at 224: output sizes 112, 112, 56, 28, 14, 14, 7, 7 and 1x1x1280.
    _, graph = compiler.load_and_expand(SPECS / "v2.yaml")
    stage_out = {}
    for block in graph.blocks:
        if block.stage is not None:
            stage_out[block.stage] = block.out_shape
    assert stage_out == {
        0: (16, 112, 112),
        1: (24, 56, 56),
        2: (32, 28, 28),
        3: (64, 14, 14),
        4: (96, 14, 14),
        5: (160, 7, 7),
        6: (320, 7, 7),
    }
    assert graph.blocks[-2].out_shape == (1280, 7, 7)
    assert graph.shape(graph.output) == (1000,)
    # 1 stem + 17 bottlenecks (1+2+3+4+3+3+1) + head conv + classifier
    assert len(graph.blocks) == 20
    adds = [n for n in graph.order if graph.node(n)["kind"] == "add"]
    assert len(adds) == 10  # stride-1 blocks whose input and output widths match


def test_v3_large_squeeze_excite_and_activations():
    _, graph = compiler.load_and_expand(SPECS / "v3_large.yaml")
    se = [n for n in graph.order if n.endswith(".se.fc1")]
    assert len(se) == 8  # Table 1: SE in 8 of the 15 bneck layers
    # Squeeze widths: _make_divisible(exp // 4, 8) for exp 72, 120, 120, 480, 672, 672, 960, 960
    assert [graph.node(n)["attrs"]["out_c"] for n in se] == [
        24,
        32,
        32,
        120,
        168,
        168,
        240,
        240,
    ]


def test_width_and_resolution_overrides_change_shapes():
    _, graph = compiler.load_and_expand(
        SPECS / "v2.yaml", ["width_multiplier=0.5", "resolution=193"]
    )
    assert graph.blocks[0].out_shape == (16, 97, 97)  # make_divisible(32 * 0.5, 8) = 16
    assert graph.blocks[-2].out_shape == (
        1280,
        7,
        7,
    )  # head kept at 1280 when width <= 1


def test_every_parametric_op_is_in_a_block():
    for name in ("v1", "v2", "v3_large", "v3_small"):
        _, graph = compiler.load_and_expand(SPECS / f"{name}.yaml")
        assert all(graph.node(n)["block"] is not None for n in graph.parametric())

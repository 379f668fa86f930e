"""Costs from the IR: hand-computed small graphs, and the canonical specs against
figures measured or published elsewhere (reference libraries, fvcore, the papers)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from helpers import CANONICAL, SPECS
from mbcompile import compiler
from mbcompile.analysis.cost import DTYPE_BYTES, SUMMED, report
from mbcompile.ir.graph import Graph

CONV = {"stride": 1, "dilation": 1, "bias": False}


def tiny_separable() -> Graph:
    """3x8x8 -> conv3x3(4) bn relu -> dw3x3/2 bn relu -> pw(6) bn -> pool -> fc(10)."""
    g = Graph()
    x = g.add("input", [], "input", shape=(3, 8, 8))
    g.begin_block("tiny", {}, "stage", ("stages", 0))
    x = g.add(
        "conv", [x], "c", in_c=3, out_c=4, kernel=3, groups=1, padding=(1, 1), **CONV
    )
    x = g.add("bn", [x], "c.bn", channels=4, eps=1e-5, momentum=0.1)
    x = g.add("act", [x], "c.act", fn="relu")
    x = g.add(
        "dwconv",
        [x],
        "dw",
        channels=4,
        multiplier=1,
        kernel=3,
        padding=(1, 1),
        **{**CONV, "stride": 2},
    )
    x = g.add("bn", [x], "dw.bn", channels=4, eps=1e-5, momentum=0.1)
    x = g.add("act", [x], "dw.act", fn="relu")
    x = g.add(
        "conv", [x], "pw", in_c=4, out_c=6, kernel=1, groups=1, padding=(0, 0), **CONV
    )
    x = g.add("bn", [x], "pw.bn", channels=6, eps=1e-5, momentum=0.1)
    g.end_block(x)
    g.begin_block("classifier", {}, "classifier", ("head",))
    x = g.add("pool", [x], "pool", mode="avg", keepdims=False)
    x = g.add("dense", [x], "fc", in_f=6, out_f=10, bias=True)
    g.end_block(x)
    g.validate()
    return g


def test_tiny_graph_counts_by_hand():
    rep = report(tiny_separable(), "tiny", 8)
    # conv 4*3*9 = 108, dw 4*9 = 36, pw 6*4 = 24, fc 6*10 + 10 = 70, BN gamma+beta
    assert rep.trainable_params == 108 + 36 + 24 + 70 + 2 * (4 + 4 + 6)
    assert rep.non_trainable_params == 2 * (4 + 4 + 6)
    # conv 8*8 positions * 4 * 27, dw 4*4 * 4 * 9, pw 4*4 * 6 * 4, fc 6 * 10
    assert rep.macs == 6912 + 576 + 384 + 60
    assert rep.total("bn_ops") == 2 * (256 + 64 + 96)
    assert rep.total("act_ops") == 256 + 64
    assert rep.total("pool_ops") == 96  # every element of the 6x4x4 input, once
    assert rep.total("elementwise_ops") == 0
    # conv.bn holds conv's output (4x8x8) and its own: 256 + 256.
    assert rep.peak_activation_elements == 512
    assert {d: rep.peak_activation_bytes(d) for d in DTYPE_BYTES} == {
        "float32": 2048,
        "float16": 1024,
        "int8": 512,
    }
    assert rep.weight_bytes("float16") == 2 * (266 + 28)
    assert [b.macs for b in rep.blocks] == [6912 + 576 + 384, 60]


def test_tiny_graph_separable_part_by_hand():
    (part,) = report(tiny_separable(), "tiny", 8).separable
    assert (part.in_c, part.out_c, part.kernel, part.out_hw) == (4, 6, 3, (4, 4))
    assert part.separable_macs == 576 + 384
    assert part.standard_macs == 4 * 4 * 4 * 6 * 9
    assert part.ratio == Fraction(1, 6) + Fraction(1, 9)


def test_live_tensors_kept_until_their_last_use():
    g = Graph()
    x = g.add("input", [], "input", shape=(2, 4, 4))
    y = g.add("act", [x], "act", fn="relu")
    g.add("add", [x, y], "add")
    rep = report(g, "residual", 4)
    assert [n.live for n in rep.layers] == [32, 64, 96]
    assert rep.total("elementwise_ops") == 32


def test_attention_by_hand():
    """2 heads of 4x4 = 16 queries against 2x2 = 4 keys: scores 2 * 16 * 4 = 128,
    MACs 128 * (key width 4 + value width 3); its scores and their softmax are held
    while it runs, besides its inputs and output."""
    g = Graph()
    x = g.add("input", [], "input", shape=(1, 4, 4))
    q = g.add("upsample", [g.add("avgpool", [x], "pool", size=1)], "q", factor=1)
    q = g.add(
        "conv", [q], "qp", in_c=1, out_c=8, kernel=1, groups=1, padding=(0, 0), **CONV
    )
    k = g.add(
        "conv",
        [x],
        "kp",
        in_c=1,
        out_c=4,
        kernel=2,
        groups=1,
        padding=(0, 0),
        **{**CONV, "stride": 2},
    )
    v = g.add(
        "conv",
        [x],
        "vp",
        in_c=1,
        out_c=3,
        kernel=2,
        groups=1,
        padding=(0, 0),
        **{**CONV, "stride": 2},
    )
    g.add("attention", [q, k, v], "att", heads=2, key_dim=4, value_dim=3)
    rep = report(g, "attention", 4)
    att = rep.layers[-1]
    assert att.macs == 128 * 7 and att.shape == (6, 4, 4)
    # held: q (8 x 16), k (4 x 4), v (3 x 4), out (6 x 16), scores and softmax
    assert att.live == 128 + 16 + 12 + 96 + 2 * 128


def canonical(name):
    _, graph = compiler.load_and_expand(SPECS / f"{name}.yaml")
    return compiler.cost_report(graph)


# Papers' tables, in millions of multiply-adds: V1 Table 8 (569), V2 Table 4 (300),
# V3 Tables 3 and 4 (219, 56).
PAPER_MACS = {"v1": 569e6, "v2": 300e6, "v3_large": 219e6, "v3_small": 56e6}


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_macs_within_one_and_a_half_percent_of_the_paper(name):
    assert abs(canonical(name).macs / PAPER_MACS[name] - 1) < 0.015


# fvcore's FlopCountAnalysis (see tests/reference/README.md).
FVCORE = {"v2": 314_193_216, "v3_large": 226_033_824, "v3_small": 59_649_536}


@pytest.mark.parametrize("name", sorted(FVCORE))
def test_fvcore_figure_is_macs_plus_batch_norm_plus_pooling(name):
    # fvcore counts eval-mode batch norm as 2 ops per element (affine) and adaptive
    # average pooling as 1 per input element; activations and adds are ignored.
    rep = canonical(name)
    assert rep.macs + rep.total("bn_ops") + rep.total("pool_ops") == FVCORE[name]
    assert rep.fvcore_flops == FVCORE[name]


@pytest.mark.parametrize("name", CANONICAL)
def test_blocks_and_stages_add_up_to_the_totals(name):
    rep = canonical(name)
    outside = [n for n in rep.layers if n.block is None]
    for field in SUMMED:
        in_blocks = sum(getattr(b, field) for b in rep.blocks)
        assert in_blocks + sum(getattr(n, field) for n in outside) == rep.total(field)
    for field in ("params", "bn_stats", "macs"):
        assert sum(getattr(s, field) for s in rep.stages()) == rep.total(field)


# Depthwise convolutions per network in the papers' tables: V1 Table 1 has 13,
# V2 Table 2 has 17 bottlenecks, V3 Tables 1 and 2 have 15 and 11 bnecks.
PAPER_DEPTHWISE = {"v1": 13, "v2": 17, "v3_large": 15, "v3_small": 11}


@pytest.mark.parametrize("name", CANONICAL)
def test_every_separable_part_costs_one_over_n_plus_one_over_k_squared(name):
    parts = canonical(name).separable
    assert len(parts) == PAPER_DEPTHWISE[name]
    for part in parts:
        expected = Fraction(1, part.out_c) + Fraction(1, part.kernel**2)
        assert part.ratio == expected, part.block


def test_v1_with_standard_convolutions_matches_the_papers_conv_mobilenet():
    # MobileNet V1, Table 4: "Conv MobileNet" (every depthwise-separable layer a
    # full 3x3 convolution) takes 4866M mult-adds and 29.3M parameters.
    rep = canonical("v1")
    parts = rep.separable
    macs = rep.macs + sum(p.standard_macs - p.separable_macs for p in parts)
    params = rep.trainable_params + sum(
        p.standard_params - p.separable_params for p in parts
    )
    assert abs(macs / 4866e6 - 1) < 0.001
    assert abs(params / 29.3e6 - 1) < 0.005
